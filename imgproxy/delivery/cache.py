"""Result cache: rendered images by result key, in any storage backend.

An entry is stored as a small JSON header, the body, and a checksum; a corrupt,
truncated or expired entry reads as a miss (and is rewritten by the next render),
never as a broken image. Nothing is unpickled, so a cache shared with other
software cannot run code here. A failing backend is counted and the request is
served uncached.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from ..storage import BlobStore, StorageError, framing

log = logging.getLogger("imgproxy.delivery.cache")

_MAGIC = b"IPC1"


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    content_type: str
    etag: str
    headers: dict[str, str] = field(default_factory=dict)  # the origin's, passed through
    created: float = 0.0

    def dumps(self) -> bytes:
        return framing.pack(_MAGIC, {"content_type": self.content_type, "etag": self.etag,
                                     "headers": self.headers, "created": self.created}, self.body)

    @classmethod
    def loads(cls, data: bytes) -> Entry | None:
        """The entry, or None when the bytes are not a whole, intact entry."""
        unpacked = framing.unpack(_MAGIC, data)
        if unpacked is None:
            return None
        meta, body = unpacked
        try:
            return cls(body, str(meta["content_type"]), str(meta["etag"]),
                       {str(k): str(v) for k, v in meta["headers"].items()}, float(meta["created"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class ResultCache:
    def __init__(self, store: BlobStore, ttl: float, count: Callable[[str], None] | None = None):
        """`count(result)` hears "hit", "miss" or "error" for each look-up or failed write."""
        self.store = store
        self.ttl = ttl
        self._count = count or (lambda result: None)

    async def get(self, key: str) -> Entry | None:
        try:
            data = await self.store.get(key)
        except StorageError as e:
            log.warning("result cache read failed: %s", e)
            self._count("error")
            return None
        entry = Entry.loads(data) if data else None
        if data and (entry is None or (self.ttl and time.time() - entry.created > self.ttl)):
            entry = None
            await self._forget(key)
        self._count("hit" if entry else "miss")
        return entry

    async def put(self, key: str, entry: Entry) -> None:
        try:
            await self.store.put(key, entry.dumps())
        except StorageError as e:
            log.warning("result cache write failed: %s", e)
            self._count("error")

    async def _forget(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except StorageError:
            pass
