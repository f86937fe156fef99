"""Runs queued jobs: lease, fetch, render every output from one decode, upload, settle.

`job_slots` loops run at once, so jobs never hold more worker slots than that
and a burst of jobs cannot starve interactive requests. A lease is renewed while
a job runs; a job whose lease was lost (this node stalled and another took it)
stops without settling. Transient failures (5xx, 429, timeouts, a full pool) are
retried with exponential backoff and jitter up to job_max_attempts; permanent
ones (4xx, not an image, too large) fail at once with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from typing import TYPE_CHECKING, Awaitable, Callable

from ..errors import Code, ProxyError
from . import templates
from .model import DONE, FAILED, JobRecord, JobSpec
from .queue import JobQueue
from .spec import plan_for, raster_sizes

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings
    from ..render import RenderService

log = logging.getLogger("imgproxy.jobs")

IDLE_POLL = 0.5  # seconds between looks at an empty queue (a new job wakes the loops at once)
TRANSIENT_STATUSES = (429, 500, 502, 503, 504)
Deliver = Callable[..., Awaitable[None]]


def is_transient(error: ProxyError) -> bool:
    transient = getattr(error, "transient", None)
    if transient is not None:
        return bool(transient)
    if error.code in (Code.IMAGE_TOO_LARGE, Code.IMAGE_FORMAT, Code.IMAGE_BROKEN, Code.IMAGE_SAVE):
        return False
    return error.status in TRANSIENT_STATUSES


def backoff(attempts: int, base: float) -> float:
    """base, 2 base, 4 base ... with +-50% jitter, so retries of many jobs spread out."""
    return base * 2 ** (attempts - 1) * random.uniform(0.5, 1.5)


class JobRunner:
    def __init__(self, settings: Settings, queue: JobQueue, render: RenderService, deliver: Deliver,
                 notify: Callable[[JobRecord], Awaitable[None]] | None = None,
                 tasks: dict[str, Callable[[JobRecord], Awaitable[None]]] | None = None):
        """`tasks`: other work kept in the same queue, by its operation name (the upload
        store's background variants), with the same leases and retries."""
        self.settings = settings
        self.tasks = tasks or {}
        self.queue = queue
        self.render = render
        self.deliver = deliver
        self.notify = notify
        self.owner = f"node-{secrets.token_hex(8)}"
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task] = []
        self._stopping = False

    def start(self) -> None:
        self._loops = [asyncio.get_running_loop().create_task(self._loop()) for _ in range(self.settings.job_slots)]

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Let running jobs finish within `grace`; a job cut short keeps its lease and runs again."""
        self._stopping = True
        self._wake.set()
        done, pending = await asyncio.wait(self._loops, timeout=grace) if self._loops else (set(), set())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                record = await self.queue.lease(self.owner, self.settings.job_lease_seconds, time.time())
            except Exception:
                log.exception("cannot lease a job; trying again shortly")
                record = None
            if record is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
                except asyncio.TimeoutError:
                    pass
                continue
            await self._run(record)

    async def _run(self, record: JobRecord) -> None:
        work = asyncio.get_running_loop().create_task(self._execute(record))
        keeper = asyncio.get_running_loop().create_task(self._keep_lease(record, work))
        try:
            record.results, record.destinations = await work
            record.status, record.error = DONE, None
        except asyncio.CancelledError:
            if not keeper.done():  # stopping: the lease lapses and the job runs again
                raise
            log.warning("job %s: lease lost to another runner; not settling", record.id)
            return
        except ProxyError as e:
            record.error = {"status_code": e.status, "error_code": e.code, "error": e.reason}
            if is_transient(e) and record.attempts < self.settings.job_max_attempts:
                delay = backoff(record.attempts, self.settings.job_retry_seconds)
                log.info("job %s attempt %d failed (%s); again in %.1fs", record.id, record.attempts, e, delay)
                await self.queue.retry(record, self.owner, time.time() + delay)
                return
            record.status = FAILED
        except Exception as e:  # a bug: fail the job with a reason, never a silent loss
            log.exception("job %s failed unexpectedly", record.id)
            record.status, record.error = FAILED, {"status_code": 500, "error_code": 0,
                                                   "error": f"Internal error: {type(e).__name__}"}
        finally:
            keeper.cancel()
        record.finished = time.time()
        await self.queue.settle(record, self.owner)
        if self.notify is not None:
            await self.notify(record)

    async def _keep_lease(self, record: JobRecord, work: asyncio.Task) -> None:
        every = self.settings.job_lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            if not await self.queue.renew(record.id, self.owner, time.time() + self.settings.job_lease_seconds):
                work.cancel()
                return

    async def _execute(self, record: JobRecord) -> tuple[list[dict], list[str]]:
        spec: JobSpec = record.spec
        if spec.operation in self.tasks:
            await self.tasks[spec.operation](record)
            return [], []
        source = await self.render.load(spec.source)
        plans = [plan_for(output, spec.operation, self.settings) for output in spec.outputs]
        if spec.operation == "rasterize":
            rendered = await self.render.rasterize_many(source, raster_sizes(spec), plans)
        else:
            rendered = await self.render.render_many(source, plans)
        results, destinations = [], []
        for output, result in zip(spec.outputs, rendered):
            url = templates.expand(output.destination, result.width, result.height, spec.source, result.format)
            await self.deliver(url, result.body, result.content_type, settings=self.settings,
                               method=output.method, field_name=output.field_name)
            destinations.append(url)
            results.append({"dstURL": url, "width": result.width, "height": result.height,
                            "bytes": len(result.body), "content_type": result.content_type})
        return results, destinations
