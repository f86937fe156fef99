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


def flatten(img: Image.Image, background: Color) -> Image.Image:
    """Composite onto the background's RGB: the result is opaque RGB."""
    rgba = to_rgb(img, alpha=True)
    canvas = Image.new("RGB", rgba.size, background[:3])
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas
