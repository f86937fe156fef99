"""Presets: named parameter sets from the config, under a request's own options.

A request's options are layered: the `default` preset (when defined), then the
named preset (`preset=` on the query API, or a path URL's first segment), then
what the request itself says. Presets are checked at start-up by build_plan,
the same code that checks requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from ..errors import Code, bad_request
from .build import Options, build_plan
from .query import parse_query

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings

DEFAULT = "default"


def preset_options(name: str, settings: Settings) -> dict[str, str]:
    query = dict(settings.presets).get(name)
    if query is None:
        raise bad_request(Code.OPERATION, f"Unknown preset: {name}")
    return parse_query(query)


def layered(options: Options, settings: Settings, preset: str | None = None) -> dict[str, str]:
    """The default preset, then `preset`, then `options` (without its own `preset=`)."""
    merged: dict[str, str] = {}
    if DEFAULT in dict(settings.presets):
        merged.update(preset_options(DEFAULT, settings))
    if preset:
        merged.update(preset_options(preset, settings))
    merged.update({k: v for k, v in options.items() if k != "preset"})
    return merged


def check_presets(settings: Settings) -> None:
    """Every preset builds a plan, alone and over the default; a bad one stops start-up (ValueError)."""
    for name, _ in settings.presets:
        try:
            # The default sits under requests, which give the size: check it with one.
            options: Mapping[str, str] = (layered({"w": "1"}, settings) if name == DEFAULT
                                          else layered({}, settings, name))
            if "url" in options:
                raise bad_request(Code.URL, "a preset cannot name the source")
            build_plan(options, settings)
        except Exception as e:
            reason = getattr(e, "reason", str(e))
            raise ValueError(f"preset {name!r} is invalid: {reason}") from None
