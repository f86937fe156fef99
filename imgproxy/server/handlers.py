"""Request handlers. The image handler reads as the request's steps; policy lives in the steps."""

from __future__ import annotations

import time

import PIL
from PIL import features

from .. import __version__, errors, security
from ..delivery.conditional import NotModified, etag_matches
from ..delivery.keys import result_key
from ..metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..options.build import Options, build_plan, operations
from ..options.query import parse_query
from .replies import BaseHandler


class CountedHandler(BaseHandler):
    """Requests counted in /metrics by status and operation label, and timed."""
    op_label = "-"

    async def get(self) -> None:
        started = time.monotonic()
        try:
            await self.answer(self._serve())
        finally:
            m = self.app.services.metrics
            m.requests.labels(str(self.get_status()), self.op_label).inc()
            m.observe("total", time.monotonic() - started)

    head = get  # load balancers and CDNs check with HEAD

    async def _serve(self) -> None:
        raise NotImplementedError


class ImageHandler(CountedHandler):
    """GET /?url=...: the query API. Subclasses read the request another way."""

    def _read_request(self) -> tuple[tuple[str, ...], str, Options]:
        """The operations, the source and the options, after access control."""
        return security.check_image_request(parse_query(self.request.query), self.request.query,
                                            self.app.imgproxy_settings)

    async def _serve(self) -> None:
        services, settings = self.app.services, self.app.imgproxy_settings
        ops, source, options = self._read_request()
        # Only validated names, as a set: the label takes at most 15 values whatever op= says.
        self.op_label = ",".join(sorted(set(ops)))
        plan = build_plan(options, settings)
        plan = self.negotiate(plan)
        key = result_key(source, plan, services.render.imaging)
        client_etag = self.request.headers.get("If-None-Match")
        result = await services.results.get(key, source, plan, client_etag)
        if isinstance(result, NotModified) or etag_matches(client_etag, result.etag):
            self._not_modified(result.etag, result.headers)
        else:
            self._send(result.etag, result.headers, result.content_type, result.body)

    def _caching_headers(self, etag: str, origin_headers: dict[str, str]) -> None:
        self.set_header("ETag", etag)
        for name, value in origin_headers.items():
            self.set_header(name, value)
        if self.app.imgproxy_settings.cache_control:
            self.set_header("Cache-Control", self.app.imgproxy_settings.cache_control)

    def _not_modified(self, etag: str, origin_headers: dict[str, str]) -> None:
        self._caching_headers(etag, origin_headers)
        self.set_status(304)
        self.finish()

    def _send(self, etag: str, origin_headers: dict[str, str], content_type: str, body: bytes) -> None:
        self._caching_headers(etag, origin_headers)
        self.set_header("Content-Type", content_type)
        self.app.services.metrics.sent_bytes.inc(len(body))
        self.finish(body)


class PathImageHandler(ImageHandler):
    """GET /220x220/photos/cat.jpg, /220x220!/..., /<preset>/...: sizes and presets in the path."""

    def _read_request(self) -> tuple[tuple[str, ...], str, Options]:
        settings = self.app.imgproxy_settings
        request = security.check_path_request(self.request.path, parse_query(self.request.query),
                                              self.request.query, settings)
        return operations(request.options, settings), request.source, request.options


class InfoHandler(CountedHandler):
    """What the source is, read from its header: same signing and host rules as images."""
    op_label = "info"

    async def _serve(self) -> None:
        render = self.app.services.render
        options = parse_query(self.request.query)
        url = security.check_source_request(options, self.request.query, self.app.imgproxy_settings)
        info = await render.describe(await render.load(url))
        self.write_json(200, {"url": url, **info})


class HealthHandler(BaseHandler):
    def get(self) -> None:
        stats = self.app.services.pool.stats()
        state = "unavailable" if stats.alive == 0 else "failing" if stats.failing else "ok"
        self.set_header("Cache-Control", "no-store")
        self.write_json(200 if state == "ok" else 503, {
            "status": state,
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

    head = get


class MetricsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", METRICS_CONTENT_TYPE)
        self.set_header("Cache-Control", "no-store")
        self.finish(self.app.services.metrics.render())

    head = get


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise errors.not_found("Not found")


ROUTES = [(r"/", ImageHandler), (r"/info", InfoHandler), (r"/health", HealthHandler),
          (r"/metrics", MetricsHandler),
          (r"/[^/]+/.+", PathImageHandler)]  # after the others: a size or preset, then the source path
