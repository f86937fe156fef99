"""imgproxy-sign: print Pilbox's three lines (query, signature, signed query) for each query."""

from __future__ import annotations

import sys
from typing import Sequence

from ..signature import derive_signature, sign


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    key = None
    queries = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--key="):
            key = arg[len("--key="):]
        elif arg == "--key" and i + 1 < len(args):
            key, i = args[i + 1], i + 1
        elif arg in ("-h", "--help"):
            print('usage: imgproxy-sign --key=KEY "x=1&y=2" ...')
            return 0
        else:
            queries.append(arg)
        i += 1
    if not key or not queries:
        print('usage: imgproxy-sign --key=KEY "x=1&y=2" ...', file=sys.stderr)
        return 2
    for n, query in enumerate(queries):
        if n:
            print("=" * 78)
        if query.startswith("?"):
            print("Invalid query string, should not include leading '?'")
            continue
        print(f"Query String: {query}")
        print(f"Signature: {derive_signature(key, query)}")
        print(f"Signed Query String: {sign(key, query)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
