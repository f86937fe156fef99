"""The common Pillow upload recipe, written here from its published description, to compare
the store's variants with (store_upload.py). Not imgproxy's code, and not meant to be good.

For each variant, on its own: open the original with Pillow, turn it upright
(`ImageOps.exif_transpose`), strip the metadata by copying the pixels into a new image
(`putdata(list(getdata()))`), `thumbnail((w, h))` (which never enlarges), and save it as
WebP or JPEG at the variant's quality (no format: the original's).
"""

from __future__ import annotations

from io import BytesIO

from PIL import Image, ImageOps

# (name, (width, height), format or None for the original's, quality): the store's defaults
VARIANTS = [("thumbnail", (150, 150), "WEBP", 80), ("medium", (800, 800), "WEBP", 85),
            ("large", (1920, 1920), None, 90)]


def variants_from_settings(store_variants) -> list[tuple[str, tuple[int, int], str | None, int]]:
    """The recipe's variant list from imgproxy's `store_variants` ((name, "WxH", fmt, q), ...)."""
    found = []
    for name, size, fmt, quality in store_variants:
        w, h = (int(x) for x in size.rstrip("!").split("x"))
        found.append((name, (w, h), fmt, quality if quality is not None else 85))
    return found


def make_variant(data: bytes, size: tuple[int, int], fmt: str | None, quality: int) -> tuple[bytes, str, int, int]:
    with Image.open(BytesIO(data)) as original:
        fmt = fmt or original.format
        upright = ImageOps.exif_transpose(original)
        clean = Image.new(upright.mode, upright.size)
        clean.putdata(list(upright.getdata()))  # the pixels only: no EXIF, ICC or comments
    clean.thumbnail(size)
    out = BytesIO()
    clean.save(out, fmt, quality=quality)
    return out.getvalue(), fmt, clean.width, clean.height


def make_variants(data: bytes, variants=VARIANTS) -> dict[str, tuple[bytes, str, int, int]]:
    return {name: make_variant(data, size, fmt, quality) for name, size, fmt, quality in variants}
