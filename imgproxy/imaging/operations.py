"""Resize modes, region and rotate: a PIL image and a typed operation in, an image out.

Geometry (output sizes, crop windows) is computed by small functions of sizes
alone, so the pipeline can check limits and plan shrink-on-load before decoding.
`resize` takes the image's logical size: after a JPEG draft the pixels are a
fraction of the header size, and output sizes must not depend on that.
"""

from __future__ import annotations

import math

from PIL import Image

from ..errors import Code, ProxyError
from ..params import FACE, Color, Region, Resize, Rotate
from . import faces

Size = tuple[int, int]

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "antialias": Image.Resampling.LANCZOS,
}
REDUCING_GAP = 3.0  # box-reduce first, keep >= 3x the target for the final filter
CENTER = (0.5, 0.5)
_TRANSPOSE = {  # clockwise degrees -> Pillow transpose (Pillow's names are counter-clockwise)
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


# --- modes ----------------------------------------------------------------------

def eight_bit(img: Image.Image) -> Image.Image:
    """16/32-bit greyscale -> L by scaling the range, not clipping it."""
    if img.mode.startswith("I;16"):
        return img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if img.mode in ("I", "F"):
        _, high = img.getextrema()
        if img.mode == "F" and high <= 1.0:
            scale = 255.0  # float samples are conventionally 0..1
        elif high <= 255:
            scale = 1.0
        elif high <= 65535:
            scale = 1 / 256  # the usual case: 16-bit samples widened to 32 bits
        else:
            scale = 255 / high
        return img.point(lambda v: v * scale).convert("L")
    return img


def to_rgb(img: Image.Image, alpha: bool) -> Image.Image:
    """RGB, or RGBA when `alpha`; any source mode, transparency kept as alpha."""
    img = eight_bit(img)
    want = "RGBA" if alpha else "RGB"
    return img if img.mode == want else img.convert(want)


def flatten(img: Image.Image, background: Color) -> Image.Image:
    """Composite onto the background's RGB: the result is opaque RGB."""
    rgba = to_rgb(img, alpha=True)
    canvas = Image.new("RGB", rgba.size, background[:3])
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas


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
    """The requested box; a missing side follows the aspect ratio (truncated)."""
    w, h = size
    width, height = op.width, op.height
    if width is None:
        width = max(1, int(height * w / h))
    if height is None:
        height = max(1, int(width / (w / h)))
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
    resample = FILTERS[op.filter]
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


def _fill(img: Image.Image, box: Size, background: Color) -> Image.Image:
    """Centre `img` on a canvas of exactly `box`, painted with the background."""
    offset = ((box[0] - img.size[0]) // 2, (box[1] - img.size[1]) // 2)
    if background[3] < 255:  # a see-through canvas: composite, keeping alpha right
        canvas = Image.new("RGBA", box, background)
        canvas.alpha_composite(to_rgb(img, alpha=True), offset)
        return canvas
    canvas = Image.new("RGB", box, background[:3])
    if img.has_transparency_data:
        rgba = to_rgb(img, alpha=True)
        canvas.paste(rgba, offset, rgba.getchannel("A"))
    else:
        canvas.paste(to_rgb(img, alpha=False), offset)
    return canvas


def check_region(op: Region, size: Size) -> None:
    if op.x + op.width > size[0] or op.y + op.height > size[1]:
        raise ProxyError(400, Code.RECTANGLE,
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
    """Rotate clockwise by op.degrees (already resolved from EXIF when it was auto)."""
    degrees = (op.degrees or 0) % 360
    if degrees == 0:
        return img
    if degrees in _TRANSPOSE:  # exact, no resampling
        return img.transpose(_TRANSPOSE[degrees])
    alpha = img.has_transparency_data or op.background[3] < 255
    img = to_rgb(img, alpha)
    fill = op.background if alpha else op.background[:3]
    return img.rotate(-degrees, resample=Image.Resampling.BICUBIC, expand=op.expand,
                      fillcolor=fill)
