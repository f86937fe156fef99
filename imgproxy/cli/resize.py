"""imgproxy-resize: one image through the server's own pipeline, from the shell.

    imgproxy-resize photo.jpg --w 300 --h 200 --mode crop -o thumb.jpg
    imgproxy-resize https://example.com/cat.png --op rotate --deg 90 > cat.png

Options mirror the query parameters and build the Plan with the server's own
build_plan, so a request that the server would refuse is refused here with the
same reason.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from typing import Sequence

from ..config import Settings  # the server's defaults: one set of rules
from ..errors import ProxyError
from ..imaging.pipeline import Rendered, process
from ..options.build import build_plan
from ..plan import Plan
from ..render import imaging_settings
from ..urls import check_url

PROG = "imgproxy-resize"
FETCH_TIMEOUT = 30.0  # seconds
USER_AGENT = "imgproxy-resize"

# (command-line flags, query parameter); the switches also work bare (= 1).
VALUES = [
    (("--op",), "op"),
    (("--width", "--w"), "w"),
    (("--height", "--h"), "h"),
    (("--mode",), "mode"),
    (("--filter",), "filter"),
    (("--pos", "--position"), "pos"),
    (("--retain",), "retain"),
    (("--bg", "--background"), "bg"),
    (("--fmt", "--format"), "fmt"),
    (("--quality", "--q"), "q"),
    (("--deg", "--degree"), "deg"),
    (("--rect",), "rect"),
]
SWITCHES = [
    (("--opt", "--optimize"), "opt"),
    (("--prog", "--progressive"), "prog"),
    (("--exif", "--preserve-exif"), "exif"),
    (("--expand",), "expand"),
]


class UsageError(Exception):
    """A bad command line; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage too: keep errors to one line
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Resize, crop or rotate one image the way "
                     "the imgproxy server does; the result goes to stdout or -o FILE.")
    parser.add_argument("source", help="a local file or an http(s) URL")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the image here")
    for flags, name in VALUES:
        parser.add_argument(*flags, dest=name, metavar=name.upper())
    for flags, name in SWITCHES:
        parser.add_argument(*flags, dest=name, metavar="0|1", nargs="?", const="1")
    return parser


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def make_plan(args: argparse.Namespace, settings: Settings) -> Plan:
    """The Plan the server would build for the same query parameters."""
    options = {name: str(value).strip() for _, name in VALUES + SWITCHES
               if (value := getattr(args, name)) is not None}
    if is_url(args.source):
        check_url(args.source)
    return build_plan(options, settings)


def read_source(source: str, max_bytes: int) -> bytes:
    """The bytes of a local file, or of a URL fetched with a timeout and a size cap."""
    if not is_url(source):
        with open(source, "rb") as f:
            return f.read()
    request = urllib.request.Request(source, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
        data = response.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{source} is larger than {max_bytes} bytes")
    return data


def write_output(rendered: Rendered, path: str | None) -> None:
    if path:
        with open(path, "wb") as f:
            f.write(rendered.body)
        return
    if sys.stdout.isatty():
        raise UsageError("not writing image data to a terminal; use -o FILE or a redirect")
    sys.stdout.buffer.write(rendered.body)
    sys.stdout.buffer.flush()


def run(argv: Sequence[str]) -> None:
    settings = Settings()
    args = build_parser().parse_args(argv)
    plan = make_plan(args, settings)
    rendered = process(read_source(args.source, settings.max_source_bytes), plan,
                       imaging_settings(settings))
    write_output(rendered, args.output)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except ProxyError as e:
        return _fail(e.reason)
    except urllib.error.HTTPError as e:
        return _fail(f"cannot fetch {e.url}: HTTP {e.code} {e.reason}")
    except urllib.error.URLError as e:
        return _fail(f"cannot fetch the source: {e.reason}")
    except OSError as e:
        return _fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))
    except (UsageError, ValueError) as e:
        return _fail(str(e))
    return 0


def _fail(reason: str) -> int:
    print(f"{PROG}: {' '.join(str(reason).split())}", file=sys.stderr)
    return 2
