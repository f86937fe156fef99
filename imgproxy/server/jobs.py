"""The job API's routes: POST /jobs (202 at once), GET /jobs/<id>. Every request is signed:
X-Signature is the hex HMAC-SHA256 (job_key) of the raw body for POST, of the path for GET."""

from __future__ import annotations

import secrets
import time

import tornado.web

from .. import errors, signature
from ..errors import Code, ProxyError
from ..jobs import destinations, templates
from ..jobs.model import JobRecord, status_document
from ..jobs.spec import MAX_BODY, check_source, parse_job, plan_for, raster_sizes
from .replies import BaseHandler, CappedBody


@tornado.web.stream_request_body
class JobsHandler(CappedBody, BaseHandler):
    """POST /jobs: check, store durably, answer 202; the runner does the rest."""

    def prepare(self) -> None:
        self.start_body(MAX_BODY)

    def too_large(self) -> ProxyError:
        return errors.job_too_large(f"A job is at most {MAX_BODY} bytes")

    async def post(self) -> None:
        await self.answer(self._serve())

    async def _serve(self) -> None:
        body = self.received()
        settings, services = self.app.imgproxy_settings, self.app.services
        if not signature.verify_job(settings.job_key, body, self.request.headers.get("X-Signature")):
            raise errors.forbidden(Code.SIGNATURE, "Missing or invalid X-Signature")
        spec = parse_job(body, settings)
        check_source(spec.source, settings)
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
        names = [o.destination for o in spec.outputs]
        predicted = None
        placeholders = any(o.placeholder for o in spec.outputs)
        if placeholders or any(templates.needs_result(n) for n in names):
            plans = [plan_for(o, spec.operation, settings) for o in spec.outputs]
            if spec.operation == "rasterize":
                predicted = await render.predict_raster(await render.load(spec.source), raster_sizes(spec), plans)
            else:
                predicted = await render.predict(await render.load(spec.source), plans)
        expanded = []
        for i, name in enumerate(names):
            width, height, fmt = predicted[i] if predicted else (0, 0, "")
            url = templates.expand(name, width, height, spec.source, fmt)
            destinations.check_destination(url, settings)
            expanded.append(url)
        if spec.callback:
            destinations.check_destination(spec.callback, settings)
        for output, url, (width, height, fmt) in zip(spec.outputs, expanded, predicted or []):
            if output.placeholder:  # imgserve's: something at the name at once; the result replaces it
                image = await render.placeholder(width, height, fmt)
                await destinations.deliver(url, image.body, image.content_type, settings=settings,
                                           method=output.method, field_name=output.field_name)
        return expanded


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
