"""imgproxy-sign: print Pilbox's three lines (query, signature, signed query) for each query.

    imgproxy-sign --key=KEY "w=300&h=200&url=..." ["op=rotate&deg=90&url=..." ...]
    imgproxy-sign --key=KEY "/220x220/photos/cat.jpg?fmt=webp"     (a path URL)
    imgproxy-sign --key=JOB_KEY --job job.json     (X-Signature of a job body; - reads stdin)
    imgproxy-sign --key=JOB_KEY --job-path /jobs/<id>     (X-Signature of a status request)

Every query is checked before anything is printed: a query with a leading '?'
is reported on stderr, nothing goes to stdout and the exit status is 2 (as for
any usage error, such as an unknown option), so a script never gets the
signatures of only some of its queries. Options and queries may come in any
order.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..signature import derive_signature, job_signature, sign, sign_path

PROG = "imgproxy-sign"
SEPARATOR = "=" * 78  # between the blocks of several queries, as Pilbox prints them


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, allow_abbrev=False,
        description="Sign query strings the way the server checks them (Pilbox's sig=): "
                    "for each query, print it, its signature and the signed query.",
        epilog="Every query is checked first: if one has a leading '?', each such query "
               "is reported on stderr, nothing is printed on stdout and the exit status is 2. "
               "Unknown options are usage errors (exit 2).")
    parser.add_argument("--key", required=True, help="the signing key (a client_key of the server)")
    parser.add_argument("--job", metavar="FILE", help="print the X-Signature of this job body ('-': stdin)")
    parser.add_argument("--job-path", metavar="PATH", help="print the X-Signature of GET PATH (/jobs/<id>)")
    parser.add_argument("queries", nargs="*", metavar="QUERY",
                        help='a query string without the leading "?", e.g. "w=300&url=...", '
                             'or a path URL starting with "/", e.g. "/220x220/a.jpg?fmt=webp"')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_intermixed_args(sys.argv[1:] if argv is None else argv)  # exits 2 on a usage error
    if not args.key:
        parser.error("the key must not be empty")
    if args.job or args.job_path:
        if args.queries or (args.job and args.job_path):
            parser.error("--job and --job-path take no queries, and not both")
        if args.job_path:
            print(job_signature(args.key, args.job_path))
            return 0
        try:
            body = sys.stdin.buffer.read() if args.job == "-" else open(args.job, "rb").read()
        except OSError as e:
            print(f"{PROG}: cannot read {args.job}: {e.strerror}", file=sys.stderr)
            return 2
        print(job_signature(args.key, body))
        return 0
    if not args.queries:
        parser.error("give at least one query (or --job / --job-path)")
    invalid = [q for q in args.queries if q.startswith("?")]
    for query in invalid:
        print(f"{PROG}: invalid query string {query!r}: it should not include a leading '?'",
              file=sys.stderr)
    if invalid:
        return 2
    for n, query in enumerate(args.queries):
        if n:
            print(SEPARATOR)
        if query.startswith("/"):  # a path URL signs its path and query
            path, _, rest = query.partition("?")
            print(f"Path URL: {query}")
            print(f"Signature: {derive_signature(args.key, query.rstrip('?'))}")
            print(f"Signed Path URL: {sign_path(args.key, path, rest)}")
            continue
        print(f"Query String: {query}")
        print(f"Signature: {derive_signature(args.key, query)}")
        print(f"Signed Query String: {sign(args.key, query)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
