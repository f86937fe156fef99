"""The Tornado application: request handlers, and the one place errors become answers.

An image request flows one way: params -> security -> negotiate -> result
cache -> fetch -> pool (imaging) -> respond. Each later capability plugs in
at one named step of ImageHandler._serve.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import signal
import time
from typing import Any

import PIL
import tornado.web
from PIL import features
from tornado.httpserver import HTTPServer

from . import __version__, params, security
from .cache import Cache, CacheError, Coalescer, Entry, FileCache, RedisCache, entry_key
from .config import Settings
from .errors import ProxyError
from .fetch import Fetcher, Source
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .negotiate import negotiate
from .pool import Pool

log = logging.getLogger("imgproxy.server")
access_log = logging.getLogger("imgproxy.access")

# Sent with every reply: the bytes are never to be sniffed or run as a document.
SAFETY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}
# Origin validators remembered per ETag we sent, for conditional revalidation.
_MAX_VALIDATORS = 100_000


class BaseHandler(tornado.web.RequestHandler):
    @property
    def app(self) -> Application:
        return self.application  # type: ignore[return-value]

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        for name, value in SAFETY_HEADERS.items():
            self.set_header(name, value)

    def write_json(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, ProxyError):
            status, code, reason = error.status, error.code, error.reason
        elif isinstance(error, tornado.web.HTTPError):
            status, code, reason = error.status_code, 0, error.reason or self._reason
        else:
            status, code, reason = 500, 0, "Internal server error"
        self.clear()
        self.set_default_headers()
        if getattr(self, "_vary", None):  # send_error cleared it; errors vary as well
            self.set_header("Vary", self._vary)
        # A CDN must not pin a transient failure for long.
        self.set_header("Cache-Control", self.app.imgproxy_settings.error_cache_control)
        if status == 503:
            self.set_header("Retry-After", "1")
        self.write_json(status, {"status_code": status, "error_code": code, "error": reason})

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, ProxyError):
            log.info("%s %s: %s", self.request.method, self.request.uri, value)
        else:
            super().log_exception(typ, value, tb)

    def finish(self, chunk=None):
        self._flushed = super().finish(chunk)
        return self._flushed

    async def _run(self, coro) -> None:
        self.app.inflight += 1  # a graceful stop waits for these, reply sent
        try:
            await coro
        except ProxyError as e:
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
        finally:
            try:
                await getattr(self, "_flushed", None) or asyncio.sleep(0)
            except Exception:  # the client went away: nothing left to wait for
                pass
            self.app.inflight -= 1

    async def _fetch(self, url: str, validators: tuple[str | None, str | None] | None = None) -> Source | None:
        self.app.pool.check_capacity()  # refuse before fetching when even the queue is full
        started = time.monotonic()
        source = await self.app.fetcher.fetch(url, validators)
        self.app.metrics.observe("fetch", time.monotonic() - started)
        if source is not None:
            self.app.metrics.fetched_bytes.inc(len(source.body))
        return source

    def _access(self, args: dict[str, str], settings: Settings) -> tuple[tuple[str, ...], str]:
        """Operations and source URL, after Pilbox's first checks and access control."""
        ops, url = params.parse_target(args, settings)
        security.authorize(self.request.query, args.get("client"), url, settings)
        return ops, url


class ImageHandler(BaseHandler):
    async def get(self) -> None:
        started = time.monotonic()
        self._op = "-"
        try:
            await self._run(self._serve())
        finally:
            m = self.app.metrics
            m.requests.labels(str(self.get_status()), self._op).inc()
            m.observe("total", time.monotonic() - started)

    async def _serve(self) -> None:
        app, s = self.app, self.app.imgproxy_settings
        # 1. parse, 2. access control, 3. the rest of the parameters
        args = params.parse_query(self.request.query)
        ops, url = self._access(args, s)
        # Only validated names, as a set: the label can take at most 15 values,
        # whatever strangers put in op=.
        self._op = ",".join(sorted(set(ops)))
        plan = params.parse_plan(args, ops, url, s)
        # 4. format negotiation (fmt=auto)
        plan, varies = negotiate(plan, self.request.headers.get("Accept"))
        if varies:
            self._vary = "Accept"
            self.set_header("Vary", self._vary)
        key = entry_key(repr(plan))
        client_etag = self.request.headers.get("If-None-Match")
        # 5. the result cache: a hit needs no fetch and no decode
        entry = await app.cache_get(key)
        if entry is None and client_etag in app.validators:
            # 6a. revalidate with the origin; its 304 is ours, nothing decoded
            source = await self._fetch(plan.url, app.validators[client_etag])
            if source is None:
                self._not_modified(client_etag, {})
                return
            entry = await self._render(plan, key, source)
        elif entry is None:
            # 6b. fetch and render once however many identical requests wait for it
            entry = await app.coalescer.run(key, lambda: self._render(plan, key))
        if client_etag and _etag_matches(client_etag, entry.etag):
            self._not_modified(entry.etag, entry.headers)
            return
        self._send(entry)

    async def _render(self, plan: params.Plan, key: str, source: Source | None = None) -> Entry:
        app = self.app
        if source is None:
            source = await self._fetch(plan.url)
        times: dict[str, float] = {}
        rendered = await app.pool.run(source.body, plan, times=times)
        for stage, seconds in times.items():
            app.metrics.observe(stage, seconds)
        etag = _make_etag(key, source, rendered.body)
        app.remember_validators(etag, source.validators)
        entry = Entry(rendered.body, rendered.content_type, etag, dict(source.headers), time.time())
        await app.cache_set(key, entry)
        return entry

    def _caching_headers(self, etag: str, origin_headers: dict[str, str]) -> None:
        s = self.app.imgproxy_settings
        self.set_header("ETag", etag)
        for name, value in origin_headers.items():
            self.set_header(name, value)
        if s.cache_control:
            self.set_header("Cache-Control", s.cache_control)

    def _not_modified(self, etag: str, origin_headers: dict[str, str]) -> None:
        self._caching_headers(etag, origin_headers)
        self.set_status(304)
        self.finish()

    def _send(self, entry: Entry) -> None:
        self._caching_headers(entry.etag, entry.headers)
        self.set_header("Content-Type", entry.content_type)
        self.app.metrics.sent_bytes.inc(len(entry.body))
        self.finish(entry.body)


