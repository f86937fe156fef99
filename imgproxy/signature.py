"""Sign and verify requests: hex HMAC-SHA1 of the query without its final `&sig=`.

A path URL signs its path and query: for `/220x220/a.jpg?fmt=webp&sig=S` the
signed text is `/220x220/a.jpg?fmt=webp`, for `/220x220/a.jpg?sig=S` it is
`/220x220/a.jpg`.

The command-line tool is cli/sign.py (`imgproxy-sign`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Iterable
from urllib.parse import unquote_plus

_SIGNED = re.compile(r"(?P<query>.+)&sig=(?P<sig>[0-9a-fA-F]{40})\Z", re.DOTALL)
_PATH_SIGNED = re.compile(r"(?:(?P<query>.*)&)?sig=(?P<sig>[0-9a-fA-F]{40})\Z", re.DOTALL)


def derive_signature(key: str | bytes, query: str) -> str:
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, query.encode(), hashlib.sha1).hexdigest()


def sign(key: str | bytes, query: str) -> str:
    """Return the query string with `&sig=<signature>` appended."""
    return f"{query}&sig={derive_signature(key, query)}"


def sign_path(key: str | bytes, path: str, query: str = "") -> str:
    """A path URL's path and query with `sig=<signature>` as the last parameter."""
    text = f"{path}?{query}" if query else path
    return f"{text}{'&' if query else '?'}sig={derive_signature(key, text)}"


def has_signature(raw_query: str) -> bool:
    return any(unquote_plus(part.partition("=")[0]).strip() == "sig" for part in raw_query.split("&"))


def verify(keys: Iterable[str | bytes], raw_query: str) -> bool:
    """True when the final parameter is a valid `sig` for any key, and the only one."""
    m = _SIGNED.match(raw_query)
    return bool(m) and _valid(keys, m.group("query"), m.group("query"), m.group("sig"))


def verify_path(keys: Iterable[str | bytes], raw_path: str, raw_query: str) -> bool:
    """The same for a path URL: the signature covers the path and the rest of the query."""
    m = _PATH_SIGNED.match(raw_query)
    if not m:
        return False
    query = m.group("query") or ""
    return _valid(keys, query, f"{raw_path}?{query}" if query else raw_path, m.group("sig"))


def _valid(keys: Iterable[str | bytes], query: str, signed_text: str, given: str) -> bool:
    if query and has_signature(query):
        return False  # a second sig, or one that is not last
    ok = False
    for key in keys:
        # compare against every key so the time taken does not tell which matched
        ok |= hmac.compare_digest(derive_signature(key, signed_text), given.lower())
    return ok


def job_signature(key: str | bytes, text: bytes | str) -> str:
    """The job API's X-Signature: hex HMAC-SHA256 of the raw body (POST) or the path (GET)."""
    key = key.encode() if isinstance(key, str) else key
    text = text.encode() if isinstance(text, str) else text
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def verify_job(key: str | bytes, text: bytes | str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(job_signature(key, text), given.strip().lower())
