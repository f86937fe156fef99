"""Blobs in Redis with a time to live: a result cache shared by several servers."""

from __future__ import annotations

import asyncio

from . import StorageError, check_key

PREFIX = "imgproxy:"


class RedisStore:
    def __init__(self, url: str, ttl: float, max_entry_bytes: int, timeout: float = 0.5):
        import redis.asyncio as redis  # only needed when a Redis cache is configured

        self._errors = (redis.RedisError, OSError, asyncio.TimeoutError)
        self.ttl = ttl
        self.max_entry_bytes = max_entry_bytes
        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                            retry_on_timeout=False)

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        try:
            return await self._client.get(PREFIX + key)
        except self._errors as e:
            raise StorageError(str(e)) from e

    async def put(self, key: str, data: bytes) -> None:
        check_key(key)
        if len(data) > self.max_entry_bytes:
            return
        try:
            await self._client.set(PREFIX + key, data, ex=max(1, int(self.ttl)) if self.ttl else None)
        except self._errors as e:
            raise StorageError(str(e)) from e

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        check_key(key)
        if len(data) > self.max_entry_bytes:
            # put() drops it silently (a cache), but here the caller relies on the answer
            raise StorageError(f"{len(data)} bytes are more than max_entry_bytes={self.max_entry_bytes}")
        try:  # SET NX: Redis runs one command at a time, so exactly one of two racing sets wins
            written = await self._client.set(PREFIX + key, data, nx=True,
                                             ex=max(1, int(self.ttl)) if self.ttl else None)
        except self._errors as e:
            raise StorageError(str(e)) from e
        return bool(written)

    async def head(self, key: str) -> int | None:
        check_key(key)
        try:  # STRLEN is 0 for a missing key and for an empty blob alike: ask EXISTS in the same round trip
            async with self._client.pipeline(transaction=True) as pipe:
                exists, size = await pipe.exists(PREFIX + key).strlen(PREFIX + key).execute()
        except self._errors as e:
            raise StorageError(str(e)) from e
        return int(size) if exists else None

    async def delete(self, key: str) -> None:
        check_key(key)
        try:
            await self._client.delete(PREFIX + key)
        except self._errors as e:
            raise StorageError(str(e)) from e

    async def list(self, prefix: str = "") -> list[str]:
        try:
            return [k.decode()[len(PREFIX):] async for k in self._client.scan_iter(match=PREFIX + prefix + "*")]
        except self._errors as e:
            raise StorageError(str(e)) from e
