"""Parse and validate a query string into a Plan. Every parameter rule lives here.

Validation order and error codes follow Pilbox 1.3.4 so its clients see the same
answers: op -> url -> (signature, client, host: see security.py) -> w/h ->
deg/rect -> the rest. Resize options are checked only when `resize` is asked for;
save options always.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Union
from urllib.parse import parse_qsl, urljoin, urlsplit

from .errors import Code, bad_request

if TYPE_CHECKING:  # pragma: no cover
    from .config import Settings

OPERATIONS = ("noop", "region", "resize", "rotate")
MODES = ("adapt", "clip", "crop", "fill", "scale")
FILTERS = ("nearest", "bilinear", "bicubic", "antialias")
FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "gif": "GIF",
           "webp": "WEBP", "tiff": "TIFF", "avif": "AVIF"}
AUTO = "AUTO"  # fmt=auto: chosen from the request's Accept header (see negotiate.py)
POSITIONS = {
    "top-left": (0.0, 0.0), "top": (0.5, 0.0), "top-right": (1.0, 0.0),
    "left": (0.0, 0.5), "center": (0.5, 0.5), "right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0), "bottom": (0.5, 1.0), "bottom-right": (1.0, 1.0),
}
FACE = "face"
MAX_URL_LENGTH = 2048

Color = tuple[int, int, int, int]  # RGBA
Position = Union[tuple[float, float], str]  # ratios, or FACE


# --- the Plan: what a worker needs, small and cheap to pickle -------------------

@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Region:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Resize:
    width: int | None
    height: int | None
    mode: str = "crop"
    filter: str = "antialias"
    position: Position = (0.5, 0.5)
    retain: int = 75
    background: Color = (255, 255, 255, 0)


@dataclass(frozen=True, slots=True)
class Rotate:
    degrees: int | None  # clockwise; None = from EXIF orientation ("auto")
    expand: bool = False
    background: Color = (255, 255, 255, 0)


Operation = Union[Noop, Region, Resize, Rotate]


@dataclass(frozen=True, slots=True)
class Save:
    format: str | None = None  # Pillow format name; None keeps the source's; AUTO negotiates
    quality: int | str | None = None  # 1-99 or "keep"; None = the format's default below
    optimize: bool = False
    progressive: bool = False
    preserve_exif: bool = False
    background: Color = (255, 255, 255, 0)
    default_qualities: tuple[tuple[str, int], ...] = (("JPEG", 90), ("WEBP", 90), ("AVIF", 85))
    accepts: tuple[str, ...] = ()  # for AUTO: modern formats the client takes, best first

    def quality_for(self, fmt: str) -> int | str:
        if self.quality is not None:
            return self.quality
        return dict(self.default_qualities).get(fmt, dict(self.default_qualities).get("JPEG", 90))


@dataclass(frozen=True, slots=True)
class Limits:
    max_source_pixels: int = 50_000_000
    max_output_pixels: int = 50_000_000
    input_formats: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "AVIF")


@dataclass(frozen=True, slots=True)
class Plan:
    url: str
    operations: tuple[Operation, ...]
    save: Save = field(default_factory=Save)
    limits: Limits = field(default_factory=Limits)

    @property
    def is_noop(self) -> bool:
        return any(isinstance(op, Noop) for op in self.operations)


# --- value parsers, shared with config.py for the server-wide defaults ----------

_UINT = re.compile(r"[0-9]+\Z")
_INT = re.compile(r"-?[0-9]+\Z")
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
_RATIOS = re.compile(r"([0-9]+(?:\.[0-9]+)?),([0-9]+(?:\.[0-9]+)?)\Z")


def _int(value: str, signed: bool = False) -> int | None:
    """A plain ASCII decimal integer, or None (no '+', '_', spaces or other digits)."""
    return int(value) if (_INT if signed else _UINT).match(value) else None


def parse_operations(value: str) -> tuple[str, ...]:
    ops = tuple(value.split(","))
    for op in ops:
        if op not in OPERATIONS:
            raise bad_request(Code.OPERATION, f"Unsupported operation: {op or '(empty)'}")
    return ops


def parse_mode(value: str) -> str:
    if value not in MODES:
        raise bad_request(Code.MODE, f"Invalid mode: {value}")
    return value


def parse_filter(value: str) -> str:
    if value not in FILTERS:
        raise bad_request(Code.FILTER, f"Invalid filter: {value}")
    return value


def parse_format(value: str) -> str | None:
    if not value:
        return None
    if value.lower() == "auto":
        return AUTO
    if value.lower() not in FORMATS:
        raise bad_request(Code.FORMAT, f"Invalid format: {value}")
    return FORMATS[value.lower()]


def parse_position(value: str) -> Position:
    if value == FACE:
        return FACE
    if value in POSITIONS:
        return POSITIONS[value]
    m = _RATIOS.match(value)
    if m:
        x, y = float(m.group(1)), float(m.group(2))
        if 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0:
            return (x, y)
    raise bad_request(Code.POSITION, f"Invalid position: {value}")


def parse_background(value: str) -> Color:
    """RGB, RRGGBB, or ARGB, AARRGGBB (alpha first, as Pilbox) -> RGBA tuple."""
    if len(value) not in (3, 4, 6, 8) or not _HEX.match(value):
        raise bad_request(Code.BACKGROUND, f"Invalid background: {value}")
    if len(value) in (3, 4):
        value = "".join(c * 2 for c in value)
    n = int(value, 16)
    alpha = (n >> 24) & 255 if len(value) == 8 else 255
    return ((n >> 16) & 255, (n >> 8) & 255, n & 255, alpha)


def _flag(value: str, code: Code, name: str) -> bool:
    n = _int(value)
    if n is None:
        raise bad_request(code, f"Invalid {name}: {value}")
    return n != 0


def parse_optimize(value: str) -> bool:
    return _flag(value, Code.OPTIMIZE, "optimize")


def parse_progressive(value: str) -> bool:
    return _flag(value, Code.PROGRESSIVE, "progressive")


def parse_preserve_exif(value: str) -> bool:
    return _flag(value, Code.EXIF, "preserve_exif")


def parse_expand(value: str) -> bool:
    return _flag(value, Code.DEGREE, "expand")


def parse_quality(value: str) -> int | str:
    if value == "keep":
        return "keep"
    n = _int(value)
    if n is None or not 1 <= n <= 99:
        raise bad_request(Code.QUALITY, f"Invalid quality: {value}")
    return n


def parse_retain(value: str) -> int:
    n = _int(value)
    if n is None or not 1 <= n <= 99:
        raise bad_request(Code.RETAIN, f"Invalid retain: {value}")
    return n


def parse_degrees(value: str | None) -> int | None:
    if not value:
        raise bad_request(Code.DEGREE, "Missing degree")
    if value == "auto":
        return None
    n = _int(value, signed=True)
    if n is None or not 0 <= n < 360:
        raise bad_request(Code.DEGREE, f"Invalid degree: {value}")
    return n


def parse_rectangle(value: str | None) -> Region:
    if not value:
        raise bad_request(Code.RECTANGLE, "Missing rectangle")
    parts = value.split(",")
    numbers = [_int(p, signed=True) for p in parts]
    if len(parts) != 4 or None in numbers:
        raise bad_request(Code.RECTANGLE, f"Invalid rectangle: {value}")
    x, y, w, h = numbers
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise bad_request(Code.RECTANGLE, f"Region out-of-bounds: {value}")
    return Region(x, y, w, h)


def parse_dimension(value: str | None, name: str, maximum: int) -> int | None:
    if value is None or value == "":
        return None
    n = _int(value)
    if n is None or n < 1:
        raise bad_request(Code.DIMENSIONS, f"Invalid {name}: {value}")
    if n > maximum:
        raise bad_request(Code.DIMENSIONS, f"Invalid {name}: {value} exceeds {maximum}")
    return n


# --- the URL -------------------------------------------------------------------

_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


def _check_host(host: str) -> None:
    # Hosts whose last label starts with a digit are IPv4 to a browser or libc;
    # only the canonical dotted quad is accepted (no 127.1, 0x7f000001, 0177.0.0.1).
    last = host.rstrip(".").rsplit(".", 1)[-1]
    if last[:1].isdigit() or last[:2].lower() == "0x":
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise bad_request(Code.URL, f"Invalid host: {host}") from None


def check_url(url: str) -> str:
    """Reject what is not a plain absolute http(s) URL; returns it unchanged."""
    if len(url) > MAX_URL_LENGTH:
        raise bad_request(Code.URL, f"URL longer than {MAX_URL_LENGTH} characters")
    if _BAD_URL_CHARS.search(url):
        raise bad_request(Code.URL, "URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise bad_request(Code.URL, "Malformed URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise bad_request(Code.URL, "Unsupported protocol")
    if "@" in parts.netloc:
        raise bad_request(Code.URL, "URL must not contain user info")
    if not parts.hostname:
        raise bad_request(Code.URL, "URL has no host")
    if not parts.netloc.startswith("["):
        _check_host(parts.hostname)
    return url


def resolve_url(value: str | None, settings: Settings) -> str:
    if not value:
        raise bad_request(Code.URL, "Missing url")
    if value.startswith("/") and not value.startswith("//") and settings.implicit_base_url:
        value = urljoin(settings.implicit_base_url, value)
    elif not value.lower().startswith(("http://", "https://")):
        raise bad_request(Code.URL, "Unsupported protocol")
    return check_url(value)


# --- the query -----------------------------------------------------------------

def parse_query(raw_query: str) -> dict[str, str]:
    """Query string -> {name: last value, stripped}, as Pilbox's get_argument."""
    args: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True, errors="replace"):
        args[name] = value.strip()
    return args


