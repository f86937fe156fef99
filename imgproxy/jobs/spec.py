"""A job request's JSON -> JobSpec, checked before anything is fetched.

imgserve's form: {"operationType", "srcURL", "dstURL", "args"}, or "outputs":
[{"args", "dstURL", "method"}, ...] for several results from one download.
`args` takes `width`/`height` and every parameter of the image query API by its
query name, checked by build_plan with the same codes. A resize crops by
default (imgserve's thumbnails); a rasterize renders an SVG source (PNG by default).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .. import errors
from ..options.build import build_plan
from ..options.values import parse_dimension
from ..plan import Plan
from ..urls import check_url, host_allowed
from . import templates
from .model import JobSpec, Output

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings

MAX_BODY = 65536
MAX_OUTPUTS = 10
OPERATIONS = ("resize", "rasterize")
SOURCE_SCHEMES = ("http://", "https://", "ftp://", "ftps://", "file://")
_ARG_NAMES = {"width": "w", "height": "h"}
_OUTPUT_KEYS = ("args", "dstURL", "method")
_JOB_ONLY_ARGS = ("field_name", "placeholder")


def parse_job(body: bytes, settings: Settings) -> JobSpec:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise errors.job_unparsable(f"Body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise errors.job_invalid("A job is a JSON object")
    operation = data.get("operationType")
    if operation not in OPERATIONS:
        raise errors.job_invalid(f"operationType must be one of {', '.join(OPERATIONS)}")
    source = _string(data, "srcURL")
    if not source.lower().startswith(SOURCE_SCHEMES):
        raise errors.job_invalid("srcURL must be an http, https, ftp, ftps or file URL", errors.Code.URL)
    if "outputs" in data:
        if "args" in data or "dstURL" in data:
            raise errors.job_invalid("Give either args and dstURL, or outputs")
        items = data["outputs"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_OUTPUTS:
            raise errors.job_invalid(f"outputs must be a list of 1 to {MAX_OUTPUTS} objects")
    else:
        items = [{"args": data.get("args"), "dstURL": data.get("dstURL"), "method": data.get("method")}]
        for key in ("args", "dstURL"):
            if key not in data:
                raise errors.job_invalid(f"Missing {key}")
    outputs = tuple(_output(item, operation, settings) for item in items)
    callback = data.get("callbackURL")
    if callback is not None and not isinstance(callback, str):
        raise errors.job_invalid("callbackURL must be a string")
    return JobSpec(operation, source, outputs, callback)


def check_source(url: str, settings: Settings) -> None:
    """http(s) sources take the query API's URL rules; http(s) and ftp(s) hosts must be
    in allowed_hosts when it is set (file sources stay below job_file_root)."""
    if url.lower().startswith(("http://", "https://")):
        try:
            check_url(url)
        except errors.ProxyError as e:
            raise errors.job_invalid(e.reason, e.code) from None
    if not url.lower().startswith("file:") and settings.allowed_hosts and not host_allowed(url, settings.allowed_hosts):
        raise errors.forbidden(errors.Code.HOST, "Source host is not in allowed_hosts")


def _string(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise errors.job_invalid(f"Missing or empty {key}")
    return value


def _output(item: Any, operation: str, settings: Settings) -> Output:
    if not isinstance(item, dict) or set(item) - set(_OUTPUT_KEYS) - {None}:
        raise errors.job_invalid(f"An output has the keys {', '.join(_OUTPUT_KEYS)}")
    args = item.get("args")
    if not isinstance(args, dict):
        raise errors.job_invalid("args must be an object")
    destination = _string(item, "dstURL")
    unknown = templates.unknown_variables(destination)
    if unknown:
        raise errors.job_invalid(f"Unknown template variable {unknown[0]} in dstURL")
    method = (item.get("method") or "POST").upper()
    if method not in ("POST", "PUT"):
        raise errors.job_invalid("method must be POST or PUT")
    options = _options(args)
    field_name = str(args.get("field_name") or "file")
    placeholder = args.get("placeholder") in (True, 1, "1", "true")
    output = Output(options, destination, method, field_name, placeholder)
    try:
        plan_for(output, operation, settings)  # every value checked now, by the query API's rules
    except errors.ProxyError as e:
        raise errors.job_invalid(e.reason, e.code) from None
    return output


def _options(args: dict) -> dict[str, str]:
    options = {}
    for key, value in args.items():
        if key in _JOB_ONLY_ARGS or value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, (str, int, float)):
            raise errors.job_invalid(f"args.{key} must be a string or a number")
        options[_ARG_NAMES.get(key, key)] = str(value)
    if "url" in options or "sig" in options:
        raise errors.job_invalid("args cannot hold url or sig")
    return options


def plan_for(output: Output, operation: str, settings: Settings) -> Plan:
    """The Plan of one output. A resize crops unless args say otherwise (imgserve's
    default); a rasterize is drawn at its size by the SVG step, then only saved."""
    options = dict(output.options)
    if operation == "rasterize":
        for name, maximum in (("w", settings.max_resize_width), ("h", settings.max_resize_height)):
            parse_dimension(options.pop(name, None), name, maximum)
        options.setdefault("fmt", "png")
        # rotate by 0: decoded and saved as asked, nothing else done to the drawn picture
        return build_plan({**options, "op": "rotate", "deg": "0"}, settings)
    options.setdefault("op", "resize")
    options.setdefault("mode", "crop")
    return build_plan(options, settings)


def raster_sizes(spec: JobSpec) -> list[tuple[int | None, int | None]]:
    """The size each output of a rasterize job asks for (None: from the SVG)."""
    return [(_int(o.options.get("w")), _int(o.options.get("h"))) for o in spec.outputs]


def _int(value: str | None) -> int | None:
    return int(value) if value else None
