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
from io import BytesIO

from PIL import Image

from .. import errors
from ..plan import Operation, Plan, Resize, Rotate, Save
from . import colour, decode, encode, svg
from .operations import KINDS, ORIENTATIONS, Orient, Size, effective_mode, needed_size, paints_background
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
    return process_many(data, [plan], settings)[0]


def process_many(data: bytes, plans: list[Plan], settings: ImagingSettings,
                 derive: bool = False) -> list[Rendered]:
    """Several plans from one source, decoded once (at the largest size any of them needs).

    `derive`: a plan that only resizes starts from the pixels of a larger one that showed the
    whole image (the upload store's variants), not from the decode. Output sizes are the
    same (geometry comes from the source's size); the pixels are resampled from fewer.
    """
    with warnings.catch_warnings():
        # Pillow's warnings (corrupt EXIF and the like) are noise in a worker's log,
        # except the decompression-bomb one, which it gives below twice its limit.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _process_many(data, plans, settings, derive)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise errors.image_too_large(str(e)) from None


@dataclass(frozen=True, slots=True)
class _Steps:
    """What one plan does to the source, worked out from the header alone."""
    ops: list
    sizes: list[Size]
    header: decode.SourceHeader
    oriented: bool  # auto_orient turned it upright first


def _steps(img: Image.Image, plan: Plan, header: decode.SourceHeader, settings: ImagingSettings) -> _Steps:
    ops: list[Operation | Orient] = list(plan.operations)
    tag = decode.orientation_tag(img) if plan.auto_orient else 0
    oriented = tag in ORIENTATIONS
    if oriented:  # upright first; a rotate=auto after it finds nothing left to turn
        ops.insert(0, Orient(tag))
        header = dataclasses.replace(header, orientation=0)
    ops = resolve_auto_rotation(ops, header)
    return _Steps(ops, operation_sizes(ops, header.size, settings.max_output_pixels), header, oriented)


def _process_many(data: bytes, plans: list[Plan], settings: ImagingSettings, derive: bool) -> list[Rendered]:
    img = decode.open_image(data, settings.input_formats)
    if all(plan.is_noop for plan in plans):  # identified, never decoded
        fmt = decode.served_format(img.format)
        return [Rendered(data, encode.content_type(fmt), fmt, *img.size) for _ in plans]

    # Every frame counts against the cap, though only the first is ever decoded.
    decode.check_pixels("Source image", img.size, settings.max_source_pixels, decode.frame_count(img))
    header = decode.read_header(img)
    source_format = decode.served_format(img.format)
    steps = [None if plan.is_noop else _steps(img, plan, header, settings) for plan in plans]
    drafts = [draft_size(s.ops, header.size) for s in steps if s is not None]
    # One decode serves every plan: at the largest size any of them needs.
    draft = None if None in drafts else (max(d[0] for d in drafts), max(d[1] for d in drafts))
    img = decode.load(img, draft)
    info = dict(img.info)
    rendered: list[Rendered | None] = [None] * len(plans)
    wholes: list[tuple[Image.Image, _Steps]] = []  # whole-image results, largest first (derive)
    order = range(len(plans))
    if derive:  # largest output first, so the smaller ones can start from it
        order = sorted(order, key=lambda i: 0 if steps[i] is None else -_area(_output(steps[i], header.size)))
    for i in order:
        plan, step = plans[i], steps[i]
        if step is None:
            rendered[i] = Rendered(data, encode.content_type(source_format), source_format, *header.size)
            continue
        img.info = dict(info)  # the encoder rewrites an unchanged image's info
        start = _larger_whole(wholes, step) if derive else None
        rendered[i], pixels = _render(img if start is None else start, plan, step, settings, start is not None)
        if derive and _shows_whole(step):
            wholes.append((pixels, step))
    return rendered


def _area(size: Size) -> int:
    return size[0] * size[1]


def _only_resizes(step: _Steps) -> Resize | None:
    """The plan's one Resize, when that (after the EXIF orientation) is all it does."""
    ops = step.ops[1:] if step.oriented else step.ops
    return ops[0] if len(ops) == 1 and isinstance(ops[0], Resize) else None


def _shows_whole(step: _Steps) -> bool:
    """Its result is the whole (upright) image, scaled: a fit or a scale, not a crop or a fill."""
    op = _only_resizes(step)
    return op is not None and effective_mode(op, step.sizes[-1]) in ("clip", "scale")


