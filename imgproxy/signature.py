"""Sign and verify query strings: hex HMAC-SHA1 of the query without its final `&sig=`.

The command-line tool is cli/sign.py (`imgproxy-sign`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Iterable
from urllib.parse import unquote_plus

_SIGNED = re.compile(r"(?P<query>.+)&sig=(?P<sig>[0-9a-fA-F]{40})\Z", re.DOTALL)


def derive_signature(key: str | bytes, query: str) -> str:
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, query.encode(), hashlib.sha1).hexdigest()


def sign(key: str | bytes, query: str) -> str:
    """Return the query string with `&sig=<signature>` appended."""
    return f"{query}&sig={derive_signature(key, query)}"


def verify(keys: Iterable[str | bytes], raw_query: str) -> bool:
    """True when the final parameter is a valid `sig` for any key, and the only one."""
    m = _SIGNED.match(raw_query)
    if not m:
        return False
    query, given = m.group("query"), m.group("sig").lower()
    for part in query.split("&"):
        if unquote_plus(part.partition("=")[0]).strip() == "sig":
            return False  # a second sig, or one that is not last
    ok = False
    for key in keys:
        # compare against every key so the time taken does not tell which matched
        ok |= hmac.compare_digest(derive_signature(key, query), given)
    return ok
