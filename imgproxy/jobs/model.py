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
