"""Options (image parameters by their query names) -> Plan, every value rule in one place.

Whatever the front-end (a query string today, a path or a JSON job next), the
options are a mapping of the query API's names to text, and `build_plan` is the
one function that checks them and builds the Plan. The order of the checks is
Pilbox 1.3.4's, so a request with several faults gets Pilbox's answer: op -> url
-> (signature, client, host: security.py) -> w/h -> deg/rect -> the rest.
Operation parameters are read only when their operation is asked for; save
options always.

Adding an operation: its parameters in PARAMETERS, and one builder in BUILDERS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..errors import Code, bad_request
from ..plan import Noop, Operation, Plan, Resize, Rotate, Save
from ..sources.paths import normalise_path
from ..urls import check_url
from . import values as v

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings

Options = Mapping[str, str]


def _given(options: Options, name: str) -> str | None:
    value = options.get(name)
    return value if value else None


def operations(options: Options, settings: Settings) -> tuple[str, ...]:
    """The operation names asked for (or the default), allowed and not too many."""
    ops = v.parse_operations(options["op"] if "op" in options else ",".join(settings.operation))
    not_allowed = [op for op in ops if op not in settings.allowed_operations]
    if not_allowed:
        raise bad_request(Code.OPERATION, f"Unsupported operation: {not_allowed[0]}")
    if len(ops) > settings.max_operations:
        raise bad_request(Code.OPERATION, f"Too many operations (at most {settings.max_operations})")
    return ops


def source_url(value: str | None, settings: Settings) -> str:
    """The source: an absolute http(s) URL, or `/path` on the configured origins
    (`origins`, else `implicit_base_url`), normalised and joined segment by segment."""
    if not value:
        raise bad_request(Code.URL, "Missing url")
    if value.startswith("/") and not value.startswith("//") and (settings.origins or settings.implicit_base_url):
        return normalise_path(value)
    if not value.lower().startswith(("http://", "https://")):
        raise bad_request(Code.URL, "Unsupported protocol")
    return check_url(value)


# --- parameters, in the order they are checked ------------------------------------------

Reader = Callable[[Options, "Settings"], Any]


def _option(name: str, parse: Callable[[str], Any], default: Callable[[Settings], Any]) -> Reader:
    def read(options: Options, settings: Settings) -> Any:
        value = _given(options, name)
        return default(settings) if value is None else parse(value)
    return read


def _width(options: Options, settings: Settings) -> int | None:
    if not _given(options, "w") and not _given(options, "h"):
        raise bad_request(Code.DIMENSIONS, "Missing dimensions")
    return v.parse_dimension(_given(options, "w"), "width", settings.max_resize_width)


def _height(options: Options, settings: Settings) -> int | None:
    return v.parse_dimension(_given(options, "h"), "height", settings.max_resize_height)


# (parameter, the operation that reads it or None for every request, reader)
PARAMETERS: tuple[tuple[str, str | None, Reader], ...] = (
    ("w", "resize", _width),
    ("h", "resize", _height),
    ("deg", "rotate", lambda o, s: v.parse_degrees(_given(o, "deg"))),
    ("expand", "rotate", _option("expand", v.parse_expand, lambda s: s.expand)),
    ("rect", "region", lambda o, s: v.parse_rectangle(_given(o, "rect"))),
    ("mode", "resize", _option("mode", v.parse_mode, lambda s: s.mode)),
    ("filter", "resize", _option("filter", v.parse_filter, lambda s: s.filter)),
    ("fmt", None, _option("fmt", v.parse_format, lambda s: s.format)),
    ("pos", "resize", _option("pos", v.parse_position, lambda s: s.position)),
    ("bg", None, _option("bg", v.parse_background, lambda s: s.background)),
    ("opt", None, _option("opt", v.parse_optimize, lambda s: s.optimize)),
    # Without q, each output format gets its own default quality (at encode time).
    ("q", None, _option("q", v.parse_quality, lambda s: "keep" if s.quality == "keep" else None)),
    ("exif", None, _option("exif", v.parse_preserve_exif, lambda s: s.preserve_exif)),
    ("prog", None, _option("prog", v.parse_progressive, lambda s: s.progressive)),
    ("retain", "resize", _option("retain", v.parse_retain, lambda s: s.retain)),
    ("enlarge", "resize", _option("enlarge", v.parse_enlarge, lambda s: True)),  # not in Pilbox
)

# operation name -> its Operation, from the parsed parameters
BUILDERS: dict[str, Callable[[dict[str, Any]], Operation]] = {
    "noop": lambda p: Noop(),
    "region": lambda p: p["rect"],
    "resize": lambda p: Resize(p["w"], p["h"], p["mode"], p["filter"], p["pos"], p["retain"], p["bg"],
                               p["enlarge"]),
    # Only a bg in the request colours the corners; without one they are Pilbox's black.
    "rotate": lambda p: Rotate(p["deg"], p["expand"], p["bg"] if p["bg_given"] else None),
}


def build_plan(options: Options, settings: Settings) -> Plan:
    """Check every option and build the Plan; the first fault is a 400 with Pilbox's code."""
    ops = operations(options, settings)
    parsed = {name: read(options, settings) for name, needed_by, read in PARAMETERS
              if needed_by is None or needed_by in ops}
    parsed["bg_given"] = _given(options, "bg") is not None
    save = Save(parsed["fmt"], parsed["q"], parsed["opt"], parsed["prog"], parsed["exif"], parsed["bg"])
    return Plan(tuple(BUILDERS[op](parsed) for op in ops), save, settings.auto_orient)
