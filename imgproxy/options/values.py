"""One parameter value each: text in, typed value out, or a 400 with Pilbox's code.

Shared with config.py, whose server-wide image defaults take the same forms.
Enumerated values (op, mode, filter, pos names, fmt, deg=auto, q=keep) are read
without regard to case: `mode=CROP` is `mode=crop`.
"""

from __future__ import annotations

import re

from ..errors import Code, bad_request
from ..plan import AUTO, FACE, FILTERS, FORMATS, MODES, OPERATIONS, POSITIONS, Color, Position, Region

_UNSIGNED = re.compile(r"[0-9]+\Z")
_SIGNED = re.compile(r"-?[0-9]+\Z")
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
SIZE = re.compile(r"([0-9]{1,5})x([0-9]{1,5})(!?)\Z")  # path URL sizes: WxH fits, WxH! crops
_RATIOS = re.compile(r"([0-9]+(?:\.[0-9]+)?),([0-9]+(?:\.[0-9]+)?)\Z")


def plain_integer(value: str, signed: bool = False) -> int | None:
    """A plain ASCII decimal integer, or None (no '+', '_', spaces or other digits)."""
    return int(value) if (_SIGNED if signed else _UNSIGNED).match(value) else None


def parse_operations(value: str) -> tuple[str, ...]:
    ops = tuple(value.lower().split(","))
    for op in ops:
        if op not in OPERATIONS:
            raise bad_request(Code.OPERATION, f"Unsupported operation: {op or '(empty)'}")
    return ops


def parse_mode(value: str) -> str:
    if value.lower() not in MODES:
        raise bad_request(Code.MODE, f"Invalid mode: {value}")
    return value.lower()


def parse_filter(value: str) -> str:
    if value.lower() not in FILTERS:
        raise bad_request(Code.FILTER, f"Invalid filter: {value}")
    return value.lower()


def parse_format(value: str) -> str | None:
    if not value:
        return None
    if value.lower() == "auto":
        return AUTO
    if value.lower() not in FORMATS:
        raise bad_request(Code.FORMAT, f"Invalid format: {value}")
    return FORMATS[value.lower()]


def parse_position(value: str) -> Position:
    if value.lower() == FACE:
        return FACE
    if value.lower() in POSITIONS:
        return POSITIONS[value.lower()]
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
    n = plain_integer(value)
    if n is None:
        raise bad_request(code, f"Invalid {name}: {value}")
    return n != 0


def parse_optimize(value: str) -> bool:
    return _flag(value, Code.OPTIMIZE, "optimize")


def parse_progressive(value: str) -> bool:
    return _flag(value, Code.PROGRESSIVE, "progressive")


def parse_preserve_exif(value: str) -> bool:
    return _flag(value, Code.EXIF, "preserve_exif")


def parse_enlarge(value: str) -> bool:
    return _flag(value, Code.DIMENSIONS, "enlarge")


def parse_expand(value: str) -> bool:
    return _flag(value, Code.DEGREE, "expand")


def parse_quality(value: str) -> int | str:
    if value.lower() == "keep":
        return "keep"
    n = plain_integer(value)
    if n is None or not 1 <= n <= 99:
        raise bad_request(Code.QUALITY, f"Invalid quality: {value}")
    return n


def parse_retain(value: str) -> int:
    n = plain_integer(value)
    if n is None or not 1 <= n <= 99:
        raise bad_request(Code.RETAIN, f"Invalid retain: {value}")
    return n


def parse_degrees(value: str | None) -> int | None:
    if not value:
        raise bad_request(Code.DEGREE, "Missing degree")
    if value.lower() == "auto":
        return None
    n = plain_integer(value, signed=True)
    if n is None or not 0 <= n < 360:
        raise bad_request(Code.DEGREE, f"Invalid degree: {value}")
    return n


def parse_rectangle(value: str | None) -> Region:
    if not value:
        raise bad_request(Code.RECTANGLE, "Missing rectangle")
    parts = value.split(",")
    numbers = [plain_integer(p, signed=True) for p in parts]
    if len(parts) != 4 or None in numbers:
        raise bad_request(Code.RECTANGLE, f"Invalid rectangle: {value}")
    x, y, w, h = numbers
    if x < 0 or y < 0 or w < 1 or h < 1:
        raise bad_request(Code.RECTANGLE, f"Region out-of-bounds: {value}")
    return Region(x, y, w, h)


def parse_dimension(value: str | None, name: str, maximum: int) -> int | None:
    if value is None or value == "":
        return None
    n = plain_integer(value)
    if n is None or n < 1:
        raise bad_request(Code.DIMENSIONS, f"Invalid {name}: {value}")
    if n > maximum:
        raise bad_request(Code.DIMENSIONS, f"Invalid {name}: {value} exceeds {maximum}")
    return n
