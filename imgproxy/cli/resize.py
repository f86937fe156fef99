"""imgproxy-resize: one image through the server's own pipeline, from the shell.

    imgproxy-resize photo.jpg --w 300 --h 200 --mode crop -o thumb.webp
    imgproxy-resize https://example.com/cat.png --op rotate --deg 90 > cat.png
    curl -s https://example.com/a.jpg | imgproxy-resize - --w 64 --exif -o -

Options mirror the query parameters and build the Plan with the server's own
build_plan, so a request that the server would refuse is refused here with the
same reason. The rest follows from the same idea:

- Switches (--opt, --prog, --exif, --expand) take no value: `--exif` is exif=1,
  `--no-exif` exif=0; without either, the server's default applies.
- The output format is --fmt if given, else the extension of -o FILE
  (jpg, jpeg, png, gif, webp, tif, tiff, avif); an -o FILE with another
  extension needs --fmt. Without -o, with `-o -` or a FILE without an
  extension, the server's default format applies (the source's, unless the
  config file sets `format`).
- `-` as the source reads stdin; `-o -` (or no -o) writes stdout.
- Settings are the server's: `--config FILE` reads its Python config file and
  `--set NAME=VALUE` (repeatable, after the file) sets any of its options,
  through imgproxy.config with the same validation. Those that apply here are
  the limits (max_source_bytes for every source, files and stdin included;
  max_source_pixels, max_output_pixels, input_formats, max_resize_width/height,
  allowed_operations, max_operations), the image defaults, and for URLs the
  fetch options (allowed_hosts, timeout, connect_timeout, user_agent, proxy,
  TLS).
- A URL is fetched by the server's HttpLoader: the same redirect rules, size
  cap, timeouts and address guard, so a host that resolves to a loopback or
  internal address is refused unless it is in allowed_hosts; with
  allowed_hosts set, other hosts are refused as the server refuses them.
- Bad input (options, settings, source, image) is one line on stderr and exit
  status 2; anything unexpected is one line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Sequence

from .. import config, errors
from ..config import ConfigError, Settings
from ..errors import Code, ProxyError
from ..imaging.pipeline import Rendered, process
from ..options.build import build_plan
from ..plan import FORMATS, Plan
from ..render import imaging_settings
from ..sources.http import HttpLoader
from ..urls import check_url, host_allowed

PROG = "imgproxy-resize"
STDIO = "-"

# (command-line flags, query parameter, help)
VALUES = [
    (("--op",), "op", "operations, comma-separated: resize, rotate, region, noop (default: resize)"),
    (("--width", "--w"), "w", "width in pixels"),
    (("--height", "--h"), "h", "height in pixels"),
    (("--mode",), "mode", "resize mode: crop, clip, fill, scale or adapt (default: crop)"),
    (("--filter",), "filter", "resize filter: nearest, bilinear, bicubic or antialias"),
    (("--pos", "--position"), "pos", "crop position: center, top-left, ..., face, or X,Y ratios"),
    (("--retain",), "retain", "adapt mode: percent of the image to keep, 1-99"),
    (("--bg", "--background"), "bg", "background colour: RGB, RRGGBB, ARGB or AARRGGBB"),
    (("--fmt", "--format"), "fmt", "output format: jpeg, png, gif, webp, tiff, avif or auto "
                                   "(default: from -o's extension, else the source's)"),
    (("--quality", "--q"), "q", "quality 1-99, or keep (JPEG: keep the source's tables)"),
    (("--deg", "--degree"), "deg", "rotate: degrees 0-359, or auto (from the EXIF orientation)"),
    (("--rect",), "rect", "region: X,Y,WIDTH,HEIGHT in source pixels"),
]
# (flags, query parameter, help): `--name` is name=1, `--no-name` name=0.
SWITCHES = [
    (("--opt", "--optimize"), "opt", "optimize the encoding"),
    (("--prog", "--progressive"), "prog", "write a progressive JPEG"),
    (("--exif", "--preserve-exif"), "exif", "keep the source's EXIF data"),
    (("--expand",), "expand", "rotate: grow the canvas to hold the whole image"),
]

# -o FILE's extension -> the fmt it stands for
EXTENSIONS = {**{ext: ext for ext in FORMATS}, "tif": "tiff"}


# The loaders log failures for the server's operator; here the one error line says it.
_QUIET = logging.NullHandler()


EPILOG = """\
switches: --exif is exif=1, --no-exif exif=0; with neither, the server's default.
format:   --fmt, else -o FILE's extension (jpg jpeg png gif webp tif tiff avif;
          any other extension needs --fmt), else the config's format, else the source's.
settings: the server's, from --config FILE then each --set NAME=VALUE: the limits
          (max_source_bytes covers files and stdin too), the image defaults, and for
          URLs allowed_hosts, timeout and the other fetch options. A URL whose host
          resolves to a loopback or internal address is refused unless the host is
          in allowed_hosts.
