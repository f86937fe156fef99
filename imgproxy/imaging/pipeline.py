"""process(data, plan, settings) -> Rendered: the one entry point that workers and the CLI run.

Steps: identify -> (noop: the bytes as they came) -> source pixel cap -> the EXIF
orientation as a first step (auto_orient) -> resolve rotate=auto -> output sizes and
limits from the header alone -> decode, shrunk on load for a first resize ->
operations in order -> kept EXIF without its thumbnail (and GPS) -> encode.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

from PIL import Image

from .. import errors
from ..plan import Operation, Plan, Resize, Rotate
from . import decode, encode
from .operations import KINDS, ORIENTATIONS, Orient, Size, paints_background
from .settings import ImagingSettings


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    content_type: str
    format: str  # Pillow name, e.g. "JPEG"
    width: int
    height: int


def process(data: bytes, plan: Plan, settings: ImagingSettings) -> Rendered:
    """Render `data` as `plan` asks; every failure is a ProxyError."""
    with warnings.catch_warnings():
        # Pillow's warnings (corrupt EXIF and the like) are noise in a worker's log,
        # except the decompression-bomb one, which it gives below twice its limit.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _process(data, plan, settings)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise errors.image_too_large(str(e)) from None


def _process(data: bytes, plan: Plan, settings: ImagingSettings) -> Rendered:
    img = decode.open_image(data, settings.input_formats)
    if plan.is_noop:  # identified, never decoded
        fmt = decode.served_format(img.format)
        return Rendered(data, encode.content_type(fmt), fmt, *img.size)

    # Every frame counts against the cap, though only the first is ever decoded.
    decode.check_pixels("Source image", img.size, settings.max_source_pixels, decode.frame_count(img))
    header = decode.read_header(img)
    ops: list[Operation | Orient] = list(plan.operations)
    tag = decode.orientation_tag(img) if plan.auto_orient else 0
    oriented = tag in ORIENTATIONS
    if oriented:  # upright first; a rotate=auto after it finds nothing left to turn
        ops.insert(0, Orient(tag))
        header = dataclasses.replace(header, orientation=0)
    ops = resolve_auto_rotation(ops, header)
    sizes = operation_sizes(ops, header.size, settings.max_output_pixels)
    img = decode.load(img, draft_size(ops, header.size))

    drafted = img.size != header.size
    painted = False  # a fill put the image on its background (Pilbox then skips compositing)
    for op, size in zip(ops, sizes):
        painted = painted or paints_background(op, size)
        # Until the first resize, a drafted image is smaller than its logical size.
        img = KINDS[type(op)].apply(img, op, size if drafted else None)
        drafted = drafted and not isinstance(op, Resize)

    if header.exif and plan.save.preserve_exif:
        exif: bytes | None = header.exif
        if oriented or (header.orientation and any(
                isinstance(op, Rotate) and op.degrees is None for op in plan.operations)):
            # The pixels are upright now; kept EXIF must not ask viewers to turn them again.
            exif = decode.reset_orientation(exif)
        # The thumbnail shows the source before any operation; GPS is where it was taken.
        exif = decode.strip_exif(exif, gps=settings.strip_gps)
        header = dataclasses.replace(header, exif=exif)
    body, fmt = encode.encode(img, plan.save, header, settings, painted)
    return Rendered(body, encode.content_type(fmt), fmt, img.size[0], img.size[1])


def resolve_auto_rotation(ops: list[Operation | Orient], header: decode.SourceHeader) -> list[Operation | Orient]:
    """rotate=auto becomes the EXIF orientation's degrees (0 for non-JPEG sources)."""
    return [dataclasses.replace(op, degrees=header.orientation)
            if isinstance(op, Rotate) and op.degrees is None else op for op in ops]


def operation_sizes(ops: list[Operation], size: Size, max_output_pixels: int) -> list[Size]:
    """Each operation's input size, from the header alone; checks bounds and output limits."""
    sizes = []
    for op in ops:
        sizes.append(size)
        size = KINDS[type(op)].output_size(op, size)
        decode.check_pixels("Output image", size, max_output_pixels)
    return sizes


def draft_size(ops: list[Operation], size: Size) -> Size | None:
    """The decode size the first resize needs, if only operations that pass come before it."""
    turned = False
    for op in ops:
        shrink = KINDS[type(op)].shrink(op, size)
        if shrink.needed:
            need = shrink.needed
            return (need[1], need[0]) if turned else need
        if not shrink.passes:
            return None
        if shrink.turns:
            turned, size = not turned, (size[1], size[0])
    return None
