"""The path of a path URL (`GET /220x220/photos/cat.jpg`), made safe to put under an origin's base.

normalise_path() takes what the router captured, percent-encoded or not, decodes it
once and refuses anything that could climb out of, or step around, the origin's base
path: dot segments (plain or encoded), encoded slashes and backslashes, empty
segments, control characters and whitespace. What it returns is one canonical form
(every segment re-quoted the same way), so equal paths give equal strings, and
normalising it again gives it back unchanged.

join() puts a normalised path under an origin's base URL segment by segment. It never
uses urljoin: `urljoin("http://o/images/", "/../x")` is `http://o/x`, and
`urljoin(base, "//evil.example/x")` changes the host.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

from ..errors import Code, bad_request

MAX_PATH_LENGTH = 2048
MAX_SEGMENTS = 32
SAFE = "!$&'()*+,;=:@"  # sub-delims, ":" and "@": legal in a path segment as they are

_ENCODED_DOT_OR_SLASH = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\\]")


def normalise_path(path: str) -> str:
    """The canonical form of `path` ("/a/b.jpg"); a 400 (code 8) for anything unsafe."""
    if len(path) > MAX_PATH_LENGTH:
        raise bad_request(Code.URL, f"Path longer than {MAX_PATH_LENGTH} characters")
    # Encoded dots, slashes and backslashes: before decoding, and after (double encoding).
    if _ENCODED_DOT_OR_SLASH.search(path):
        raise bad_request(Code.URL, "Path contains an encoded dot, slash or backslash")
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise bad_request(Code.URL, "Path is not valid UTF-8 once decoded") from None
    if _ENCODED_DOT_OR_SLASH.search(decoded):
        raise bad_request(Code.URL, "Path contains an encoded dot, slash or backslash")
    if _BAD_CHARS.search(decoded) or any(c.isspace() for c in decoded):
        raise bad_request(Code.URL, "Path contains whitespace, control characters or backslashes")
    segments = (decoded[1:] if decoded.startswith("/") else decoded).split("/")
    if len(segments) > MAX_SEGMENTS:
        raise bad_request(Code.URL, f"Path has more than {MAX_SEGMENTS} segments")
    for segment in segments:
        if not segment:
            raise bad_request(Code.URL, "Path has an empty segment")
        if segment in (".", ".."):
            raise bad_request(Code.URL, "Path has a '.' or '..' segment")
    canonical = "/" + "/".join(quote(s, safe=SAFE) for s in segments)
    if len(canonical) > MAX_PATH_LENGTH:
        raise bad_request(Code.URL, f"Path longer than {MAX_PATH_LENGTH} characters once encoded")
    return canonical


def check_base(base: str) -> str:
    """An origin's base URL as configured: absolute http(s), a host, no query, fragment or user
    info. ValueError otherwise (a configuration mistake, found at start-up, not a client's)."""
    parts = urlsplit(base)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"origin {base!r} is not an absolute http(s) URL")
    if parts.query or parts.fragment or "@" in parts.netloc or _BAD_CHARS.search(base):
        raise ValueError(f"origin {base!r} must not have a query, fragment, user info or odd characters")
    return base


def join(base: str, path: str) -> str:
    """The URL of `path` under `base`'s path (with or without its trailing slash)."""
    check_base(base)
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}{normalise_path(path)}"
