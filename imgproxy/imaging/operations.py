"""Resize modes, region and rotate: a PIL image and a typed operation in, an image out.

Geometry (output sizes, crop windows) is computed by small functions of sizes
alone, so the pipeline can check limits and plan shrink-on-load before decoding.
`resize` takes the image's logical size: after a JPEG draft the pixels are a
fraction of the header size, and output sizes must not depend on that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar

from PIL import Image

from ..errors import Code, bad_request
from ..plan import CENTER, FACE, Color, Operation, Region, Resize, Rotate
from . import faces
from .modes import blend, eight_bit, to_rgb

Size = tuple[int, int]

RESAMPLING = {  # the filter= names -> Pillow's filters
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "antialias": Image.Resampling.LANCZOS,
}
REDUCING_GAP = 3.0  # box-reduce first, keep >= 3x the target for the final filter
_TRANSPOSE = {  # clockwise degrees -> Pillow transpose (Pillow's names are counter-clockwise)
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


def _resampleable(img: Image.Image, resample: int) -> Image.Image:
    """Palette and bilevel images cannot be interpolated; widen them first."""
    if resample == Image.Resampling.NEAREST:
        return img
    if img.mode in ("P", "PA"):
        return to_rgb(img, alpha=img.has_transparency_data)
    if img.mode == "1":
        return img.convert("L")
    return img


# --- resize geometry ------------------------------------------------------------

def box_size(op: Resize, size: Size) -> Size:
    """The requested box; a missing side follows the aspect ratio (truncated).

    Without `enlarge`, a box wider or taller than the source shrinks, keeping its
    own aspect ratio, until it fits inside the source (clip never enlarges anyway).
    """
    w, h = size
    width, height = op.width, op.height
    if width is None:
        width = max(1, int(height * w / h))
    if height is None:
        height = max(1, int(width / (w / h)))
    if not op.enlarge and op.mode != "clip" and (width > w or height > h):
        scale = min(w / width, h / height)
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
    return width, height


def effective_mode(op: Resize, size: Size) -> str:
    """`adapt` becomes crop when cropping keeps at least `retain` percent, else fill."""
    if op.mode != "adapt":
        return op.mode
    box = box_size(op, size)
    box_ratio, src_ratio = box[0] / box[1], size[0] / size[1]
    retained = min(box_ratio, src_ratio) / max(box_ratio, src_ratio) * 100
    return "crop" if op.retain <= retained else "fill"


def clip_size(box: Size, size: Size) -> Size:
    """The largest size inside `box` with the source's aspect ratio, never enlarged."""
    w, h = size
    bw, bh = min(box[0], w), min(box[1], h)
    ratio = w / h
    if bw / bh >= ratio:  # the height decides
        bw = _round_aspect(bh * ratio, lambda n: n / bh, ratio)
    else:
        bh = _round_aspect(bw / ratio, lambda n: bw / n, ratio)
    return bw, bh


def _round_aspect(value: float, aspect_of, ratio: float) -> int:
    """Round to the neighbour whose aspect ratio is closest to `ratio`; at least 1."""
    candidates = [n for n in (math.floor(value), math.ceil(value)) if n > 0]
    return min(candidates, key=lambda n: abs(aspect_of(n) - ratio), default=1)


def resize_size(op: Resize, size: Size) -> Size:
    box = box_size(op, size)
    return clip_size(box, size) if effective_mode(op, size) == "clip" else box


def needed_size(op: Resize, size: Size) -> Size:
    """The smallest decoded size (same aspect) from which `op` loses no detail."""
    w, h = size
    box = box_size(op, size)
    mode = effective_mode(op, size)
    sx, sy = box[0] / w, box[1] / h
    if mode == "crop":  # the box must stay covered
        sx = sy = max(sx, sy)
        if op.position == FACE:  # and faces need enough pixels to be found
            sx = sy = max(sx, faces.DETECT_SIDE / max(w, h))
    elif mode in ("clip", "fill"):  # the fitted image is what counts
        sx = sy = min(sx, sy)
    return min(w, math.ceil(w * sx)), min(h, math.ceil(h * sy))


