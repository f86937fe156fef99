"""The render service: load -> pool -> Rendered. Every front-end asks for images here.

The image handler, /info, the CLI (without a pool), and the job runner and upload
store to come: one code path for every way of asking for an image. Settings reach
image code only as ImagingSettings, made here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .imaging import info, pipeline
from .imaging.pipeline import Rendered
from .imaging.settings import ImagingSettings
from .plan import Plan
from .sources import Loader, Source, Validators

if TYPE_CHECKING:  # pragma: no cover
    from .config import Settings
    from .metrics import Metrics
    from .pool import Pool

# The JPEG quality when the default is "keep" and there are no source tables to keep.
KEEP_FALLBACK_QUALITY = 90


def imaging_settings(settings: Settings) -> ImagingSettings:
    jpeg = settings.quality if isinstance(settings.quality, int) else KEEP_FALLBACK_QUALITY
    return ImagingSettings(
        max_source_pixels=settings.max_source_pixels,
        max_output_pixels=settings.max_output_pixels,
        input_formats=settings.input_formats,
        qualities=(("JPEG", jpeg), ("WEBP", settings.quality_webp), ("AVIF", settings.quality_avif)),
        strip_gps=settings.strip_gps,
    )


class RenderService:
    def __init__(self, settings: Settings, loader: Loader, pool: Pool, metrics: Metrics):
        self.imaging = imaging_settings(settings)
        self.loader = loader
        self.pool = pool
        self.metrics = metrics

    async def load(self, ref: str, validators: Validators | None = None) -> Source | None:
        """The source (None: unchanged since `validators`); refused at once when the pool is full."""
        self.pool.check_capacity()
        started = time.monotonic()
        source = await self.loader.load(ref, validators)
        self.metrics.observe("fetch", time.monotonic() - started)
        if source is not None:
            self.metrics.fetched_bytes.inc(len(source.body))
        return source

    async def render(self, source: Source, plan: Plan) -> Rendered:
        return await self.pool.run(pipeline.process, source.body, plan, self.imaging)

    async def render_many(self, source: Source, plans: list[Plan], derive: bool = False) -> list[Rendered]:
        """Several outputs from one decode; `derive`: smaller ones from larger ones' pixels."""
        return await self.pool.run(pipeline.process_many, source.body, plans, self.imaging, derive)

    async def predict(self, source: Source, plans: list[Plan]) -> list[tuple[int, int, str]]:
        """Each plan's output size and format, from the source's header alone."""
        return await self.pool.run(pipeline.predict, source.body, plans, self.imaging)

    async def rasterize_many(self, source: Source, sizes: list, plans: list[Plan]) -> list[Rendered]:
        """SVG sources (jobs' rasterize): drawn at each size, saved as each plan says."""
        return await self.pool.run(pipeline.rasterize_many, source.body, sizes, plans, self.imaging)

    async def predict_raster(self, source: Source, sizes: list, plans: list[Plan]) -> list[tuple[int, int, str]]:
        return await self.pool.run(pipeline.predict_raster, source.body, sizes, plans, self.imaging)

    async def placeholder(self, width: int, height: int, fmt: str) -> Rendered:
        return await self.pool.run(pipeline.placeholder, b"", width, height, fmt, self.imaging)

    async def describe(self, source: Source) -> dict:
        return await self.pool.run(info.describe, source.body, self.imaging)
