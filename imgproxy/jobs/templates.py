"""Destination names: {$width}, {$height}, {$basename}, {$ext} / {$extension}.

The extension comes from the output format, never from the source's name; the
base name is the source's file name without its extension, percent-decoded,
with anything but [A-Za-z0-9._-] made "_" and leading dots removed.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from ..imaging.encode import extension

VARIABLES = ("{$width}", "{$height}", "{$basename}", "{$ext}", "{$extension}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_VARIABLE = re.compile(r"\{\$[^}]*\}")


def basename(source_url: str) -> str:
    name = unquote(urlsplit(source_url).path.rsplit("/", 1)[-1])
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return _UNSAFE.sub("_", stem).lstrip(".") or "image"


def unknown_variables(template: str) -> list[str]:
    return [v for v in _VARIABLE.findall(template) if v not in VARIABLES]


def needs_result(template: str) -> bool:
    """The name depends on the result's size or format, so the source's header decides it."""
    return any(name in template for name in ("{$width}", "{$height}", "{$ext}", "{$extension}"))


def expand(template: str, width: int, height: int, source_url: str, fmt: str) -> str:
    ext = extension(fmt)
    for name, value in (("{$width}", str(width)), ("{$height}", str(height)),
                        ("{$basename}", basename(source_url)), ("{$extension}", ext), ("{$ext}", ext)):
        template = template.replace(name, value)
    return template