errors:   one line on stderr; exit status 2 for bad input, 1 for anything else."""


class UsageError(Exception):
    """A bad command line; the message is one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage too: keep errors to one line
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, allow_abbrev=False,
        description="Resize, crop or rotate one image the way the imgproxy server does. "
                    "Options are the server's query parameters.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    parser.add_argument("source", help="a local file, an http(s) URL, or - for stdin")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write here (- or none: stdout); its extension sets the format unless --fmt")
    for flags, name, text in VALUES:
        parser.add_argument(*flags, dest=name, metavar=name.upper(), help=text)
    for flags, name, text in SWITCHES:
        parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None,
                            help=text)
    parser.add_argument("--config", metavar="FILE",
                        help="the server's Python config file: its limits and image defaults apply")
    parser.add_argument("--set", dest="settings", metavar="NAME=VALUE", action="append", default=[],
                        help="set a server option (see imgproxy --help), e.g. allowed_hosts=example.com")
    return parser


def is_url(source: str) -> bool:
    return source.lower().startswith(("http://", "https://"))


def load_settings(args: argparse.Namespace) -> Settings:
    """The server's Settings: defaults < --config's file < each --set, checked by imgproxy.config."""
    flags = [f"--config={args.config}"] if args.config else []
    for item in args.settings:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set takes NAME=VALUE, got {item!r}")
        flags.append(f"--{name.strip()}={value}")
    return config.load(flags)


def output_format(args: argparse.Namespace) -> str | None:
    """The fmt that -o FILE's extension stands for; None when it says nothing."""
    if args.fmt is not None or not args.output or args.output == STDIO:
        return None
    extension = os.path.splitext(args.output)[1]
    if not extension:
        return None
    if extension[1:].lower() not in EXTENSIONS:
        raise UsageError(f"cannot tell the output format from {extension!r} "
                         f"(known: {', '.join(sorted(EXTENSIONS))}); give --fmt")
    return EXTENSIONS[extension[1:].lower()]


def make_plan(args: argparse.Namespace, settings: Settings) -> Plan:
    """The Plan the server would build for the same query parameters."""
    options = {name: str(value).strip() for _, name, _ in VALUES
               if (value := getattr(args, name)) is not None}
    options.update({name: "1" if value else "0" for _, name, _ in SWITCHES
                    if (value := getattr(args, name)) is not None})
    fmt = output_format(args)
    if fmt:
        options["fmt"] = fmt
    if is_url(args.source):
        check_url(args.source)
        if settings.allowed_hosts and not host_allowed(args.source, settings.allowed_hosts):
            raise errors.forbidden(Code.HOST, "Invalid host")
    return build_plan(options, settings)


def read_source(source: str, settings: Settings) -> bytes:
    """The bytes of stdin, a file or a URL, at most max_source_bytes of them."""
    if is_url(source):
        return asyncio.run(_fetch(source, settings))
    cap = settings.max_source_bytes
    if source == STDIO:
        data = sys.stdin.buffer.read(cap + 1)
    else:
        with open(source, "rb") as f:
            data = f.read(cap + 1)
    if len(data) > cap:
        raise errors.source_too_large(f"Source image is larger than max_source_bytes ({cap})")
    return data


async def _fetch(url: str, settings: Settings) -> bytes:
    loader = HttpLoader(settings)  # made inside the loop, closed before it ends
    try:
        source = await loader.load(url)
    finally:
        loader.close()
    if source is None:  # only with validators, which are not given here
        raise errors.origin_failed("Origin answered 304 to an unconditional request")
    return source.body


def write_output(rendered: Rendered, path: str | None) -> None:
    if path and path != STDIO:
        with open(path, "wb") as f:
            f.write(rendered.body)
        return
    if sys.stdout.isatty():
        raise UsageError("not writing image data to a terminal; use -o FILE or a redirect")
    sys.stdout.buffer.write(rendered.body)
    sys.stdout.buffer.flush()


def run(argv: Sequence[str]) -> None:
    logging.getLogger("imgproxy").addHandler(_QUIET)  # once: addHandler skips a handler it has
    args = build_parser().parse_args(argv)
    settings = load_settings(args)
    plan = make_plan(args, settings)
    rendered = process(read_source(args.source, settings), plan, imaging_settings(settings))
    write_output(rendered, args.output)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        run(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except ProxyError as e:
        return _fail(e.reason)
    except OSError as e:
        return _fail(f"{e.filename}: {e.strerror}" if e.filename else str(e))
    except (UsageError, ConfigError, ValueError) as e:
        return _fail(str(e))
    except Exception as e:  # a bug, not bad input: still one line, never a traceback
        return _fail(f"unexpected error: {type(e).__name__}: {e}", status=1)
    return 0


def _fail(reason: str, status: int = 2) -> int:
    print(f"{PROG}: {' '.join(str(reason).split())}", file=sys.stderr)
    return status
