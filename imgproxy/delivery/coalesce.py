"""Runs one computation per key at a time; identical requests in flight share its result."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")


class Coalescer:
    def __init__(self):
        self._running: dict[str, asyncio.Future] = {}

    async def run(self, key: str, compute: Callable[[], Awaitable[T]]) -> T:
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
