"""The store's steps: take an upload, make its variants, serve what is stored (making a
size or a query-API rendering on its first request), list, and delete.

Order keeps every state safe to serve: the original is stored before its record,
the record before any variant; a variant or size is written whole (BlobStore) and
only found through a record that still exists. Every derived image is EXIF-oriented,
in sRGB and without EXIF, XMP or comments; the original stays byte for byte.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import errors
from ..delivery.coalesce import Coalescer
from ..delivery.conditional import etag_matches
from ..errors import ProxyError
from ..imaging import encode, svg
from ..jobs.model import JobRecord, JobSpec
from ..jobs.runner import is_transient
from ..options.build import Options, build_plan
from ..options.path import size_options
from ..plan import AUTO, Plan, Save
from ..render import RenderService
from ..sources import Source
from ..sources.store import SCHEME as STORE_SCHEME
from ..storage import BlobStore
from .ids import new_id
from .metadata import Records
from .records import FAILED, PENDING, READY, ImageRecord
from .sizes import scaled_size

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings
    from ..jobs.queue import JobQueue

log = logging.getLogger("imgproxy.store")

TASK = "store-variants"  # the job queue's operation for variants made in the background
MAX_TITLE = 200


@dataclass(frozen=True, slots=True)
class Stored:
    """An image as served: bytes, type and a strong validator (a key's bytes never change)."""
    body: bytes
    content_type: str
    etag: str


def folder(image_id: str) -> str:
    """Every blob of an image lives under this key prefix: fanned out by its first two characters."""
    return f"{image_id[:2]}/{image_id}"


def blob_key(image_id: str, name: str, fmt: str) -> str:
    return f"{folder(image_id)}/{name}.{encode.extension(fmt)}"  # SVG: .svg


def etag_for(key: str) -> str:
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


def clean_title(title: str | None) -> str | None:
    if title is None:
        return None
    title = " ".join("".join(c if c.isprintable() else " " for c in title).split())[:MAX_TITLE]
    return title or None


class StoreService:
    def __init__(self, settings: Settings, render: RenderService, blobs: BlobStore, records: Records,
                 queue: JobQueue | None = None, wake=None):
        self.settings = settings
        self.render = render
        self.blobs = blobs
        self.records = records
        self.queue = queue
        self.wake = wake or (lambda: None)
        self._coalescer = Coalescer()

    # --- plans -----------------------------------------------------------------------------
    def derived(self, plan: Plan, fmt: str | None) -> Plan:
        """A plan for a stored image: upright, sRGB, no metadata, in `fmt` (None: the original's)."""
        save = dataclasses.replace(plan.save, format=fmt, preserve_exif=False, srgb=True)
        return dataclasses.replace(plan, save=save, auto_orient=True)

    def variant_plan(self, name: str) -> Plan:
        size, fmt, quality = self.variant(name)
        plan = build_plan({**size_options(size), "fmt": ""}, self.settings)
        plan = self.derived(plan, fmt)
        return dataclasses.replace(plan, save=dataclasses.replace(plan.save, quality=quality))

    def variant(self, name: str) -> tuple[str, str | None, int | None]:
        for variant, size, fmt, quality in self.settings.store_variants:
            if variant == name:
                return size, fmt, quality
        raise errors.not_found(f"No variant named {name[:64]}")

    def size_plan(self, size: str) -> Plan:
        plan = build_plan(size_options(size), self.settings)
        return self.derived(plan, plan.save.format)

    def query_plan(self, options: Options) -> Plan:
        """The query API's plan, made private like every derived image (exif=1 included)."""
        plan = build_plan(options, self.settings)
        return self.derived(plan, plan.save.format)

    def query_name(self, plan: Plan) -> str:
        """A query-API rendering's name among the image's blobs: the plan's canonical form, hashed."""
        return hashlib.sha256(plan.canonical().encode()).hexdigest()[:32]

    # --- upload ------------------------------------------------------------------------------
    async def upload(self, body: bytes, title: str | None, background: bool) -> ImageRecord:
        """Check, store the original, record it, then make the variants now or in the background."""
        if not body:
            raise errors.bad_request(errors.Code.STORE, "No image in the upload")
        names = [v[0] for v in self.settings.store_variants]
        (width, height, fmt), *predicted = await self._predict(body, names)
        record = ImageRecord(new_id(), width, height, fmt, len(body), time.time(), clean_title(title),
                             state=PENDING if names else READY)
        record.variants = {n: {"width": w, "height": h, "format": f, "bytes": None}
                           for n, (w, h, f) in zip(names, predicted)}
        if not await self.blobs.put_if_absent(blob_key(record.id, "original", fmt), body):
            raise errors.internal("ID collision")  # 131 random bits: never, in practice
        await self.records.add(record)
        if not names:
            return record
        if background:
            await self.enqueue(record.id)
            return record
        # Queued first, due once a lease would have lapsed: if this server dies before the
        # variants are made, another run makes them; if they are made, that run finds them.
        await self.enqueue(record.id, due=time.time() + self.settings.job_lease_seconds)
        try:
            await self.make_variants(record, body)
        except ProxyError as e:
            if is_transient(e):  # the original is safe: the queued job tries again
                log.warning("image %s: variants failed (%s); the queue tries again", record.id, e)
            else:
                await self._fail(record, e)
        return record

    async def _predict(self, body: bytes, names: list[str]) -> list[tuple[int, int, str]]:
        """The image's displayed size and format, then each variant's, from the header alone:
        the format sniffed (not the client's word), pixel caps checked before any decoding.
        An SVG passes only the checks that make it safe to draw (imaging/svg.py)."""
        plans = [Plan((), Save(), auto_orient=True)] + [self.variant_plan(n) for n in names]
        try:
            return await self.render.predict(Source(body), plans)
        except ProxyError as e:
            if e.code != errors.Code.IMAGE_FORMAT or not svg.looks_like_svg(body):
                raise
        (width, height, _), = await self.render.predict_raster(Source(body), [(None, None)], plans[:1])
        found = [(width, height, "SVG")]
        for name in names:  # drawn at its own size, then resized as any image: never enlarged
            size, fmt, _ = self.variant(name)
            found.append((*scaled_size(width, height, size), fmt or "PNG"))
        return found

    async def _render_many(self, record: ImageRecord, original: bytes, plans: list[Plan]):
        if record.format == "SVG":  # drawn at its own size, then each plan as for any image
            return await self.render.rasterize_many(Source(original), [(None, None)] * len(plans), plans)
        # Largest first, the smaller variants resampled from its pixels rather than the decode.
        return await self.render.render_many(Source(original), plans, derive=True)

    async def enqueue(self, image_id: str, due: float | None = None) -> None:
        if self.queue is None:  # pragma: no cover - services always give the store a queue
            raise errors.internal("No job queue for background variants")
        await self.queue.add(JobRecord(f"{TASK}-{image_id}", JobSpec(TASK, image_id, ()), created=time.time()), due)
        self.wake()

    async def make_variants(self, record: ImageRecord, original: bytes | None = None) -> None:
        """Every variant from one decode (largest first: _render_many); then the record says ready."""
        if original is None:
            original = await self._original(record)
        names = list(record.variants)
        rendered = await self._render_many(record, original, [self.variant_plan(n) for n in names])
        for name, image in zip(names, rendered):
            await self.blobs.put(blob_key(record.id, name, image.format), image.body)
            record.variants[name] = {"width": image.width, "height": image.height, "format": image.format,
                                     "bytes": len(image.body)}
        record.state, record.error = READY, None
        if not await self.records.update(record):
            await self._remove_blobs(record.id)  # deleted while its variants were made

    async def run_task(self, job: JobRecord) -> None:
        """The job runner's entry for TASK: a transient failure retries, a last one marks it failed."""
        record = await self.records.get(job.spec.source)
        if record is None or record.state != PENDING:  # deleted, made, or failed for good already
            return
        try:
            await self.make_variants(record)
        except ProxyError as e:
            if not is_transient(e) or job.attempts >= self.settings.job_max_attempts:
                await self._fail(record, e)
            raise

    async def _fail(self, record: ImageRecord, error: ProxyError) -> None:
        log.warning("image %s: variants failed: %s", record.id, error)
        record.state, record.error = FAILED, error.reason
        await self.records.update(record)

    # --- reads -------------------------------------------------------------------------------
    async def record(self, image_id: str) -> ImageRecord:
        record = await self.records.get(image_id)
        if record is None:
            raise errors.not_found("No such image")
        return record

    async def original(self, record: ImageRecord) -> Stored:
        """The bytes as uploaded, read as any stored image is (no worker involved)."""
        key = blob_key(record.id, "original", record.format)
        body = await self.blobs.get(key)
        if body is None:
            raise errors.not_found("No such image")
        return Stored(body, content_type(record.format), etag_for(key))

    async def image(self, record: ImageRecord, name: str, plan: Plan, client_etag: str | None = None) -> Stored | str:
        """A variant, size or rendering stored under `name`: from the store, else made once and
        stored. The ETag alone (a str) when the client's If-None-Match names it and it is stored."""
        fmt = plan.save.format or ("PNG" if record.format == "SVG" else record.format)
        if fmt == AUTO:  # negotiation found no format the client takes: one every browser shows
            fmt = "PNG" if record.format in ("PNG", "GIF", "WEBP", "AVIF") else "JPEG"
            plan = dataclasses.replace(plan, save=dataclasses.replace(plan.save, format=fmt))
        key = blob_key(record.id, name, fmt)
        etag = etag_for(key)
        if etag_matches(client_etag, etag) and await self.blobs.head(key) is not None:
            return etag
        body = await self.blobs.get(key)
        if body is None:
            body = await self._coalescer.run(key, lambda: self._make(record, key, plan))
        return Stored(body, content_type(fmt), etag)

    async def _make(self, record: ImageRecord, key: str, plan: Plan) -> bytes:
        rendered, = await self._render_many(record, await self._original(record), [plan])
        await self.blobs.put(key, rendered.body)
        if await self.records.get(record.id) is None:  # deleted meanwhile: leave nothing behind
            await self._remove_blobs(record.id)
            raise errors.not_found("No such image")
        return rendered.body

    async def _original(self, record: ImageRecord) -> bytes:
        """Through the render service's loader (sources/store.py): counted as a fetch, kept in the
        cache of originals where one is set, refused at once when the pool is full."""
        source = await self.render.load(STORE_SCHEME + blob_key(record.id, "original", record.format))
        return source.body

    # --- delete and browse ------------------------------------------------------------------
    async def delete(self, image_id: str) -> None:
        """The record first, so every URL of the ID answers 404 at once; then every blob."""
        if not await self.records.delete(image_id):
            raise errors.not_found("No such image")
        await self._remove_blobs(image_id)

    async def _remove_blobs(self, image_id: str) -> None:
        for key in await self.blobs.list(folder(image_id) + "/"):
            await self.blobs.delete(key)


def content_type(fmt: str) -> str:
    return "image/svg+xml" if fmt == "SVG" else encode.content_type(fmt)
