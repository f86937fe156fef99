"""process(data, plan) -> Rendered: the one entry point that workers and the CLI run.

Steps: identify -> (noop: the bytes as they came) -> source pixel cap -> resolve
rotate=auto -> output sizes and limits from the header alone -> decode, shrunk on
load for a first resize -> operations in order -> encode.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

from PIL import Image

from ..errors import Code, ProxyError
from ..params import Operation, Plan, Region, Resize, Rotate
from . import decode, encode, operations
from .operations import Size


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    format: str  # Pillow name, e.g. "JPEG"
    width: int
    height: int


def process(data: bytes, plan: Plan) -> Rendered:
    """Render `data` as `plan` asks; every failure is a ProxyError."""
    with warnings.catch_warnings():
        # Pillow's warnings (corrupt EXIF and the like) are noise in a worker's log,
        # except the decompression-bomb one, which it gives below twice its limit.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _process(data, plan)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ProxyError(413, Code.IMAGE_TOO_LARGE, str(e)) from None


def _process(data: bytes, plan: Plan) -> Rendered:
    limits = plan.limits
    img = decode.open_image(data, limits.input_formats)
    if plan.is_noop:  # identified, never decoded
        fmt = decode.served_format(img.format)
        return Rendered(data, encode.content_type(fmt), fmt, *img.size)

    # Every frame counts against the cap, though only the first is ever decoded.
    decode.check_pixels("Source image", img.size, limits.max_source_pixels, decode.frame_count(img))
    source = decode.describe(img)
    ops = resolve_auto_rotation(plan.operations, source)
    sizes = operation_sizes(ops, source.size, limits.max_output_pixels)
    img = decode.load(img, draft_size(ops, source.size))

    drafted = img.size != source.size
    for op, size in zip(ops, sizes):
        # Until the first resize, a drafted image is smaller than its logical size.
        img = apply(img, op, size if drafted else None)
        drafted = drafted and not isinstance(op, Resize)

    if source.exif and source.orientation and any(
            isinstance(op, Rotate) and op.degrees is None for op in plan.operations):
        # The pixels are upright now; kept EXIF must not ask viewers to turn them again.
        source = dataclasses.replace(source, exif=decode.reset_orientation(source.exif))
    body, fmt = encode.encode(img, plan.save, source)
    return Rendered(body, encode.content_type(fmt), fmt, img.size[0], img.size[1])


def resolve_auto_rotation(ops: tuple[Operation, ...], source: decode.Source) -> list[Operation]:
    """rotate=auto becomes the EXIF orientation's degrees (0 for non-JPEG sources)."""
    return [dataclasses.replace(op, degrees=source.orientation)
            if isinstance(op, Rotate) and op.degrees is None else op for op in ops]


def operation_sizes(ops: list[Operation], size: Size, max_output_pixels: int) -> list[Size]:
    """Each operation's input size, from the header alone; checks bounds and output limits."""
    sizes = []
    for op in ops:
        sizes.append(size)
        if isinstance(op, Resize):
            size = operations.resize_size(op, size)
        elif isinstance(op, Region):
            operations.check_region(op, size)
            size = (op.width, op.height)
        elif isinstance(op, Rotate):
            size = operations.rotated_size(size, op.degrees, op.expand)
        decode.check_pixels("Output image", size, max_output_pixels)
    return sizes


def draft_size(ops: list[Operation], size: Size) -> Size | None:
    """The decode size a first resize needs (right-angle rotations may come before it)."""
    turned = False
    for op in ops:
        if isinstance(op, Rotate) and op.degrees % 90 == 0:
            if op.degrees % 180:
                turned, size = not turned, (size[1], size[0])
            continue
        if isinstance(op, Resize):
            need = operations.needed_size(op, size)
            return (need[1], need[0]) if turned else need
        return None
    return None


def apply(img: Image.Image, op: Operation, size: Size | None = None) -> Image.Image:
    """One operation; `size` is the logical size of a drafted image, for a resize."""
    if isinstance(op, Resize):
        return operations.resize(img, op, size)
    if isinstance(op, Region):
        return operations.region(img, op)
    if isinstance(op, Rotate):
        return operations.rotate(img, op)
    raise TypeError(f"not an operation: {op!r}")
