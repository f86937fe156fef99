"""Image records in Redis, for several nodes sharing one store (store_meta_url).

A record is one string; the upload order is a sorted set scored by a counter. It
survives a restart as far as Redis' own persistence goes: run it with
`appendonly yes` (the README says so).
"""

from __future__ import annotations

import asyncio

from .records import ImageRecord

PREFIX = "imgproxy:store:"
ORDER = PREFIX + "order"
COUNTER = PREFIX + "seq"


def _key(image_id: str) -> str:
    return PREFIX + "image:" + image_id


class RedisRecords:
    def __init__(self, url: str, timeout: float = 5.0):
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    def close(self) -> None:
        try:
            asyncio.get_running_loop().create_task(self._client.aclose())
        except RuntimeError:  # no loop left: the sockets go with the process
            pass

    async def add(self, record: ImageRecord) -> None:
        seq = await self._client.incr(COUNTER)
        async with self._client.pipeline(transaction=True) as pipe:
            await pipe.set(_key(record.id), record.dumps()).zadd(ORDER, {record.id: seq}).execute()

    async def get(self, image_id: str) -> ImageRecord | None:
        text = await self._client.get(_key(image_id))
        return ImageRecord.loads(text) if text else None

    async def update(self, record: ImageRecord) -> bool:
        return bool(await self._client.set(_key(record.id), record.dumps(), xx=True))

    async def delete(self, image_id: str) -> bool:
        async with self._client.pipeline(transaction=True) as pipe:
            removed, _ = await pipe.delete(_key(image_id)).zrem(ORDER, image_id).execute()
        return bool(removed)

    async def page(self, after: str | None, limit: int) -> list[ImageRecord] | None:
        start = "-inf"
        if after is not None:
            score = await self._client.zscore(ORDER, after)
            if score is None:
                return None
            start = f"({score}"
        ids = await self._client.zrangebyscore(ORDER, start, "+inf", start=0, num=limit)
        if not ids:
            return []
        texts = await self._client.mget([_key(i.decode()) for i in ids])
        return [ImageRecord.loads(t) for t in texts if t]

    async def neighbour(self, image_id: str, later: bool) -> str | None:
        score = await self._client.zscore(ORDER, image_id)
        if score is None:
            return None
        if later:
            ids = await self._client.zrangebyscore(ORDER, f"({score}", "+inf", start=0, num=1)
        else:
            ids = await self._client.zrevrangebyscore(ORDER, f"({score}", "-inf", start=0, num=1)
        return ids[0].decode() if ids else None

    async def random(self) -> str | None:
        found = await self._client.zrandmember(ORDER)
        return found.decode() if found else None
