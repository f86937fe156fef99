"""An image in the store: its record, kept by a metadata store, and the JSON clients see."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

PENDING, READY, FAILED = "pending", "ready", "failed"


@dataclass(slots=True)
class ImageRecord:
    id: str
    width: int  # as displayed: after the EXIF orientation
    height: int
    format: str  # Pillow's name, or SVG
    bytes: int
    created: float
    title: str | None = None
    state: str = PENDING
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> width, height, format, bytes
    error: str | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> ImageRecord:
        return cls(**json.loads(text))


def image_path(image_id: str) -> str:
    return f"/images/{image_id}"


def document(record: ImageRecord, serve_original: bool) -> dict[str, Any]:
    """What POST /images and GET /images/<id> answer."""
    path = image_path(record.id)
    doc: dict[str, Any] = {
        "id": record.id, "state": record.state, "width": record.width, "height": record.height,
        "format": record.format.lower(), "bytes": record.bytes,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
        "title": record.title, "url": f"{path}/original" if serve_original else None,
        "variants": {name: {"url": f"{path}/{name}", "width": v["width"], "height": v["height"],
                            "format": v["format"].lower(), "bytes": v.get("bytes")}
                     for name, v in record.variants.items()},
    }
    if record.state == PENDING:
        doc["statusURL"] = path
    if record.error:
        doc["error"] = record.error
    return doc


def summary(record: ImageRecord) -> dict[str, Any]:
    """One image in a listing."""
    full = document(record, False)
    return {k: full[k] for k in ("id", "width", "height", "format", "title", "created")}
