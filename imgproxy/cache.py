"""Result cache: rendered images by request key, on local disk or in Redis.

An entry is stored as a small JSON header, the body, and a checksum; a
corrupt or truncated entry reads as a miss (and is rewritten by the next
render), never as a broken image. Nothing is unpickled, so a cache shared with
other software cannot run code here.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import os
import struct
import tempfile
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol

log = logging.getLogger("imgproxy.cache")

_MAGIC = b"IPC1"
_LEN = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes
    content_type: str
    etag: str
    headers: dict[str, str] = field(default_factory=dict)  # the origin's, passed through
    created: float = 0.0

    def dumps(self) -> bytes:
        meta = json.dumps({
            "content_type": self.content_type, "etag": self.etag, "headers": self.headers,
            "created": self.created, "sha256": hashlib.sha256(self.body).hexdigest(),
        }).encode()
        return _MAGIC + _LEN.pack(len(meta)) + meta + self.body

    @classmethod
    def loads(cls, data: bytes) -> Entry | None:
        """The entry, or None when the bytes are not a whole, intact entry."""
        try:
            if not data.startswith(_MAGIC):
                return None
            (n,) = _LEN.unpack_from(data, len(_MAGIC))
            start = len(_MAGIC) + _LEN.size
            meta = json.loads(data[start:start + n])
            body = data[start + n:]
            if hashlib.sha256(body).hexdigest() != meta["sha256"]:
                return None
            return cls(body, str(meta["content_type"]), str(meta["etag"]),
                       {str(k): str(v) for k, v in meta["headers"].items()}, float(meta["created"]))
        except (ValueError, KeyError, TypeError, AttributeError, struct.error):
            return None


def entry_key(request_key: str) -> str:
    return hashlib.sha256(request_key.encode()).hexdigest()


class Cache(Protocol):
    async def get(self, key: str) -> Entry | None: ...
    async def set(self, key: str, entry: Entry) -> None: ...


class CacheError(Exception):
    """The backend failed (not a miss): counted, and the request is served uncached."""


class FileCache:
    """Entries as files under `root`, evicted least-recently-used past `max_bytes`.

    Writes go to a temporary file in the same directory, then os.replace(), so
    a crash never leaves a half-written entry under a real name.
    """

    def __init__(self, root: str, max_bytes: int, ttl: float):
        self.root = root
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._sizes: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._total = 0
        os.makedirs(root, exist_ok=True)
        self._scan()

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key[:2], key)

    def _scan(self) -> None:
        """Rebuild the LRU order from the files' access times after a restart."""
        found = []
        for sub in os.listdir(self.root):
            folder = os.path.join(self.root, sub)
            if len(sub) != 2 or not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if name.startswith("."):  # a temporary file a crash left behind
                    _remove(path)
                    continue
                st = os.stat(path)
                found.append((st.st_mtime, name, st.st_size))
        for _, name, size in sorted(found):
            self._sizes[name] = size
            self._total += size
        self._evict()

    async def get(self, key: str) -> Entry | None:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CacheError(str(e)) from e
        entry = Entry.loads(data)
        if entry is None or (self.ttl and time.time() - entry.created > self.ttl):
            self._drop(key)
            return None
        if key in self._sizes:
            self._sizes.move_to_end(key)
        try:
            os.utime(path)  # recency survives a restart
        except OSError:
            pass
        return entry

    async def set(self, key: str, entry: Entry) -> None:
        data = entry.dumps()
        if len(data) > self.max_bytes:
            return
        path = self._path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as e:
            raise CacheError(str(e)) from e
        self._total -= self._sizes.pop(key, 0)
        self._sizes[key] = len(data)
        self._total += len(data)
        self._evict()

    def _drop(self, key: str) -> None:
        self._total -= self._sizes.pop(key, 0)
        _remove(self._path(key))

    def _evict(self) -> None:
        while self._total > self.max_bytes and self._sizes:
            key, size = self._sizes.popitem(last=False)
            self._total -= size
            _remove(self._path(key))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


class RedisCache:
    """Entries in Redis with a TTL, for several servers behind one load balancer."""

    def __init__(self, url: str, ttl: float, max_entry_bytes: int, timeout: float = 0.5):
        import redis.asyncio as redis  # only needed when a Redis cache is configured

        self._errors = (redis.RedisError, OSError, asyncio.TimeoutError)
        self.ttl = ttl
        self.max_entry_bytes = max_entry_bytes
        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                            retry_on_timeout=False)

    async def get(self, key: str) -> Entry | None:
        try:
            data = await self._client.get(f"imgproxy:{key}")
        except self._errors as e:
            raise CacheError(str(e)) from e
        return Entry.loads(data) if data else None

    async def set(self, key: str, entry: Entry) -> None:
        data = entry.dumps()
        if len(data) > self.max_entry_bytes:
            return
        try:
            await self._client.set(f"imgproxy:{key}", data, ex=max(1, int(self.ttl)) if self.ttl else None)
        except self._errors as e:
            raise CacheError(str(e)) from e


class Coalescer:
    """Runs one computation per key at a time; identical requests share its result."""

    def __init__(self):
        self._running: dict[str, asyncio.Future] = {}

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: str, compute: Callable[[], Awaitable[Entry]]) -> Entry:
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            result = await compute()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._running[key]
