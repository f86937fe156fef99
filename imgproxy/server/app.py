"""The Tornado application: services made from Settings, the routes, and the server's life."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import tornado.web
from tornado.httpserver import HTTPServer

from ..config import Settings
from ..delivery.cache import ResultCache
from ..delivery.results import Results
from ..errors import ProxyError
from ..jobs import destinations
from ..jobs.model import JobRecord, status_document
from ..jobs.queue import JobQueue, SqliteQueue
from ..jobs.runner import JobRunner
from ..metrics import Metrics
from ..options.presets import check_presets
from ..pool import Pool
from ..render import RenderService
from ..sources.cache import CachingLoader
from ..sources.files import FileLoader
from ..sources.ftp import FtpLoader
from ..sources.http import HttpLoader
from ..sources.origins import OriginsLoader
from ..sources.paths import check_base
from ..sources.router import SourceRouter
from ..storage.files import FileStore
from ..storage.redis import RedisStore
from . import handlers
from . import jobs as jobs_routes
from .replies import log_request

log = logging.getLogger("imgproxy.server")

# What a worker needs beyond what it maps when idle, to decode anything at all.
WORKER_HEADROOM = 128 << 20


class StartupError(Exception):
    """The server cannot start as configured; the message is one line."""


@dataclass
class Services:
    """What handlers use; made once per server from Settings."""
    pool: Pool
    metrics: Metrics
    render: RenderService
    results: Results
    jobs: JobQueue | None = None  # with jobs = True
    job_runner: JobRunner | None = None
    check_destination: Callable[[str, Settings], None] | None = None
    deliver: Callable | None = None


def make_result_cache(settings: Settings, metrics: Metrics) -> ResultCache | None:
    count = metrics.cache.labels  # bound below: hit, miss, error
    if settings.cache_url:
        store = RedisStore(settings.cache_url, settings.cache_ttl, settings.cache_max_entry_bytes)
    elif settings.cache_dir:
        store = FileStore(settings.cache_dir, settings.cache_max_bytes)
    else:
        return None
    return ResultCache(store, settings.cache_ttl, lambda result: count(result).inc())


def origin_bases(settings: Settings) -> tuple[str, ...]:
    """Where /paths are fetched: `origins`, else `implicit_base_url` alone."""
    return settings.origins or ((settings.implicit_base_url,) if settings.implicit_base_url else ())


def make_loader(settings: Settings, metrics: Metrics) -> CachingLoader:
    """Every fetch goes through one cache of originals (or, with no room set, just
    one fetch at a time per source); /paths go to the origins, the master first."""
    bases = origin_bases(settings)
    trusted = tuple(urlsplit(base).netloc for base in bases)  # the operator's own hosts
    http = HttpLoader(settings, trusted_hosts=trusted)
    origins = None
    if bases:
        origins = OriginsLoader(bases, http, settings.origin_hedge_ms / 1000.0,
                                lambda base, outcome: metrics.origin_fetches.labels(base, outcome).inc())
    store = (FileStore(settings.source_cache_dir, settings.source_cache_dir_bytes)
             if settings.source_cache_dir else None)
    ftp = FtpLoader(settings) if settings.jobs else None  # job sources only: the query API takes http(s)
    files = FileLoader(settings) if settings.jobs and settings.job_file_root else None
    return CachingLoader(SourceRouter(http, origins, ftp=ftp, files=files), settings.source_cache_bytes, store,
                         settings.source_cache_ttl, lambda result: metrics.source_cache.labels(result).inc())


def make_services(settings: Settings, pool: Pool, metrics: Metrics) -> Services:
    render = RenderService(settings, make_loader(settings, metrics), pool, metrics)
    services = Services(pool, metrics, render, Results(render, make_result_cache(settings, metrics)))
    if settings.jobs:
        queue = make_job_queue(settings)
        services.jobs = queue
        services.job_runner = JobRunner(settings, queue, render, destinations.deliver, callback_for(settings))
        services.check_destination = destinations.check_destination
        services.deliver = destinations.deliver
    return services


def callback_for(settings: Settings):
    """POSTs a finished job's status document to its callbackURL; a failed callback is logged."""
    async def notify(record: JobRecord) -> None:
        if not record.spec.callback:
            return
        try:
            await destinations.post_json(record.spec.callback, status_document(record), settings=settings)
        except ProxyError as e:
            log.warning("job %s: callback failed: %s", record.id, e)
    return notify


