"""Save: pick the format, convert the mode so it can be written, apply the save options.

First, as Pilbox does, an image with transparency is composited onto the background
(modes.composite), unless a fill already painted it onto the background.

Mode choices, per output format:
- JPEG: L, RGB and CMYK are written as they are (a CMYK source stays CMYK: converting
  without its colour profile would shift the colours); the composited RGBA loses its
  alpha; 16/32-bit greyscale -> L.
- PNG: keeps 1, L, LA, P (with its transparent index), RGB, RGBA and 16-bit greyscale;
  CMYK -> RGB, others -> L/RGB/RGBA.
- WEBP: RGB, or RGBA when there is any transparency; AVIF (when Pillow has it) also L.
- GIF: P (quantised; only alpha 0 becomes the transparent index, the rest is opaque) or L.
- TIFF: nearly every mode as it is; a palette's transparent index becomes alpha.

Quality: q when given, else the output format's own default (ImagingSettings.quality_for);
q=keep reuses a JPEG source's quantisation tables for JPEG output, and means the
format's default otherwise.
"""

from __future__ import annotations

from io import BytesIO

from PIL import Image

from .. import errors
from ..plan import AUTO, Save
from .decode import JPEG_FORMATS, SourceHeader, served_format
from .modes import composite, eight_bit, to_rgb
from .settings import ImagingSettings

CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
}
# File extensions of the formats written: job destination names ({$ext}) and the store's files.
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "TIFF": "tiff", "AVIF": "avif"}


def extension(fmt: str) -> str:
    return EXTENSIONS.get(fmt, fmt.lower())


# Modes each format writes faithfully (Pillow would convert or refuse the others).
WRITABLE_MODES = {
    "JPEG": ("1", "L", "RGB", "CMYK"),
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I;16B"),
    "WEBP": ("RGB", "RGBA"),
    "AVIF": ("L", "RGB", "RGBA"),
    "TIFF": ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I;16B", "I", "F"),
}
_KEEPS_TRANSPARENT_COLOUR = ("PNG",)
_UNIVERSAL = ("JPEG", "PNG", "GIF")  # what fmt=auto falls back to: every browser shows them
AVIF_SPEED = 9


def content_type(fmt: str) -> str:
    return CONTENT_TYPES.get(fmt) or Image.MIME.get(fmt) or "application/octet-stream"


def output_format(save: Save, source_format: str, has_alpha: bool = False) -> str:
    """The requested format, else the source's; 415 if Pillow cannot write it.

    A format still AUTO here is fmt=auto for a client that takes no modern format
    (negotiation picks AVIF or WebP before the plan reaches a worker): a format every
    browser shows, the source's if it is JPEG, PNG or GIF, else JPEG; and PNG rather
    than JPEG when the image has transparency to keep.
    """
    Image.init()
    fmt = save.format
    if fmt == AUTO:
        fmt = served_format(source_format)
        if fmt not in _UNIVERSAL:
            fmt = "JPEG"
        if fmt == "JPEG" and has_alpha:
            fmt = "PNG"
    fmt = fmt or served_format(source_format)
    if fmt not in Image.SAVE:
        raise errors.cannot_save(f"Cannot save images as {fmt or 'unknown format'}")
    return fmt


def prepare(img: Image.Image, fmt: str) -> Image.Image:
    """`img` (composited already) in a mode that `fmt` can hold; see the module docstring."""
    if fmt == "GIF":
        return _paletted(img)
    if fmt == "JPEG" and img.has_transparency_data:
        return to_rgb(img, alpha=False)  # the colours as composited, alpha dropped
    modes = WRITABLE_MODES.get(fmt)
    if modes is None:  # a source format we only pass through: let Pillow decide
        return img

    def fits(im: Image.Image) -> bool:
        return im.mode in modes and ("transparency" not in im.info
                                     or fmt in _KEEPS_TRANSPARENT_COLOUR)

    if fits(img):
        return img
    img = eight_bit(img)
    if fits(img):
        return img
    return to_rgb(img, alpha=img.has_transparency_data)


