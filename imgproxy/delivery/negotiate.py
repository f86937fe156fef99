"""Format negotiation for fmt=auto: the modern format the client's Accept prefers.

Decided before anything is fetched, so the result key names the format: AVIF or
WebP when the client takes one (highest q first; AVIF before WebP at equal q:
smaller at the same visual quality), else the plan keeps AUTO and the worker picks
a format every browser shows (it knows whether the image has alpha).
"""

from __future__ import annotations

import dataclasses

from PIL import Image

from ..plan import AUTO, Plan

MODERN = (("image/avif", "AVIF"), ("image/webp", "WEBP"))  # in order of preference


def accepted(accept_header: str | None) -> tuple[str, ...]:
    """The modern formats the Accept header lists with q > 0, most wanted first."""
    if not accept_header:
        return ()
    quality: dict[str, float] = {}
    for item in accept_header.split(","):
        kind, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(1.0, max(0.0, float(value)))
                except ValueError:
                    q = 0.0
        quality[kind.lower()] = q
    wanted = [(quality.get(mime, 0.0), -rank, fmt) for rank, (mime, fmt) in enumerate(MODERN)]
    return tuple(fmt for q, _, fmt in sorted(wanted, reverse=True) if q > 0.0)


def choose_format(plan: Plan, accept_header: str | None) -> tuple[Plan, bool]:
    """The plan with fmt=auto decided where the client allows, and whether the reply varies on Accept."""
    if plan.save.format != AUTO:
        return plan, False
    Image.init()
    fmt = next((f for f in accepted(accept_header) if f in Image.SAVE), AUTO)
    return dataclasses.replace(plan, save=dataclasses.replace(plan.save, format=fmt)), True
