"""Colour-mode conversions shared by the operations and the encoder."""

from __future__ import annotations

from PIL import Image

from ..plan import Color


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


# Formats whose alpha channel Pilbox keeps (GIF has a transparent colour, not alpha).
# AVIF, which Pilbox does not write, has an alpha channel like WebP.
ALPHA_FORMATS = ("PNG", "WEBP", "AVIF")


def blend(img: Image.Image, background: Color, size: tuple[int, int] | None = None,
          offset: tuple[int, int] = (0, 0)) -> Image.Image:
    """`img` pasted onto an RGBA canvas of `background` with its alpha as the mask.

    Every channel, alpha included, is mixed by the image's alpha m: out = img*m + bg*(1-m).
    That is how Pilbox pads a fill and flattens for formats without alpha.
    """
    rgba = to_rgb(img, alpha=True)
    canvas = Image.new("RGBA", size or rgba.size, background)
    canvas.paste(rgba, offset, rgba.getchannel("A"))
    return canvas


def over(img: Image.Image, background: Color) -> Image.Image:
    """`img` composited over a canvas of `background` (Porter-Duff "over"): RGBA."""
    return Image.alpha_composite(Image.new("RGBA", img.size, background), to_rgb(img, alpha=True))


def composite(img: Image.Image, background: Color, fmt: str) -> Image.Image:
    """Pilbox's save step: an image with transparency goes onto `background`, whatever `fmt`.

    Formats with alpha get `img` over the background; the others (JPEG, GIF, TIFF) get
    `blend`, whose alpha the encoder then drops (JPEG) or keeps (GIF: alpha 0 only; TIFF).
    Pilbox does this to RGBA images only; we do it to every image with transparency,
    except that a palette, LA or transparent-colour image going to a format with alpha
    is left as it is when the background is fully transparent (nothing would show).
    """
    if not img.has_transparency_data:
        return img
    if fmt in ALPHA_FORMATS:
        if img.mode != "RGBA" and background[3] == 0:
            return img
        return over(img, background)
    return blend(img, background)
