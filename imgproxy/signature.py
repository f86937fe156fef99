"""Sign and verify query strings: hex HMAC-SHA1 of the query without its final `&sig=`.

Also a command-line tool (`imgproxy-sign`, `python -m imgproxy.signature`) that
prints Pilbox's three lines for each query string it is given.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sys
from typing import Iterable, Sequence
from urllib.parse import unquote_plus

_SIGNED = re.compile(r"(?P<query>.+)&sig=(?P<sig>[0-9a-fA-F]{40})\Z", re.DOTALL)


def derive_signature(key: str | bytes, query: str) -> str:
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, query.encode(), hashlib.sha1).hexdigest()


def sign(key: str | bytes, query: str) -> str:
    """Return the query string with `&sig=<signature>` appended."""
    return f"{query}&sig={derive_signature(key, query)}"


def verify(keys: Iterable[str | bytes], raw_query: str) -> bool:
    """True when the final parameter is a valid `sig` for any key, and the only one."""
    m = _SIGNED.match(raw_query)
    if not m:
        return False
    query, given = m.group("query"), m.group("sig").lower()
    for part in query.split("&"):
        if unquote_plus(part.partition("=")[0]).strip() == "sig":
            return False  # a second sig, or one that is not last
    ok = False
    for key in keys:
        # compare against every key so the time taken does not tell which matched
        ok |= hmac.compare_digest(derive_signature(key, query), given)
    return ok


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
