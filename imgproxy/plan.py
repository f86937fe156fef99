"""The Plan: what the client asked to be done to an image. Data only, no settings.

A Plan pickles small (a few hundred bytes) and travels to a worker with the source
bytes. Its canonical form names what was decided, independent of how the client
spelled it; cache keys and ETags are made from it (delivery/keys.py).
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass, field
from typing import ClassVar, Union

OPERATIONS = ("noop", "region", "resize", "rotate")
MODES = ("adapt", "clip", "crop", "fill", "scale")
FILTERS = ("nearest", "bilinear", "bicubic", "antialias")
FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "gif": "GIF",
           "webp": "WEBP", "tiff": "TIFF", "avif": "AVIF"}
AUTO = "AUTO"  # fmt=auto: chosen from the request's Accept header (delivery/negotiate.py)
POSITIONS = {
    "top-left": (0.0, 0.0), "top": (0.5, 0.0), "top-right": (1.0, 0.0),
    "left": (0.0, 0.5), "center": (0.5, 0.5), "right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0), "bottom": (0.5, 1.0), "bottom-right": (1.0, 1.0),
}
CENTER = POSITIONS["center"]
FACE = "face"
TRANSPARENT_WHITE = (255, 255, 255, 0)

Color = tuple[int, int, int, int]  # RGBA
Position = Union[tuple[float, float], str]  # ratios, or FACE

# Bump when the canonical form, or what the same form renders to, changes.
# 2: compositing onto bg as Pilbox does, Pilbox's rotate corners, auto_orient, Resize.enlarge.
# 3: Save.srgb.
CANONICAL_VERSION = 3


@dataclass(frozen=True, slots=True)
class Noop:
    name: ClassVar[str] = "noop"


@dataclass(frozen=True, slots=True)
class Region:
    name: ClassVar[str] = "region"
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Resize:
    name: ClassVar[str] = "resize"
    width: int | None
    height: int | None
    mode: str = "crop"
    filter: str = "antialias"
    position: Position = CENTER
    retain: int = 75
    background: Color = TRANSPARENT_WHITE
    enlarge: bool = True  # False: a box larger than the source shrinks to fit it (path URL sizes)


@dataclass(frozen=True, slots=True)
class Rotate:
    name: ClassVar[str] = "rotate"
    degrees: int | None  # clockwise; None = from EXIF orientation ("auto")
    expand: bool = False
    background: Color | None = None  # the request's bg for the corners; None: Pilbox's black


Operation = Union[Noop, Region, Resize, Rotate]


@dataclass(frozen=True, slots=True)
class Save:
    format: str | None = None  # Pillow format name; None keeps the source's; AUTO: see encode
    quality: int | str | None = None  # 1-99 or "keep"; None = the output format's default
    optimize: bool = False
    progressive: bool = False
    preserve_exif: bool = False
    background: Color = TRANSPARENT_WHITE
    srgb: bool = False  # convert to sRGB and drop the colour profile (the upload store's variants)


@dataclass(frozen=True, slots=True)
class Plan:
    operations: tuple[Operation, ...]
    save: Save = field(default_factory=Save)
    auto_orient: bool = False  # apply the EXIF orientation before the operations

    @property
    def is_noop(self) -> bool:
        return any(isinstance(op, Noop) for op in self.operations)

    def canonical(self) -> str:
        """A stable text of the plan: operation names and values by position, no field names."""
        return json.dumps([CANONICAL_VERSION, [[op.name, *astuple(op)] for op in self.operations],
                           list(astuple(self.save)), self.auto_orient], separators=(",", ":"))
