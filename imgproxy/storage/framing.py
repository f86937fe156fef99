"""A blob that is a small JSON header and a body, with a checksum: what the caches store.

Nothing is unpickled, so a store shared with other software cannot run code here, and a
corrupt or truncated blob reads as None (a miss), never as wrong bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

_LEN = struct.Struct("!I")


def pack(magic: bytes, meta: dict[str, Any], body: bytes) -> bytes:
    header = json.dumps({**meta, "sha256": hashlib.sha256(body).hexdigest()}).encode()
    return magic + _LEN.pack(len(header)) + header + body


def unpack(magic: bytes, data: bytes) -> tuple[dict[str, Any], bytes] | None:
    """(header, body), or None when `data` is not a whole, intact blob of this kind."""
    try:
        if not data.startswith(magic):
            return None
        (n,) = _LEN.unpack_from(data, len(magic))
        start = len(magic) + _LEN.size
        meta = json.loads(data[start:start + n])
        body = data[start + n:]
        if not isinstance(meta, dict) or hashlib.sha256(body).hexdigest() != meta.get("sha256"):
            return None
        return meta, body
    except (ValueError, TypeError, struct.error):
        return None
