"""Sources: where image bytes come from. A Loader turns a reference into a Source.

Today a reference is an http(s) URL (http.py); the upload store, files, FTP and
fallback origins are Loaders too, so the render service never asks where bytes
came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Validators:
    """What the origin said identifies this version of the source."""
    etag: str | None = None
    last_modified: str | None = None

    def __bool__(self) -> bool:
        return bool(self.etag or self.last_modified)


@dataclass(frozen=True, slots=True)
class Source:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # the origin's, passed through to clients
    validators: Validators = Validators()


class Loader(Protocol):
    async def load(self, ref: str, validators: Validators | None = None) -> Source | None:
        """The source; or None when `validators` are given and the source has not changed."""

    def close(self) -> None: ...
