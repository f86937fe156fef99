"""Format negotiation for fmt=auto: the best modern format the client's Accept lists.

The choice between those and the source's own format is made in the worker,
which knows whether the image has alpha; here we only read what the client takes.
"""

from __future__ import annotations

import dataclasses

from .params import AUTO, Plan

# In order of preference: AVIF is smaller than WebP at the same visual quality.
MODERN = (("image/avif", "AVIF"), ("image/webp", "WEBP"))


def accepted(accept_header: str | None) -> tuple[str, ...]:
    """The modern formats the Accept header lists with a non-zero q, best first."""
    if not accept_header:
        return ()
    media = {}
    for item in accept_header.split(","):
        kind, *options = (part.strip() for part in item.split(";"))
        q = 1.0
        for option in options:
            name, _, value = option.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media[kind.lower()] = q
    return tuple(fmt for mime, fmt in MODERN if media.get(mime, 0.0) > 0.0)


def negotiate(plan: Plan, accept_header: str | None) -> tuple[Plan, bool]:
    """The plan with the client's formats filled in, and whether the reply varies on Accept."""
    if plan.save.format != AUTO:
        return plan, False
    save = dataclasses.replace(plan.save, accepts=accepted(accept_header))
    return dataclasses.replace(plan, save=save), True
