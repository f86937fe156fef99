"""Results: an image handler's answer by result key, computed at most once.

Steps, cheapest first: the result cache; revalidation with the origin when the
client holds this result's ETag; else load and render, shared by identical
requests in flight, and cached.
"""

from __future__ import annotations

import hashlib
import time

from ..plan import Plan
from ..render import RenderService
from ..sources import Source
from .cache import Entry, ResultCache
from .coalesce import Coalescer
from .conditional import NotModified, OriginValidators
from .keys import make_etag


class Results:
    def __init__(self, render: RenderService, cache: ResultCache | None):
        self.render = render
        self.cache = cache
        self.validators = OriginValidators()
        self._coalescer = Coalescer()

    async def get(self, key: str, ref: str, plan: Plan, client_etag: str | None) -> Entry | NotModified:
        return (await self.cached(key)
                or await self.revalidated(key, ref, plan, client_etag)
                or await self._coalescer.run(key, lambda: self.rendered(key, ref, plan)))

    async def cached(self, key: str) -> Entry | None:
        return await self.cache.get(key) if self.cache else None

    async def revalidated(self, key: str, ref: str, plan: Plan,
                          client_etag: str | None) -> Entry | NotModified | None:
        remembered = self.validators.for_client(key, client_etag)
        if remembered is None:
            return None
        source = await self.render.load(ref, remembered.validators)
        if source is None:  # the origin's 304 is ours: nothing fetched, nothing decoded
            return NotModified(remembered.etag, remembered.headers)
        return await self.rendered(key, ref, plan, source)

    async def rendered(self, key: str, ref: str, plan: Plan, source: Source | None = None) -> Entry:
        source = source or await self.render.load(ref)
        rendered = await self.render.render(source, plan)
        # Without validators from the origin, the hash of the rendered bytes stands in:
        # as strong as the source's hash, and kilobytes to hash instead of megabytes.
        version = (source.validators.etag or source.validators.last_modified
                   or hashlib.sha256(rendered.body).hexdigest())
        etag = make_etag(ref, plan, rendered.format, self.render.imaging, version)
        self.validators.remember(key, etag, source.validators, source.headers)
        entry = Entry(rendered.body, rendered.content_type, etag, dict(source.headers), time.time())
        if self.cache:
            await self.cache.put(key, entry)
        return entry
