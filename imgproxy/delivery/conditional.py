"""Conditional requests: If-None-Match against our ETag, and revalidation with the origin.

For each result we remember the ETag we sent and the origin's validators for the
source it came from. A client that sends that ETag for that same result lets us
ask the origin "changed?"; its 304 becomes ours without a fetch or a decode.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ..sources import Validators

MAX_REMEMBERED = 100_000


@dataclass(frozen=True, slots=True)
class NotModified:
    etag: str
    headers: dict[str, str] = field(default_factory=dict)  # the origin's, passed through


@dataclass(frozen=True, slots=True)
class Remembered:
    etag: str
    validators: Validators
    headers: dict[str, str]


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match's weak comparison (RFC 9110): W/ is ignored on either side."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in header.split(","))


class OriginValidators:
    """Result key -> what we sent and what the origin said, most recent MAX_REMEMBERED."""

    def __init__(self, limit: int = MAX_REMEMBERED):
        self._limit = limit
        self._by_key: collections.OrderedDict[str, Remembered] = collections.OrderedDict()

    def remember(self, key: str, etag: str, validators: Validators, headers: dict[str, str]) -> None:
        if not validators:
            return
        self._by_key.pop(key, None)
        if len(self._by_key) >= self._limit:
            self._by_key.popitem(last=False)
        self._by_key[key] = Remembered(etag, validators, headers)

    def for_client(self, key: str, client_etag: str | None) -> Remembered | None:
        """What to revalidate with, only when the client holds this very result."""
        remembered = self._by_key.get(key)
        if remembered is None or not etag_matches(client_etag, remembered.etag):
            return None
        return remembered
