"""Path URLs -> options: `/220x220/photos/cat.jpg`, `/220x220!/...`, `/s220/...` (a preset),
and `/220x220/10x20/400x300/...` (cut that rectangle first, then resize).

`WxH` fits the image inside the box keeping its aspect ratio (clip); `WxH!` crops
to the box's shape (around the centre, or `pos`). Neither enlarges: a box larger
than the source shrinks to fit it. `W` or `H` may be 0: it follows the aspect
ratio. Geometry comes from the path alone; the query may add the other options
(`fmt`, `q`, `pos`, ...), checked by the same code as the query API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from .. import errors
from ..errors import Code, bad_request
from ..sources.paths import normalise_path
from . import presets
from .values import SIZE

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings

# Set by the path: a query that tries to change them is refused.
FROM_THE_PATH = ("url", "op", "w", "h", "rect", "mode", "retain", "enlarge", "deg", "expand", "preset")
_CORNER = SIZE  # the rectangle's corners share the WxH form (without "!")


@dataclass(frozen=True, slots=True)
class PathRequest:
    options: dict[str, str]  # for build_plan: default preset, then the path's, then the query's
    source: str  # the source's path on the origins, normalised
    size: str | None  # "220x220" or "220x220!" when the path gives a size
    preset: str | None


def read_path(raw_path: str, query: Mapping[str, str], settings: Settings) -> PathRequest:
    """`raw_path` as the request line has it (still percent-encoded)."""
    head, _, rest = raw_path.lstrip("/").partition("/")
    if not rest:
        raise errors.not_found("Not found")
    for name in FROM_THE_PATH:
        if name in query:
            raise bad_request(Code.OPERATION, f"{name}= cannot be given with a path URL: the path sets it")
    size = SIZE.match(head)
    if size:
        options, rest = _size_options(size, rest)
        preset = None
    elif head in dict(settings.presets):
        options, preset = {}, head
    else:
        raise errors.not_found(f"No preset or size named {head[:64]}")
    options = presets.layered({**options, **query}, settings, preset)
    return PathRequest(options, normalise_path("/" + rest), head if size else None, preset)


def size_options(size: str) -> dict[str, str]:
    """A size (`WxH` or `WxH!`, already matched by SIZE) as the query API's options."""
    width, height, exact = SIZE.match(size).groups()
    if int(width) == 0 and int(height) == 0:
        raise bad_request(Code.DIMENSIONS, "Invalid size: 0x0")
    # With a side at 0 the box already has the source's shape: scale to it, so 300x0 is 300 wide.
    mode = "scale" if not (int(width) and int(height)) else "crop" if exact else "clip"
    return {"op": "resize", "mode": mode, "enlarge": "0",
            "w": width if int(width) else "", "h": height if int(height) else ""}


def _size_options(size, rest: str) -> tuple[dict[str, str], str]:
    options = size_options(size.group(0))
    parts = rest.split("/", 2)
    if len(parts) == 3 and all(_CORNER.match(p) and not p.endswith("!") for p in parts[:2]):
        (left, top), (right, bottom) = (map(int, p.split("x")) for p in parts[:2])
        if right <= left or bottom <= top:
            raise bad_request(Code.RECTANGLE, f"Empty or inverted rectangle: {parts[0]} to {parts[1]}")
        options.update(op="region,resize", rect=f"{left},{top},{right - left},{bottom - top}")
        rest = parts[2]
    return options, rest