def parse_target(args: Mapping[str, str], settings: Settings) -> tuple[tuple[str, ...], str]:
    """The first two checks, before the signature: operations, then the source URL."""
    ops = parse_operations(args["op"] if "op" in args else ",".join(settings.operation))
    not_allowed = [op for op in ops if op not in settings.allowed_operations]
    if not_allowed:
        raise bad_request(Code.OPERATION, f"Unsupported operation: {not_allowed[0]}")
    if len(ops) > settings.max_operations:
        raise bad_request(Code.OPERATION, f"Too many operations (at most {settings.max_operations})")
    return ops, resolve_url(args.get("url"), settings)


def parse_plan(args: Mapping[str, str], ops: tuple[str, ...], url: str,
               settings: Settings) -> Plan:
    """The checks after access control, in Pilbox's order."""
    def arg(name: str) -> str | None:
        value = args.get(name)
        return value if value else None

    resizing = "resize" in ops
    width = height = None
    if resizing:
        if not arg("w") and not arg("h"):
            raise bad_request(Code.DIMENSIONS, "Missing dimensions")
        width = parse_dimension(arg("w"), "width", settings.max_resize_width)
        height = parse_dimension(arg("h"), "height", settings.max_resize_height)
    degrees = expand = None
    if "rotate" in ops:
        degrees = parse_degrees(arg("deg"))
        expand = parse_expand(arg("expand")) if arg("expand") else settings.expand
    region = parse_rectangle(arg("rect")) if "region" in ops else None

    def option(name: str, parser, default):
        value = arg(name)
        return default if value is None else parser(value)

    mode = option("mode", parse_mode, settings.mode) if resizing else None
    filter_ = option("filter", parse_filter, settings.filter) if resizing else None
    fmt = option("fmt", parse_format, settings.format)
    position = option("pos", parse_position, settings.position) if resizing else None
    background = option("bg", parse_background, settings.background)
    optimize = option("opt", parse_optimize, settings.optimize)
    # Without q, each output format gets its own default quality (see Save.quality_for).
    quality = option("q", parse_quality, "keep" if settings.quality == "keep" else None)
    preserve_exif = option("exif", parse_preserve_exif, settings.preserve_exif)
    progressive = option("prog", parse_progressive, settings.progressive)
    retain = option("retain", parse_retain, settings.retain) if resizing else None

    operations: list[Operation] = []
    for op in ops:
        if op == "noop":
            operations.append(Noop())
        elif op == "region":
            operations.append(region)
        elif op == "resize":
            operations.append(Resize(width, height, mode, filter_, position, retain, background))
        else:
            operations.append(Rotate(degrees, expand, background))
    jpeg_quality = settings.quality if isinstance(settings.quality, int) else 90
    qualities = (("JPEG", jpeg_quality), ("WEBP", settings.quality_webp),
                 ("AVIF", settings.quality_avif))
    save = Save(fmt, quality, optimize, progressive, preserve_exif, background, qualities)
    limits = Limits(settings.max_source_pixels, settings.max_output_pixels,
                    settings.input_formats)
    return Plan(url, tuple(operations), save, limits)
