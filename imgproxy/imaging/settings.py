"""The part of the server's Settings that image code reads: limits, default qualities, EXIF.

Built from Settings by render.py and sent to a worker with each task, so image code
never reads configuration itself and holds no defaults of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ImagingSettings:
    max_source_pixels: int
    max_output_pixels: int
    input_formats: tuple[str, ...]
    qualities: tuple[tuple[str, int], ...]  # default quality per output format; JPEG's for the rest
    strip_gps: bool  # kept EXIF (exif=1) loses its GPS position data

    def quality_for(self, quality: int | str | None, fmt: str) -> int | str:
        """The quality asked for, else the format's default."""
        if quality is not None:
            return quality
        defaults = dict(self.qualities)
        return defaults.get(fmt, defaults["JPEG"])