def make_job_queue(settings: Settings) -> JobQueue:
    if settings.job_queue_url:
        from ..jobs.queue_redis import RedisQueue  # only with several nodes
        return RedisQueue(settings.job_queue_url)
    return SqliteQueue(settings.job_db)


def routes(settings: Settings) -> list:
    """The core's routes, then each enabled feature's; path URLs last (they match the most)."""
    found = list(handlers.ROUTES)
    if settings.jobs:
        found[-1:-1] = jobs_routes.ROUTES
    return found


def check_memory_limit(limit: int, idle_worker_bytes: int) -> None:
    """A limit below what an idle worker already maps would fail every image (502)."""
    minimum = -(-(idle_worker_bytes + WORKER_HEADROOM) // (1 << 20))  # MiB, rounded up
    if limit and limit < minimum << 20:
        raise StartupError(f"worker_memory_limit={limit} is too low: an idle worker maps "
                           f"{idle_worker_bytes >> 20} MiB; use at least {minimum << 20} ({minimum} MiB) or 0")


class Application(tornado.web.Application):
    def __init__(self, settings: Settings, services: Services):
        self.imgproxy_settings = settings
        self.services = services
        self.inflight = 0  # handlers still answering; a graceful stop waits for them
        super().__init__(
            routes(settings),
            default_handler_class=handlers.NotFoundHandler,
            log_function=log_request,
            debug=False,
        )


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Start workers, listen, and run until SIGTERM or SIGINT; then stop gracefully."""
    try:
        check_presets(settings)
        for base in origin_bases(settings):
            check_base(base)
    except ValueError as e:
        raise StartupError(str(e)) from None
    if settings.source_cache_dir and settings.cache_dir and (
            os.path.realpath(settings.source_cache_dir) == os.path.realpath(settings.cache_dir)):
        raise StartupError("source_cache_dir and cache_dir must be different directories")
    metrics = Metrics()
    # Workers are forked first, before the event loop has started any thread.
    pool = Pool(settings.worker_count, settings.queue_size, settings.process_timeout,
                settings.worker_memory_limit or None, observe=metrics.observe)
    pool.start()
    try:
        mapped = await pool.ready()
        check_memory_limit(settings.worker_memory_limit, mapped)
    except (RuntimeError, StartupError) as e:
        await pool.close(grace=0)
        raise StartupError(str(e)) from None
    metrics.watch_pool(pool.stats)
    services = make_services(settings, pool, metrics)
    app = Application(settings, services)
    if services.job_runner is not None:
        services.job_runner.start()
    server = HTTPServer(app, xheaders=False, idle_connection_timeout=60,
                        body_timeout=30, max_header_size=16 * 1024)
    server.listen(settings.port, settings.address)
    host = f"[{settings.address}]" if ":" in settings.address else settings.address
    log.info("imgproxy listening on http://%s:%d with %d workers", host, settings.port, settings.worker_count)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    await stop.wait()

    log.info("stopping: no new connections, finishing running work")
    server.stop()
    # Requests still fetching or queued finish first (bounded), then the workers stop.
    grace = settings.timeout + settings.process_timeout
    deadline = loop.time() + grace
    while app.inflight and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if services.job_runner is not None:
        await services.job_runner.stop(grace=max(0.0, deadline - loop.time()))
        services.jobs.close()
    await pool.close(grace=max(1.0, deadline - loop.time()))
    await server.close_all_connections()
    services.render.loader.close()
    log.info("stopped")
