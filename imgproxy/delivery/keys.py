"""Names of results: the cache key before rendering, the ETag after.

Both hash a canonical text of what was decided: the source, the plan's canonical
form (operations and save options by value, not by how the client spelled them),
and the quality the encoder will use. The ETag is made once the format is known,
so identical bytes get one ETag however the format was asked for.
"""

from __future__ import annotations

import dataclasses
import hashlib

from ..imaging.settings import ImagingSettings
from ..plan import AUTO, Plan

KEY_VERSION = 1  # bump when the same key could name different bytes


def _quality(plan: Plan, imaging: ImagingSettings) -> object:
    save = plan.save
    if isinstance(save.quality, int):
        return save.quality
    if save.format not in (None, AUTO) and save.quality is None:
        return imaging.quality_for(None, save.format)
    return [save.quality, *imaging.qualities]  # decided by the worker from these


def _text(ref: str, plan: Plan, imaging: ImagingSettings) -> str:
    return f"{KEY_VERSION}\n{ref}\n{plan.canonical()}\n{_quality(plan, imaging)}"


def result_key(ref: str, plan: Plan, imaging: ImagingSettings) -> str:
    return hashlib.sha256(_text(ref, plan, imaging).encode()).hexdigest()


def make_etag(ref: str, plan: Plan, output_format: str, imaging: ImagingSettings, version: str) -> str:
    """Strong ETag of the decided plan in `output_format` and the source's `version`."""
    if not plan.is_noop:
        plan = dataclasses.replace(plan, save=dataclasses.replace(plan.save, format=output_format))
    text = f"{_text(ref, plan, imaging)}\n{version}"
    return '"%s"' % hashlib.sha256(text.encode()).hexdigest()[:40]