def _larger_whole(wholes: list[tuple[Image.Image, _Steps]], step: _Steps) -> Image.Image | None:
    """Pixels of the smallest whole-image result with the detail `step`'s resize needs."""
    op = _only_resizes(step)
    if op is None:
        return None
    needed = needed_size(op, step.sizes[-1])
    for pixels, whole in reversed(wholes):
        if whole.oriented == step.oriented and pixels.size[0] >= needed[0] and pixels.size[1] >= needed[1]:
            return pixels
    return None


def _render(img: Image.Image, plan: Plan, step: _Steps, settings: ImagingSettings,
            derived: bool = False) -> tuple[Rendered, Image.Image]:
    """The plan's result, and its pixels before colour conversion and encoding. `derived`:
    `img` is a smaller whole-image result, already upright: only the resize is left to do."""
    header = step.header
    ops, sizes = step.ops, step.sizes
    if derived and step.oriented:
        ops, sizes = ops[1:], sizes[1:]
    drafted = derived or img.size != header.size
    painted = False  # a fill put the image on its background (Pilbox then skips compositing)
    for op, size in zip(ops, sizes):
        painted = painted or paints_background(op, size)
        # Until the first resize, a drafted image is smaller than its logical size.
        img = KINDS[type(op)].apply(img, op, size if drafted else None)
        drafted = drafted and not isinstance(op, Resize)
    pixels = img

    if header.exif and plan.save.preserve_exif:
        exif: bytes | None = header.exif
        if step.oriented or (header.orientation and any(
                isinstance(op, Rotate) and op.degrees is None for op in plan.operations)):
            # The pixels are upright now; kept EXIF must not ask viewers to turn them again.
            exif = decode.reset_orientation(exif)
        # The thumbnail shows the source before any operation; GPS is where it was taken.
        exif = decode.strip_exif(exif, gps=settings.strip_gps)
        header = dataclasses.replace(header, exif=exif)
    if plan.save.srgb and header.icc_profile:
        img = colour.to_srgb(img, header.icc_profile)
        header = dataclasses.replace(header, icc_profile=None)
    body, fmt = encode.encode(img, plan.save, header, settings, painted)
    return Rendered(body, encode.content_type(fmt), fmt, img.size[0], img.size[1]), pixels


def predict(data: bytes, plans: list[Plan], settings: ImagingSettings) -> list[tuple[int, int, str]]:
    """Each plan's output size and format, from the header alone (nothing decoded)."""
    img = decode.open_image(data, settings.input_formats)
    decode.check_pixels("Source image", img.size, settings.max_source_pixels, decode.frame_count(img))
    header = decode.read_header(img)
    found = []
    for plan in plans:
        size = img.size if plan.is_noop else _output(_steps(img, plan, header, settings), header.size)
        fmt = (decode.served_format(img.format) if plan.is_noop
               else encode.output_format(plan.save, header.format, img.has_transparency_data))
        found.append((size[0], size[1], fmt))
    return found


def _output(step: _Steps, size: Size) -> Size:
    return KINDS[type(step.ops[-1])].output_size(step.ops[-1], step.sizes[-1]) if step.ops else size


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


PLACEHOLDER_COLOUR = (224, 224, 224)


def placeholder(_data: bytes, width: int, height: int, fmt: str, settings: ImagingSettings) -> Rendered:
    """A plain light-grey image of the result's size and format, uploaded before the
    result itself (imgserve's placeholder); the real result overwrites it."""
    decode.check_pixels("Placeholder", (width, height), settings.max_output_pixels)
    img = Image.new("RGB", (width, height), PLACEHOLDER_COLOUR)
    header = decode.SourceHeader(format=fmt, size=(width, height), mode="RGB")
    body, fmt = encode.encode(img, Save(fmt), header, settings, False)
    return Rendered(body, encode.content_type(fmt), fmt, width, height)


def rasterize_many(data: bytes, sizes: list[tuple[int | None, int | None]], plans: list[Plan],
                   settings: ImagingSettings) -> list[Rendered]:
    """An SVG drawn at each (width, height), then saved as each plan says (PNG unless fmt)."""
    drawn_settings = dataclasses.replace(settings, input_formats=("PNG",))
    rendered = []
    for (width, height), plan in zip(sizes, plans):
        out = BytesIO()
        svg.rasterize(data, width, height, settings).save(out, "PNG", compress_level=1)
        rendered.append(process(out.getvalue(), plan, drawn_settings))
    return rendered


def predict_raster(data: bytes, sizes: list[tuple[int | None, int | None]], plans: list[Plan],
                   settings: ImagingSettings) -> list[tuple[int, int, str]]:
    """rasterize_many's output sizes and formats, from the checked SVG alone."""
    own = svg.svg_size(data, settings)
    return [(*svg.target_size(own, w, h), plan.save.format or "PNG") for (w, h), plan in zip(sizes, plans)]
