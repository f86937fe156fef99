"""The upload store's routes: POST /images, GET /images/<id>[/<variant or size>[/<file name>]],
DELETE /images/<id>, and browsing. Writes and browsing need `store_token` (Bearer)."""

from __future__ import annotations

import functools
import hmac
from importlib import resources
from urllib.parse import unquote

import tornado.httputil
import tornado.web

from .. import errors, security
from ..delivery.conditional import etag_matches
from ..errors import Code, ProxyError
from ..options.presets import layered
from ..options.query import parse_query
from ..store.ids import PATTERN as ID
from ..store.records import document, image_path, summary
from ..store.service import Stored
from ..store.sizes import is_size
from .replies import BaseHandler, CappedBody

IMMUTABLE = "public, max-age=31536000, immutable"  # an ID's bytes never change
FORM_OVERHEAD = 64 * 1024  # a multipart form's boundaries and fields, beyond the image itself
MAX_PAGE = 1000


class StoreHandler(BaseHandler):
    @property
    def store(self):
        return self.app.services.store

    def on_finish(self) -> None:
        """Counted in /metrics like image requests, under op="store"."""
        metrics = self.app.services.metrics
        metrics.requests.labels(str(self.get_status()), "store").inc()
        metrics.observe("total", self.request.request_time())

    def check_token(self) -> None:
        given = self.request.headers.get("Authorization", "")
        scheme, _, token = given.partition(" ")
        expected = self.app.imgproxy_settings.store_token
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            self._authenticate = True  # kept on the error reply (set_default_headers)
            raise errors.unauthorized("Missing or invalid store token (Authorization: Bearer ...)")

    def check_browsing(self) -> None:
        if not self.app.imgproxy_settings.store_public_browsing:
            self.check_token()

    def set_default_headers(self) -> None:
        super().set_default_headers()
        if getattr(self, "_authenticate", False):
            self.set_header("WWW-Authenticate", 'Bearer realm="imgproxy"')

    def reply_json(self, status: int, body: dict) -> None:
        self.set_header("Cache-Control", "no-store")
        self.write_json(status, body)

    def send_stored(self, stored: Stored | str) -> None:
        etag = stored if isinstance(stored, str) else stored.etag
        self.set_header("ETag", etag)
        self.set_header("Cache-Control", IMMUTABLE)
        if isinstance(stored, str) or etag_matches(self.request.headers.get("If-None-Match"), etag):
            self.set_status(304)
            self.finish()
            return
        self.set_header("Content-Type", stored.content_type)
        self.app.services.metrics.sent_bytes.inc(len(stored.body))
        self.finish(stored.body)


@tornado.web.stream_request_body
class ImagesHandler(CappedBody, StoreHandler):
    """POST /images: an upload (raw body or a form's `image` field); GET /images: a page of IDs."""

    def prepare(self) -> None:
        limit = self.app.imgproxy_settings.max_upload_bytes + FORM_OVERHEAD
        if self.request.method == "POST":
            self.check_token()  # before a byte of the body is read
            # Room to read (and drop) a chunked body somewhat over the limit, so it gets its 413.
            self.request.connection.set_max_body_size(2 * limit)
        self.start_body(limit)

    def too_large(self) -> ProxyError:
        return errors.upload_too_large(f"An upload is at most {self.app.imgproxy_settings.max_upload_bytes} bytes")

    async def post(self) -> None:
        await self.answer(self._upload())

    async def _upload(self) -> None:
        body, title = self._image_and_title(self.received())
        if len(body) > self.app.imgproxy_settings.max_upload_bytes:
            raise self.too_large()
        background = self.get_query_argument("async", "0") not in ("0", "", "false")
        record = await self.store.upload(body, title, background)
        self.set_header("Location", image_path(record.id))
        doc = document(record, self.app.imgproxy_settings.store_serve_original)
        self.reply_json(202 if record.state == "pending" else 201, doc)

    def _image_and_title(self, body: bytes) -> tuple[bytes, str | None]:
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            fields: dict = {}
            files: dict = {}
            tornado.httputil.parse_body_arguments(content_type, body, fields, files)
            if not files.get("image"):
                raise errors.bad_request(Code.STORE, "The form has no file field named image")
            title = fields.get("title", [b""])[0].decode("utf-8", "replace") or None
            return files["image"][0].body, title
        return body, self.get_query_argument("title", None)

    async def get(self) -> None:
        await self.answer(self._list())

    head = get

    async def _list(self) -> None:
        self.check_browsing()
        after = self.get_query_argument("after", None) or None
        limit_text = self.get_query_argument("limit", "50")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE:
            raise errors.bad_request(Code.STORE, f"limit must be a whole number from 1 to {MAX_PAGE}")
        limit = int(limit_text)
        records = await self.store.records.page(after, limit + 1)
        if records is None:
            raise errors.not_found("No such image (after=)")
        more = len(records) > limit
        records = records[:limit]
        self.reply_json(200, {"images": [summary(r) for r in records],
                              "next": records[-1].id if more else None})


