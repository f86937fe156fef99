"""Storage: named blobs of bytes behind one small protocol.

The result cache keeps rendered images in one (files.py on local disk, redis.py
shared between servers); the upload store and file destinations use the same
protocol, and S3 is one more backend. A key is a few `/`-separated segments of
letters, digits, `.`, `_`, `-` and `!`, checked by every backend (check_key), so
nothing a client sends becomes a path or object name unchecked.
"""

from __future__ import annotations

import re
from typing import Protocol

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._!-]{0,127}\Z")  # "!": the store's 75x75! sizes
MAX_SEGMENTS = 8


class StorageError(Exception):
    """The backend failed (not a missing key)."""


def check_key(key: str) -> list[str]:
    """The key's segments; ValueError for anything that is not a plain relative name."""
    segments = key.split("/")
    if not 0 < len(segments) <= MAX_SEGMENTS or not all(_SEGMENT.match(s) for s in segments):
        raise ValueError(f"invalid storage key: {key[:80]!r}")
    return segments


class BlobStore(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The blob, or None when there is none under `key`."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store `data` only if nothing is under `key` yet: True when written, False when
        the key existed. Atomic: of two concurrent calls for one key exactly one is True."""

    async def head(self, key: str) -> int | None:
        """The blob's size in bytes, or None when there is none under `key`."""

    async def delete(self, key: str) -> None: ...

    async def list(self, prefix: str = "") -> list[str]:
        """Keys that start with `prefix`."""