def crop_window(box: Size, size: Size, position: tuple[float, float]) -> tuple[float, ...]:
    """The largest window with the box's aspect ratio, placed at `position` (ratios)."""
    w, h = size
    box_ratio = box[0] / box[1]
    if w / h > box_ratio:
        cw, ch = h * box_ratio, float(h)
    else:
        cw, ch = float(w), w / box_ratio
    left, top = (w - cw) * position[0], (h - ch) * position[1]
    return left, top, left + cw, top + ch


# --- operations -----------------------------------------------------------------

def resize(img: Image.Image, op: Resize, size: Size | None = None) -> Image.Image:
    """Apply a Resize. `size` is the logical size of `img` (its header size before a draft)."""
    size = size or img.size
    resample = RESAMPLING[op.filter]
    img = _resampleable(img, resample)
    box = box_size(op, size)
    mode = effective_mode(op, size)
    if mode == "crop":
        position = op.position
        if position == FACE:
            position = faces.focal_point(eight_bit(img)) or CENTER
        sx, sy = img.size[0] / size[0], img.size[1] / size[1]
        left, top, right, bottom = crop_window(box, size, position)
        return img.resize(box, resample, box=(left * sx, top * sy, right * sx, bottom * sy),
                          reducing_gap=_reducing_gap(img))
    if mode == "scale":
        return _resize(img, box, resample)
    clipped = _resize(img, clip_size(box, size), resample)
    return clipped if mode == "clip" else _fill(clipped, box, op.background)


def _resize(img: Image.Image, target: Size, resample: int) -> Image.Image:
    if img.size == target:
        return img
    return img.resize(target, resample, reducing_gap=_reducing_gap(img))


def _reducing_gap(img: Image.Image) -> float | None:
    # Pillow's reduce() has no 16-bit greyscale; those resample in one step.
    return None if img.mode.startswith("I;16") else REDUCING_GAP


def paints_background(op: Operation, size: Size) -> bool:
    """Whether `op` on an image of logical `size` pads it onto its background (a fill
    that does not fit exactly). Pilbox then skips compositing when it saves."""
    if not isinstance(op, Resize) or effective_mode(op, size) != "fill":
        return False
    box = box_size(op, size)
    return clip_size(box, size) != box


