"""A cache of originals in front of any Loader: memory (LRU by bytes), then a BlobStore.

A fresh entry (younger than `ttl`) is served without asking the origin. A stale one
is revalidated with its own validators: "not modified" serves it and makes it fresh
again, a new Source replaces it. An entry without validators is simply fetched again
once stale. Concurrent loads of one reference share one inner load, which runs on
its own: a caller that gives up does not cancel it for the others.

`count(result)` hears, once per load (loads that shared one inner load each count its result):

    hit          served from the cache without asking the origin
    miss         nothing cached: fetched
    revalidated  stale, and the origin said it has not changed
    refreshed    stale, and the origin sent it again (changed, or no validators)

and nothing for a load that fails (the inner Loader counts its own failures).

Errors from the inner load propagate (nothing stale is served on a failure); a 404 or
410 also drops the entry, so a deleted source is not kept.

With `validators` (the result cache asking "changed?"): None when the cached source,
fresh or just revalidated, has exactly those validators; otherwise the Source.

On disk, under sha256(ref) (never the reference itself: it is a client's text), an
entry is a JSON header (headers, validators, fetch time, body checksum) and the body;
anything corrupt or truncated reads as a miss and is fetched again. A failing store
is logged and the load goes on without it.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Callable

from .. import errors
from ..storage import BlobStore, StorageError, framing
from . import Loader, Source, Validators

log = logging.getLogger("imgproxy.sources.cache")

ENTRY_OVERHEAD = 512  # bytes counted per memory entry beyond its body: headers, bookkeeping
_MAGIC = b"IPS1"


@dataclass(frozen=True, slots=True)
class KeptSource:
    source: Source
    fetched: float  # time.time(): an age that survives a restart

    @property
    def size(self) -> int:
        return len(self.source.body) + ENTRY_OVERHEAD

    def dumps(self) -> bytes:
        s = self.source
        return framing.pack(_MAGIC, {"headers": s.headers, "etag": s.validators.etag,
                                     "last_modified": s.validators.last_modified, "fetched": self.fetched}, s.body)

    @classmethod
    def loads(cls, data: bytes) -> KeptSource | None:
        """The entry, or None when the bytes are not a whole, intact entry."""
        unpacked = framing.unpack(_MAGIC, data)
        if unpacked is None:
            return None
        meta, body = unpacked
        try:
            validators = Validators(_opt_str(meta["etag"]), _opt_str(meta["last_modified"]))
            headers = {str(k): str(v) for k, v in meta["headers"].items()}
            return cls(Source(body, headers, validators), float(meta["fetched"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _opt_str(value) -> str | None:
    return None if value is None else str(value)


class CachingLoader:
    def __init__(self, inner: Loader, memory_bytes: int, store: BlobStore | None, ttl: float,
                 count: Callable[[str], None] | None = None):
        """`store`: the second tier (a FileStore with its own byte bound), used for originals only."""
        self.inner = inner
        self.memory_bytes = memory_bytes
        self.store = store
        self.ttl = ttl
        self._count = count or (lambda result: None)
        self._memory: collections.OrderedDict[str, KeptSource] = collections.OrderedDict()  # oldest first
        self._memory_total = 0
        self._flights: dict[str, asyncio.Task[KeptSource]] = {}

    def close(self) -> None:
        self.inner.close()

    async def load(self, ref: str, validators: Validators | None = None) -> Source | None:
        key = hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()
        if validators and self.memory_bytes == 0 and self.store is None:
            # Nothing kept to compare with: the origin itself answers "changed?" (its 304).
            return await self.inner.load(ref, validators)
        entry = self._memory.get(key)
        if entry is not None and self._fresh(entry):
            self._memory.move_to_end(key)
            result = "hit"
        else:
            # Everything else, the disk look-up included, is one flight per key: a load that
            # arrives while another fills the key waits for it instead of asking again.
            flight = self._flights.get(key)
            if flight is None:
                flight = asyncio.create_task(self._fill(ref, key))
                self._flights[key] = flight
                flight.add_done_callback(lambda done: self._landed(key, done))
            entry, result = await asyncio.shield(flight)
        self._count(result)
        if validators and entry.source.validators == validators:
            return None
        return entry.source

    def _landed(self, key: str, flight: asyncio.Task) -> None:
        self._flights.pop(key, None)
        if not flight.cancelled():
            flight.exception()  # retrieved: every waiter may have given up

    def _fresh(self, entry: KeptSource) -> bool:
        return 0 <= time.time() - entry.fetched < self.ttl

    async def _fill(self, ref: str, key: str) -> tuple[KeptSource, str]:
        """The entry for `key`, fresh, and how it was had; one inner load at most."""
        entry = self._memory.get(key) or await self._disk_lookup(key)
        if entry is not None and self._fresh(entry):
            return entry, "hit"
        conditional = entry.source.validators if entry is not None and entry.source.validators else None
        try:
            source = await self.inner.load(ref, conditional)
        except errors.ProxyError as e:
            if e.status == 404 and entry is not None:
                await self._forget(key)
            raise
        if source is None:
            if entry is None or conditional is None:  # a Loader says "not modified" only when asked
                raise errors.internal("The source's loader answered 'not modified' to a plain request")
            entry, result = replace(entry, fetched=time.time()), "revalidated"
        else:
            entry, result = KeptSource(source, time.time()), "miss" if entry is None else "refreshed"
        self._remember(key, entry)
        await self._store_put(key, entry)
        return entry, result

    # --- the tiers ---------------------------------------------------------------------

    async def _disk_lookup(self, key: str) -> KeptSource | None:
        if self.store is None:
            return None
        try:
            data = await self.store.get(key)
        except StorageError as e:
            log.warning("originals cache read failed: %s", e)
            return None
        if data is None:
            return None
        entry = KeptSource.loads(data)
        if entry is None:
            log.warning("originals cache entry %s is corrupt: fetching again", key)
            await self._store_delete(key)
            return None
        self._remember(key, entry)
        return entry

    def _remember(self, key: str, entry: KeptSource) -> None:
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_total -= old.size
        if entry.size > self.memory_bytes:  # includes memory_bytes == 0: no memory tier
            return
        self._memory[key] = entry
        self._memory_total += entry.size
        while self._memory_total > self.memory_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._memory_total -= evicted.size

    async def _forget(self, key: str) -> None:
        old = self._memory.pop(key, None)
        if old is not None:
            self._memory_total -= old.size
        await self._store_delete(key)

    async def _store_put(self, key: str, entry: KeptSource) -> None:
        if self.store is None:
            return
        try:
            await self.store.put(key, entry.dumps())
        except StorageError as e:
            log.warning("originals cache write failed: %s", e)

    async def _store_delete(self, key: str) -> None:
        if self.store is None:
            return
        try:
            await self.store.delete(key)
        except StorageError as e:
            log.warning("originals cache delete failed: %s", e)
