"""The Tornado application: services made from Settings, the routes, and the server's life."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import tornado.web
from tornado.httpserver import HTTPServer

from ..config import Settings
from ..metrics import Metrics
from ..options.presets import check_presets
from ..pool import Pool
from ..sources.paths import check_base
from . import handlers
from . import jobs as jobs_routes
from . import store as store_routes
from .replies import log_request
from .services import Services, make_services, origin_bases

log = logging.getLogger("imgproxy.server")

# Request bodies: no route but uploads takes more than a job's 64 KiB (and the 413 for one
# a little over it); POST /images raises the limit for its own connection (server/store.py).
MAX_BODY = 1 << 20

# What a worker needs beyond what it maps when idle, to decode anything at all.
WORKER_HEADROOM = 128 << 20


class StartupError(Exception):
    """The server cannot start as configured; the message is one line."""


def routes(settings: Settings) -> list:
    """The core's routes, then each enabled feature's; path URLs last (they match the most)."""
    found = list(handlers.ROUTES)
    if settings.jobs:
        found[-1:-1] = jobs_routes.ROUTES
    if settings.store:
        found[-1:-1] = store_routes.ROUTES
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
    try:
        services = make_services(settings, pool, metrics)
    except (ImportError, OSError, ValueError) as e:  # a store or queue that cannot be opened
        await pool.close(grace=0)
        raise StartupError(f"cannot start: {type(e).__name__}: {e}") from None
    app = Application(settings, services)
    if services.job_runner is not None:
        services.job_runner.start()
    server = HTTPServer(app, xheaders=False, idle_connection_timeout=60,
                        body_timeout=30, max_header_size=16 * 1024, max_body_size=MAX_BODY)
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
    if services.store is not None:
        services.store.records.close()
    await pool.close(grace=max(1.0, deadline - loop.time()))
    await server.close_all_connections()
    services.render.loader.close()
    log.info("stopped")