def _fill(img: Image.Image, box: Size, background: Color) -> Image.Image:
    """Centre `img` on a canvas of exactly `box`, painted with the background."""
    offset = ((box[0] - img.size[0]) // 2, (box[1] - img.size[1]) // 2)
    if background[3] < 255:  # a see-through canvas: blended as Pilbox pastes
        return blend(img, background, box, offset)
    canvas = Image.new("RGB", box, background[:3])
    if img.has_transparency_data:
        rgba = to_rgb(img, alpha=True)
        canvas.paste(rgba, offset, rgba.getchannel("A"))
    else:
        canvas.paste(to_rgb(img, alpha=False), offset)
    return canvas


def check_region(op: Region, size: Size) -> None:
    if op.x + op.width > size[0] or op.y + op.height > size[1]:
        raise bad_request(Code.RECTANGLE,
                          f"Region out-of-bounds: {op.x},{op.y},{op.width},{op.height} "
                          f"is not inside {size[0]}x{size[1]}")


def region(img: Image.Image, op: Region) -> Image.Image:
    check_region(op, img.size)
    return img.crop((op.x, op.y, op.x + op.width, op.y + op.height))


def rotated_size(size: Size, degrees: int, expand: bool) -> Size:
    """The size `rotate` produces, computed the way Pillow bounds an expanded rotation."""
    degrees %= 360
    w, h = size
    if degrees in (90, 270):
        return h, w
    if degrees % 180 == 0 or not expand:
        return w, h
    a = math.radians(degrees)
    cos, sin = round(math.cos(a), 15), round(math.sin(a), 15)
    cx, cy = w / 2, h / 2
    xs, ys = [], []
    for x, y in ((0, 0), (w, 0), (w, h), (0, h)):  # corners, turned about the centre
        xs.append(cos * (x - cx) - sin * (y - cy) + cx)
        ys.append(sin * (x - cx) + cos * (y - cy) + cy)
    return (math.ceil(max(xs)) - math.floor(min(xs)),
            math.ceil(max(ys)) - math.floor(min(ys)))


def rotate(img: Image.Image, op: Rotate) -> Image.Image:
    """Rotate clockwise by op.degrees (already resolved from EXIF when it was auto).

    The uncovered corners are op.background when the request gave bg; else, as in
    Pilbox, black, or transparent black for an image with transparency (which the
    save step then composites onto the background like any other transparency).
    """
    degrees = (op.degrees or 0) % 360
    if degrees == 0:
        return img
    if degrees in _TRANSPOSE:  # exact, no resampling
        return img.transpose(_TRANSPOSE[degrees])
    background = op.background or (0, 0, 0, 0)
    alpha = img.has_transparency_data or (op.background is not None and background[3] < 255)
    img = to_rgb(img, alpha)
    fill = background if alpha else background[:3]
    return img.rotate(-degrees, resample=Image.Resampling.BICUBIC, expand=op.expand,
                      fillcolor=fill)


@dataclass(frozen=True, slots=True)
class Orient:
    """The EXIF orientation (2-8) applied before the plan's operations (auto_orient).

    Not a query operation: the pipeline puts it first when the plan asks for it.
    """
    name: ClassVar[str] = "orient"
    tag: int


_ORIENT = {  # EXIF Orientation -> the transpose that shows the picture upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ORIENTATIONS = tuple(_ORIENT)


def orient(img: Image.Image, op: Orient) -> Image.Image:
    return img.transpose(_ORIENT[op.tag])


# --- one entry per operation type: everything the pipeline needs to know of it ---------

@dataclass(frozen=True, slots=True)
class Shrink:
    """How an operation lets a JPEG be decoded at a reduced scale before it.

    `needed`: the decode size it needs (the walk ends); else `passes`: it works as
    well on fewer pixels and the walk goes on, `turns` if it swaps width and height.
    """
    needed: Size | None = None
    passes: bool = False
    turns: bool = False


STOP = Shrink()


@dataclass(frozen=True, slots=True)
class Kind:
    output_size: Callable[[Operation, Size], Size]  # from the input size; checks bounds
    apply: Callable[[Image.Image, Operation, Size | None], Image.Image]  # size: logical, after a draft
    shrink: Callable[[Operation, Size], Shrink]


def _region_size(op: Region, size: Size) -> Size:
    check_region(op, size)
    return op.width, op.height


def _rotate_shrink(op: Rotate, size: Size) -> Shrink:
    if op.degrees % 90:
        return STOP
    return Shrink(passes=True, turns=bool(op.degrees % 180))


KINDS: dict[type, Kind] = {
    Resize: Kind(resize_size, resize, lambda op, size: Shrink(needed=needed_size(op, size))),
    Region: Kind(_region_size, lambda img, op, size: region(img, op), lambda op, size: STOP),
    Rotate: Kind(lambda op, size: rotated_size(size, op.degrees, op.expand),
                 lambda img, op, size: rotate(img, op), _rotate_shrink),
    # Orientations 5-8 swap width and height; flips and turns work as well on fewer pixels.
    Orient: Kind(lambda op, size: (size[1], size[0]) if op.tag >= 5 else size,
                 lambda img, op, size: orient(img, op),
                 lambda op, size: Shrink(passes=True, turns=op.tag >= 5)),
}
