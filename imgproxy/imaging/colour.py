"""Colour profiles: pixels in another colour space turned into sRGB, the web's default.

The upload store's variants go out untagged in sRGB, whatever the camera wrote,
so every browser shows the same colours and no profile rides along. The query
API keeps the source's profile instead (Pilbox does).
"""

from __future__ import annotations

from io import BytesIO

from PIL import Image, ImageCms

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def to_srgb(img: Image.Image, icc_profile: bytes) -> Image.Image:
    """`img` (described by `icc_profile`) in sRGB; unchanged when the profile cannot be read
    or does not fit the pixels (a grey profile on RGB pixels, say)."""
    try:
        profile = ImageCms.ImageCmsProfile(BytesIO(icc_profile))
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return img
    space = profile.profile.xcolor_space.strip()
    # Grey stays grey: untagged, it is read with sRGB's tone curve, close to any grey profile's.
    if img.mode not in {"RGB": ("RGB", "RGBA", "P", "PA"), "CMYK": ("CMYK",)}.get(space, ()):
        return img
    alpha = img.mode in ("RGBA", "PA") or (img.mode == "P" and img.has_transparency_data)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA" if alpha else "RGB")
    out_mode = "RGBA" if alpha else "RGB"
    try:
        return ImageCms.profileToProfile(img, profile, _SRGB, outputMode=out_mode)
    except (OSError, ValueError, ImageCms.PyCMSError):
        return img
