"""The Tornado application: request handlers, and the one place errors become answers.

A request flows one way: params -> security -> fetch -> pool (imaging) -> respond.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer

from . import params, security
from .config import Settings
from .errors import ProxyError
from .fetch import Fetcher
from .pool import Pool

log = logging.getLogger("imgproxy.server")
access_log = logging.getLogger("imgproxy.access")

# Sent with every reply: the bytes are never to be sniffed or run as a document.
SAFETY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}


class BaseHandler(tornado.web.RequestHandler):
    @property
    def settings_(self) -> Settings:
        return self.application.imgproxy_settings

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
        if status == 503:
            self.set_header("Retry-After", "1")
        self.write_json(status, {"status_code": status, "error_code": code, "error": reason})

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, ProxyError):
            log.info("%s %s: %s", self.request.method, self.request.uri, value)
        else:
            super().log_exception(typ, value, tb)

    async def _run(self, coro) -> None:
        try:
            await coro
        except ProxyError as e:
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))


class ImageHandler(BaseHandler):
    async def get(self) -> None:
        await self._run(self._serve())

    async def _serve(self) -> None:
        s = self.settings_
        app = self.application
        raw_query = self.request.query
        args = params.parse_query(raw_query)
        ops, url = params.parse_target(args, s)
        security.authorize(raw_query, args.get("client"), url, s)
        plan = params.parse_plan(args, ops, url, s)
        app.pool.check_capacity()  # refuse before fetching when even the queue is full
        source = await app.fetcher.fetch(plan.url)
        rendered = await app.pool.run(source.body, plan)
        self.set_header("Content-Type", rendered.content_type)
        for name, value in source.headers.items():
            self.set_header(name, value)
        self.finish(rendered.body)


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, reason="Not found")


def log_request(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    size = handler._headers.get("Content-Length", "-")  # set by finish()
    ms = 1000.0 * handler.request.request_time()
    level = logging.INFO if status < 500 else logging.WARNING
    access_log.log(level, "%s %s %d %.1fms %sB", handler.request.method,
                   handler.request.uri, status, ms, size)


class Application(tornado.web.Application):
    def __init__(self, settings: Settings, pool: Pool, fetcher: Fetcher):
        self.imgproxy_settings = settings
        self.pool = pool
        self.fetcher = fetcher
        super().__init__(
            [(r"/", ImageHandler)],
            default_handler_class=NotFoundHandler,
            log_function=log_request,
            debug=False,
        )


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Start workers, listen, and run until SIGTERM or SIGINT; then stop gracefully."""
    # Workers are forked first, before the event loop has started any thread.
    pool = Pool(settings.worker_count, settings.queue_size, settings.process_timeout,
                settings.worker_memory_limit or None)
    pool.start()
    fetcher = Fetcher(settings)
    app = Application(settings, pool, fetcher)
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
    await pool.close(grace=settings.process_timeout)
    await server.close_all_connections()
    fetcher.close()
    log.info("stopped")
