"""The job API's routes: POST /jobs (202 at once), GET /jobs/<id>. Every request is signed:
X-Signature is the hex HMAC-SHA256 (job_key) of the raw body for POST, of the path for GET."""

from __future__ import annotations

import secrets
import time

import tornado.web

from .. import errors, signature
from ..errors import Code
from ..jobs import templates
from ..jobs.model import JobRecord, status_document
from ..jobs.spec import MAX_BODY, parse_job, plan_for, raster_sizes
from ..urls import check_url, host_allowed
from .replies import BaseHandler


@tornado.web.stream_request_body
class JobsHandler(BaseHandler):
    """POST /jobs: check, store durably, answer 202; the runner does the rest."""

    def prepare(self) -> None:
        self._body = bytearray()
        self._too_large = False
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            self._too_large = True  # answered before the body is read further
            raise errors.job_too_large(f"A job is at most {MAX_BODY} bytes")

    def data_received(self, chunk: bytes) -> None:
        if len(self._body) + len(chunk) > MAX_BODY:
            self._too_large = True
            return
        self._body.extend(chunk)

    async def post(self) -> None:
        await self.answer(self._serve())

    async def _serve(self) -> None:
        if self._too_large:
            raise errors.job_too_large(f"A job is at most {MAX_BODY} bytes")
        settings, services = self.app.imgproxy_settings, self.app.services
        body = bytes(self._body)
        if not signature.verify_job(settings.job_key, body, self.request.headers.get("X-Signature")):
            raise errors.forbidden(Code.SIGNATURE, "Missing or invalid X-Signature")
        spec = parse_job(body, settings)
        check_job_source(spec.source, settings)
        destinations = await self._destinations(spec)
        job_id = secrets.token_hex(16)  # 128 random bits
        record = JobRecord(job_id, spec, destinations=destinations, created=time.time())
        await services.jobs.add(record)
        services.job_runner.wake()
        self.set_header("Location", f"/jobs/{job_id}")
        reply = {"id": job_id, "status": record.status, "dstURL": destinations[0], "statusURL": f"/jobs/{job_id}"}
        if len(spec.outputs) > 1:
            reply["outputs"] = [{"dstURL": d} for d in destinations]
        self.write_json(202, reply)

    async def _destinations(self, spec) -> list[str]:
        """Every destination as it will be written: exact, so the source's header is read
        first when a name depends on the result's size or format."""
        settings, render = self.app.imgproxy_settings, self.app.services.render
        check = self.app.services.check_destination
        names = [o.destination for o in spec.outputs]
        predicted = None
        placeholders = any(o.placeholder for o in spec.outputs)
        if placeholders or any(templates.needs_size(n) or "{$ext" in n for n in names):
            plans = [plan_for(o, spec.operation, settings) for o in spec.outputs]
            if spec.operation == "rasterize":
                predicted = await render.predict_raster(await render.load(spec.source), raster_sizes(spec), plans)
            else:
                predicted = await render.predict(await render.load(spec.source), plans)
        expanded = []
        for i, name in enumerate(names):
            width, height, fmt = predicted[i] if predicted else (0, 0, "")
            url = templates.expand(name, width, height, spec.source, fmt)
            check(url, settings)
            expanded.append(url)
        if spec.callback:
            check(spec.callback, settings)
        for output, url, (width, height, fmt) in zip(spec.outputs, expanded, predicted or []):
            if output.placeholder:  # imgserve's: something at the name at once; the result replaces it
                image = await render.placeholder(width, height, fmt)
                await self.app.services.deliver(url, image.body, image.content_type, settings=settings,
                                                method=output.method, field_name=output.field_name)
        return expanded


def check_job_source(url: str, settings) -> None:
    """http(s) sources take the query API's URL rules; http(s) and ftp(s) hosts must be
    in allowed_hosts when it is set (file sources stay below job_file_root)."""
    if url.lower().startswith(("http://", "https://")):
        try:
            check_url(url)
        except errors.ProxyError as e:
            raise errors.job_invalid(e.reason, e.code) from None
    if not url.lower().startswith("file:") and settings.allowed_hosts and not host_allowed(url, settings.allowed_hosts):
        raise errors.forbidden(Code.HOST, "Source host is not in allowed_hosts")


class JobStatusHandler(BaseHandler):
    """GET /jobs/<id>: the job's status document."""

    async def get(self, job_id: str) -> None:
        await self.answer(self._serve(job_id))

    async def _serve(self, job_id: str) -> None:
        settings = self.app.imgproxy_settings
        if not signature.verify_job(settings.job_key, self.request.path, self.request.headers.get("X-Signature")):
            raise errors.forbidden(Code.SIGNATURE, "Missing or invalid X-Signature")
        record = await self.app.services.jobs.get(job_id)
        if record is None:
            raise errors.not_found("No such job")
        self.set_header("Cache-Control", "no-store")
        self.write_json(200, status_document(record))


ROUTES = [(r"/jobs", JobsHandler), (r"/jobs/([0-9a-f]{32})", JobStatusHandler)]
