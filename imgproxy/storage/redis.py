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
