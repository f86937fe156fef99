"""What every reply has: safety headers, JSON bodies, and the one place errors become answers."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import tornado.web

from ..delivery.negotiate import choose_format
from ..errors import ProxyError
from ..plan import Plan

log = logging.getLogger("imgproxy.server")
access_log = logging.getLogger("imgproxy.access")

# Sent with every reply: the bytes are never to be sniffed or run as a document.
SAFETY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
}


class BaseHandler(tornado.web.RequestHandler):
    vary: str | None = None  # kept on error replies too

    @property
    def app(self) -> Any:
        """The server.app.Application (not imported here: app imports the handlers)."""
        return self.application

    def set_default_headers(self) -> None:
        self.clear_header("Server")
        for name, value in SAFETY_HEADERS.items():
            self.set_header(name, value)

    def compute_etag(self) -> None:
        """No automatic ETag: only images have one (a 304 for /health would hide its state)."""
        return None

    def negotiate(self, plan: Plan) -> Plan:
        """The plan with the format this request's Accept decides; Vary: Accept when it does."""
        plan, varies = choose_format(plan, self.request.headers.get("Accept"))
        if varies:
            self.vary = "Accept"
            self.set_header("Vary", "Accept")
        return plan

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
        if self.vary:  # send_error cleared it; errors vary as well
            self.set_header("Vary", self.vary)
        # A CDN must not pin a transient failure for long.
        self.set_header("Cache-Control", self.app.imgproxy_settings.error_cache_control)
        if status == 503:
            self.set_header("Retry-After", "1")
        body: dict[str, Any] = {"status_code": status, "error_code": code, "error": reason}
        if getattr(error, "msg", None):  # the job API answers in imgserve's form too
            body = {"msg": error.msg, **({"code": code} if error.msg == "request invalid" else {}), **body}
        self.write_json(status, body)

    def log_exception(self, typ, value, tb) -> None:
        if isinstance(value, ProxyError):
            log.info("%s %s: %s", self.request.method, self.request.uri, value)
        else:
            super().log_exception(typ, value, tb)

    def finish(self, chunk=None):
        self._flushed = super().finish(chunk)
        return self._flushed

    async def answer(self, coro) -> None:
        """Run a handler's work; a ProxyError becomes its JSON answer. A graceful stop waits for these."""
        self.app.inflight += 1
        try:
            await coro
        except ProxyError as e:
            self.send_error(e.status, exc_info=(type(e), e, e.__traceback__))
        finally:
            flushed = getattr(self, "_flushed", None)
            if flushed is not None:
                try:
                    await flushed
                except Exception:  # the client went away: nothing left to wait for
                    pass
            else:
                await asyncio.sleep(0)
            self.app.inflight -= 1


class CappedBody:
    """For a @stream_request_body handler: the body kept as it arrives, up to a limit. Past it
    the rest is dropped and the handler answers `too_large()` (413) instead of the
    connection being cut, whether or not the client sent a Content-Length."""

    def too_large(self) -> ProxyError:
        raise NotImplementedError

    def start_body(self, limit: int) -> None:
        """In prepare(); a Content-Length over `limit` is refused before the body is read."""
        self._body, self._body_limit, self._over = bytearray(), limit, False
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            self._over = True
            raise self.too_large()

    def data_received(self, chunk: bytes) -> None:
        if self._over:
            return
        if len(self._body) + len(chunk) > self._body_limit:
            self._over, self._body = True, bytearray()
            return
        self._body.extend(chunk)

    def received(self) -> bytes:
        """The whole body, or the 413 when it was over the limit."""
        if self._over:
            raise self.too_large()
        return bytes(self._body)


def log_request(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    size = handler._headers.get("Content-Length", "-")  # set by finish()
    ms = 1000.0 * handler.request.request_time()
    level = logging.INFO if status < 500 else logging.WARNING
    access_log.log(level, "%s %s %d %.1fms %sB", handler.request.method,
                   handler.request.uri, status, ms, size)