class InfoHandler(BaseHandler):
    """What the source is, read from its header: same signing and host rules as images."""

    async def get(self) -> None:
        await self._run(self._serve())

    async def _serve(self) -> None:
        app, s = self.app, self.app.imgproxy_settings
        args = params.parse_query(self.request.query)
        _, url = self._access({**args, "op": "noop"}, s)
        source = await self._fetch(url)
        plan = params.Plan(url, (params.Noop(),), limits=params.Limits(
            s.max_source_pixels, s.max_output_pixels, s.input_formats))
        info = await app.pool.run(source.body, plan, task="describe")
        self.write_json(200, {"url": url, **info})


class HealthHandler(BaseHandler):
    def get(self) -> None:
        stats = self.app.pool.stats()
        status = 200 if stats.alive > 0 else 503
        self.set_header("Cache-Control", "no-store")
        self.write_json(status, {
            "status": "ok" if status == 200 else "unavailable",
            "version": __version__,
            "workers": {"alive": stats.alive, "total": stats.total, "busy": stats.busy},
            "queue": stats.queued,
            "libraries": {
                "pillow": PIL.__version__,
                # libjpeg-turbo's own version; "jpg" alone gives the API level (6.2)
                "libjpeg": features.version("libjpeg_turbo") or features.version("jpg"),
                "libwebp": features.version("webp"),
                "libavif": features.version("avif"),
            },
        })


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", METRICS_CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.app.metrics.render())


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, reason="Not found")


def _make_etag(key: str, source: Source, body: bytes) -> str:
    """Strong ETag of the normalised request and the origin's version of the source.

    Without validators from the origin, the hash of the rendered bytes stands in:
    as strong as the source's hash, and some kilobytes to hash instead of megabytes.
    """
    origin_etag, last_modified = source.validators
    version = origin_etag or last_modified or hashlib.sha256(body).hexdigest()
    return '"%s"' % hashlib.sha256(f"{key}|{version}".encode()).hexdigest()[:40]


def _etag_matches(header: str, etag: str) -> bool:
    return header.strip() == "*" or etag in (t.strip() for t in header.split(","))


def log_request(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    size = handler._headers.get("Content-Length", "-")  # set by finish()
    ms = 1000.0 * handler.request.request_time()
    level = logging.INFO if status < 500 else logging.WARNING
    access_log.log(level, "%s %s %d %.1fms %sB", handler.request.method,
                   handler.request.uri, status, ms, size)


class Application(tornado.web.Application):
    def __init__(self, settings: Settings, pool: Pool, fetcher: Fetcher, cache: Cache | None = None):
        self.imgproxy_settings = settings
        self.pool = pool
        self.fetcher = fetcher
        self.cache = cache
        self.coalescer = Coalescer()
        self.metrics = Metrics(pool.stats)
        self.validators: dict[str, tuple[str | None, str | None]] = {}
        self.inflight = 0
        super().__init__(
            [(r"/", ImageHandler), (r"/info", InfoHandler), (r"/health", HealthHandler),
             (r"/metrics", MetricsHandler)],
            default_handler_class=NotFoundHandler,
            log_function=log_request,
            debug=False,
        )

    async def cache_get(self, key: str) -> Entry | None:
        if self.cache is None:
            return None
        try:
            entry = await self.cache.get(key)
        except CacheError as e:
            log.warning("result cache read failed: %s", e)
            self.metrics.cache.labels("error").inc()
            return None
        self.metrics.cache.labels("hit" if entry else "miss").inc()
        return entry

    async def cache_set(self, key: str, entry: Entry) -> None:
        if self.cache is None:
            return
        try:
            await self.cache.set(key, entry)
        except CacheError as e:
            log.warning("result cache write failed: %s", e)
            self.metrics.cache.labels("error").inc()

    def remember_validators(self, etag: str, validators: tuple[str | None, str | None]) -> None:
        if not any(validators):
            return
        if len(self.validators) >= _MAX_VALIDATORS:
            self.validators.pop(next(iter(self.validators)))  # oldest first
        self.validators[etag] = validators


def make_cache(settings: Settings) -> Cache | None:
    if settings.cache_url:
        return RedisCache(settings.cache_url, settings.cache_ttl, settings.cache_max_entry_bytes)
    if settings.cache_dir:
        return FileCache(settings.cache_dir, settings.cache_max_bytes, settings.cache_ttl)
    return None


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Start workers, listen, and run until SIGTERM or SIGINT; then stop gracefully."""
    # Workers are forked first, before the event loop has started any thread.
    pool = Pool(settings.worker_count, settings.queue_size, settings.process_timeout,
                settings.worker_memory_limit or None)
    pool.start()
    fetcher = Fetcher(settings)
    app = Application(settings, pool, fetcher, make_cache(settings))
    server = HTTPServer(app, xheaders=False, idle_connection_timeout=60,
                        body_timeout=30, max_header_size=16 * 1024)
    server.listen(settings.port, settings.address)
    log.info("imgproxy listening on http://%s:%d with %d workers",
             settings.address, settings.port, settings.worker_count)

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
    await pool.close(grace=max(1.0, deadline - loop.time()))
    await server.close_all_connections()
    fetcher.close()
    log.info("stopped")
