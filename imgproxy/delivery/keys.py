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


def _decided(plan: Plan, imaging: ImagingSettings) -> tuple[Plan, tuple]:
    """The plan with the quality the encoder will use, where that is known before the
    source is; else the default qualities it will choose from."""
    save = plan.save
    if (save.format in (None, AUTO) and not isinstance(save.quality, int)) or save.quality == "keep":
        return plan, imaging.qualities  # the source's format (or tables) decide
    quality = imaging.quality_for(save.quality, save.format)
    return dataclasses.replace(plan, save=dataclasses.replace(save, quality=quality)), ()


def _text(ref: str, plan: Plan, imaging: ImagingSettings) -> str:
    plan, qualities = _decided(plan, imaging)
    return f"{KEY_VERSION}\n{ref}\n{plan.canonical()}\n{qualities}"


def result_key(ref: str, plan: Plan, imaging: ImagingSettings) -> str:
    return hashlib.sha256(_text(ref, plan, imaging).encode()).hexdigest()


def make_etag(ref: str, plan: Plan, output_format: str, imaging: ImagingSettings, version: str) -> str:
    """Strong ETag of the decided plan in `output_format` and the source's `version`."""
    if not plan.is_noop:
        plan = dataclasses.replace(plan, save=dataclasses.replace(plan.save, format=output_format))
    text = f"{_text(ref, plan, imaging)}\n{version}"
    return '"%s"' % hashlib.sha256(text.encode()).hexdigest()[:40]