class ImageHandler(StoreHandler):
    """GET /images/<id>: the record as JSON, or with query-API parameters the image rendered;
    DELETE /images/<id>."""

    async def get(self, image_id: str) -> None:
        await self.answer(self._get(image_id))

    head = get

    async def _get(self, image_id: str) -> None:
        settings, store = self.app.imgproxy_settings, self.store
        options = {k: v for k, v in parse_query(self.request.query).items() if k != "sig"}
        security.check_store_read(self.request.path, self.request.query, settings, rendering=bool(options))
        record = await store.record(image_id)
        if not options:
            self.reply_json(200, document(record, settings.store_serve_original))
            return
        if "url" in options:
            raise errors.bad_request(Code.URL, "A stored image is its own source: no url=")
        plan = self.negotiate(store.query_plan(layered(options, settings, options.get("preset") or None)))
        name = "q-" + store.query_name(plan)
        self.send_stored(await store.image(record, name, plan, self.request.headers.get("If-None-Match")))

    async def delete(self, image_id: str) -> None:
        await self.answer(self._delete(image_id))

    async def _delete(self, image_id: str) -> None:
        self.check_token()
        await self.store.delete(image_id)
        self.set_status(204)
        self.finish()


class StoredImageHandler(StoreHandler):
    """GET /images/<id>/<original | variant | WxH | WxH!>[/<file name>]."""

    async def get(self, image_id: str, name: str) -> None:
        await self.answer(self._get(image_id, unquote(name)))

    head = get

    async def _get(self, image_id: str, name: str) -> None:
        settings, store = self.app.imgproxy_settings, self.store
        size = name if is_size(name) else None
        security.check_store_read(self.request.path, self.request.query, settings, size=size)
        record = await store.record(image_id)
        if name == "original":
            if not settings.store_serve_original:
                raise errors.not_found("Originals are not served")
            self.send_stored(await store.original(record))
            return
        if size is not None:
            plan = self.negotiate(store.size_plan(size))
        else:
            plan = store.variant_plan(name)
        self.send_stored(await store.image(record, name, plan, self.request.headers.get("If-None-Match")))


class NeighbourHandler(StoreHandler):
    """GET /images/<id>/next and /previous: {"id": ...} in upload order, or 404 at the end."""

    async def get(self, image_id: str, direction: str) -> None:
        await self.answer(self._get(image_id, direction))

    async def _get(self, image_id: str, direction: str) -> None:
        self.check_browsing()
        found = await self.store.records.neighbour(image_id, later=direction == "next")
        if found is None:
            raise errors.not_found(f"No {direction} image")
        self.reply_json(200, {"id": found})


class RandomHandler(StoreHandler):
    async def get(self) -> None:
        await self.answer(self._get())

    async def _get(self) -> None:
        self.check_browsing()
        found = await self.store.records.random()
        if found is None:
            raise errors.not_found("The store is empty")
        self.reply_json(200, {"id": found})


class BrowsePageHandler(BaseHandler):
    """GET /images/browse (and its .js and .css): the upload-and-browse page, public itself;
    its script asks for the token and sends it in headers only (server/pages/)."""

    FILES = {None: ("browse.html", "text/html; charset=utf-8"),
             ".js": ("browse.js", "text/javascript; charset=utf-8"),
             ".css": ("browse.css", "text/css; charset=utf-8")}
    # Only what the page uses: its own script and style sheet, thumbnails, and API calls.
    CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
           "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", self.CSP)
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-cache")  # revalidated by ETag: a new release shows at once

    def compute_etag(self):
        return tornado.web.RequestHandler.compute_etag(self)  # the body's hash; 304 when it matches

    def get(self, suffix: str | None) -> None:
        name, content_type = self.FILES[suffix]
        self.set_header("Content-Type", content_type)
        self.finish(_page_file(name))

    head = get


@functools.cache
def _page_file(name: str) -> bytes:
    return resources.files(__package__).joinpath("pages", name).read_bytes()


ROUTES = [
    (r"/images/browse(\.js|\.css)?", BrowsePageHandler),  # before /images/<id>: "browse" is a store word
    (r"/images", ImagesHandler),
    (r"/images/random", RandomHandler),
    (rf"/images/({ID})", ImageHandler),
    (rf"/images/({ID})/(next|previous)", NeighbourHandler),
    (rf"/images/({ID})/([^/]+)(?:/[^/]+)?", StoredImageHandler),
]
