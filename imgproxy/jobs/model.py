"""A job as the API takes it (JobSpec) and as the queue keeps it (JobRecord)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


@dataclass(frozen=True, slots=True)
class Output:
    options: dict[str, str]  # image options by their query names, checked by build_plan
    destination: str  # dstURL, a template ({$width}, {$basename}, ...)
    method: str = "POST"  # for http(s) destinations: POST (a form upload) or PUT
    field_name: str = "file"  # the form field of a POST upload
    placeholder: bool = False


@dataclass(frozen=True, slots=True)
class JobSpec:
    operation: str  # "resize" or "rasterize"
    source: str  # srcURL: http(s), ftp(s) or file
    outputs: tuple[Output, ...]
    callback: str | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> JobSpec:
        data = json.loads(text)
        return cls(data["operation"], data["source"], tuple(Output(**o) for o in data["outputs"]),
                   data.get("callback"))


@dataclass(slots=True)
class JobRecord:
    id: str
    spec: JobSpec
    status: str = PENDING
    attempts: int = 0
    error: dict[str, Any] | None = None  # {"status_code", "error_code", "error"}
    results: list[dict[str, Any]] = field(default_factory=list)  # per output
    destinations: list[str] = field(default_factory=list)  # expanded when known
    created: float = 0.0
    started: float | None = None
    finished: float | None = None


def status_document(record: JobRecord) -> dict[str, Any]:
    """What GET /jobs/<id> answers, and what a callbackURL receives when the job ends."""
    spec = record.spec
    first = record.results[0] if record.results else None
    doc: dict[str, Any] = {
        "id": record.id, "status": record.status, "operationType": spec.operation, "srcURL": spec.source,
        "dstURL": record.destinations[0] if record.destinations else spec.outputs[0].destination,
        "attempts": record.attempts, "error": record.error,
        "result": ({k: first[k] for k in ("width", "height", "bytes", "content_type")} if first else None),
        "created": record.created, "started": record.started, "finished": record.finished,
    }
    if len(spec.outputs) > 1:
        doc["outputs"] = record.results or [{"dstURL": d} for d in record.destinations]
    return doc
