"""describe(data, settings) -> dict: what /info reports, read from the header only."""

from __future__ import annotations

from . import decode
from .settings import ImagingSettings


def describe(data: bytes, settings: ImagingSettings) -> dict:
    img = decode.open_image(data, settings.input_formats)
    frames = decode.frame_count(img)
    decode.check_pixels("Source", img.size, settings.max_source_pixels, frames)
    orientation = 0
    try:
        orientation = int(img.getexif().get(0x0112) or 0)
    except Exception:  # broken EXIF: reported as absent, like rotate=auto treats it
        orientation = 0
    return {
        "format": decode.served_format(img.format or ""),
        "width": img.size[0],
        "height": img.size[1],
        "mode": img.mode,
        "frames": frames,
        "alpha": img.has_transparency_data,
        "exif_orientation": orientation,
        "icc_profile": bool(img.info.get("icc_profile")),
        "bytes": len(data),
    }