def _paletted(img: Image.Image) -> Image.Image:
    """At most 256 colours. GIF has one transparent index: alpha 0 takes it, anything
    else is opaque (Pilbox's composited RGBA as Pillow's GIF writer keeps it since 9.0;
    Pillow 5.2, which Pilbox pinned, wrote no transparency at all)."""
    img = eight_bit(img)
    single_index = isinstance(img.info.get("transparency", 0), int)  # not a PNG alpha table
    if img.mode in ("L", "1") or (img.mode == "P" and single_index):
        return img
    if not img.has_transparency_data:
        return to_rgb(img, alpha=False).quantize(256)
    rgba = to_rgb(img, alpha=True)
    paletted = rgba.convert("RGB").quantize(255)  # index 255 stays free for transparency
    paletted.paste(255, mask=rgba.getchannel("A").point(lambda a: 255 if a == 0 else 0))
    paletted.info["transparency"] = 255
    return paletted


def _colour_family(mode: str) -> str:
    if mode == "CMYK":
        return "CMYK"
    if mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16"):
        return "L"
    return "RGB"


def save_options(img: Image.Image, fmt: str, save: Save, source: SourceHeader,
                 settings: ImagingSettings) -> dict:
    """Pillow save keyword arguments for the options the plan asks for."""
    options: dict = {}
    jpeg_source = source.format in JPEG_FORMATS
    quality = settings.quality_for(save.quality, fmt)
    if quality == "keep":  # only a JPEG source's tables can be kept; else the format's default
        quality = settings.quality_for(None, fmt)
    if fmt == "JPEG":
        if save.quality == "keep" and jpeg_source and source.qtables:
            options["qtables"] = source.qtables  # the source's own tables: same quality
        else:
            options["quality"] = quality
        if jpeg_source and source.subsampling >= 0 and img.mode == "RGB":
            options["subsampling"] = source.subsampling
        options["progressive"] = save.progressive
        options["optimize"] = save.optimize
    elif fmt in ("WEBP", "AVIF"):
        options["quality"] = quality
        if fmt == "AVIF":
            # Speed 9 encodes 6-8x faster than Pillow's default 6; at q85 it still
            # matches JPEG q90's SSIM at 0.72-0.78x the bytes (bench/QUALITY.md).
            options["speed"] = AVIF_SPEED
    elif fmt == "PNG":
        options["optimize"] = save.optimize
    if save.preserve_exif and source.exif and fmt in ("JPEG", "PNG", "WEBP", "AVIF"):
        options["exif"] = source.exif
    # A colour profile only describes pixels still in its colour space.
    if (source.icc_profile and fmt in ("JPEG", "PNG", "WEBP", "TIFF", "AVIF")
            and _colour_family(img.mode) == _colour_family(source.mode)):
        options["icc_profile"] = source.icc_profile
    return options


def encode(img: Image.Image, save: Save, source: SourceHeader,
           settings: ImagingSettings, painted: bool = False) -> tuple[bytes, str]:
    """Write `img` in the plan's format; returns (body, Pillow format name).

    `painted`: a fill put the image on the background already; as in Pilbox it is not
    composited a second time.
    """
    fmt = output_format(save, source.format, img.has_transparency_data)
    if not painted:
        img = composite(img, save.background, fmt)
    img = prepare(img, fmt)
    options = save_options(img, fmt, save, source, settings)
    # Only what `options` says goes out: no metadata rides along from the source's info.
    transparency = img.info.get("transparency")
    img.info = {} if transparency is None else {"transparency": transparency}
    out = BytesIO()
    try:
        img.save(out, fmt, **options)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise errors.cannot_save(f"Cannot save this image as {fmt}: {e}") from None
    return out.getvalue(), fmt
