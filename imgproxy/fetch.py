"""Fetch source images over curl (pycurl) without blocking the event loop, within limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import pycurl
from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.httpclient import HTTPRequest

from . import __version__
from .errors import Code, ProxyError

if TYPE_CHECKING:  # pragma: no cover
    from .config import Settings

log = logging.getLogger("imgproxy.fetch")

# Origin headers a reply passes through (Pilbox's list, plus validators for later use).
FORWARDED_HEADERS = ("Cache-Control", "Expires", "Last-Modified")
MAX_REDIRECTS = 5
LOW_SPEED_BYTES = 1024  # an origin slower than this per second for LOW_SPEED_SECONDS is dropped
LOW_SPEED_SECONDS = 5

_NOT_FOUND = (404, 410)


@dataclass(frozen=True, slots=True)
class Source:
    body: bytes
    headers: dict[str, str]
    url: str


class Fetcher:
    """One curl client for the process: at most `max_requests` fetches at a time."""

    def __init__(self, settings: Settings,
                 prepare_curl: Callable[[pycurl.Curl], None] | None = None):
        self._settings = settings
        self._prepare_extra = prepare_curl
        self._client = CurlAsyncHTTPClient(
            force_instance=True,
            max_clients=settings.max_requests,
            max_body_size=settings.max_source_bytes,
        )

    def close(self) -> None:
        self._client.close()

    def _prepare_curl(self, curl: pycurl.Curl) -> None:
        # A Content-Length above the cap is refused before any body is read.
        curl.setopt(pycurl.MAXFILESIZE_LARGE, self._settings.max_source_bytes)
        curl.setopt(pycurl.LOW_SPEED_LIMIT, LOW_SPEED_BYTES)
        curl.setopt(pycurl.LOW_SPEED_TIME, LOW_SPEED_SECONDS)
        if self._prepare_extra is not None:
            self._prepare_extra(curl)

    async def fetch(self, url: str) -> Source:
        s = self._settings
        request = HTTPRequest(
            url,
            connect_timeout=s.connect_timeout,
            request_timeout=s.timeout,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            decompress_response=False,  # a gzip bomb stays compressed, and is not an image
            user_agent=s.user_agent or f"imgproxy/{__version__}",
            ca_certs=s.ca_certs,
            validate_cert=s.validate_cert,
            proxy_host=s.proxy_host,
            proxy_port=s.proxy_port,
            prepare_curl_callback=self._prepare_curl,
        )
        response = await self._client.fetch(request, raise_error=False)
        if response.error is None and response.code == 200:
            headers = {k: response.headers[k] for k in FORWARDED_HEADERS if response.headers.get(k)}
            return Source(response.body, headers, response.effective_url or url)
        raise _fetch_error(url, response)


def _fetch_error(url: str, response) -> ProxyError:
    errno = getattr(response.error, "errno", None)
    log.warning("fetch failed for %s: %s", url, response.error or response.code)
    if errno is None:
        if response.code in _NOT_FOUND:
            return ProxyError(404, Code.FETCH, f"Source not found (origin answered {response.code})")
        return ProxyError(502, Code.FETCH, f"Origin answered HTTP {response.code}")
    if errno == pycurl.E_OPERATION_TIMEDOUT:
        return ProxyError(504, Code.FETCH, "Origin timed out")
    if errno == pycurl.E_FILESIZE_EXCEEDED or "max_body_size" in str(response.error):
        return ProxyError(413, Code.FETCH, "Source image is larger than max_source_bytes")
    if errno == pycurl.E_TOO_MANY_REDIRECTS:
        return ProxyError(502, Code.FETCH, f"Too many redirects (more than {MAX_REDIRECTS})")
    if errno == pycurl.E_COULDNT_RESOLVE_HOST:
        return ProxyError(502, Code.FETCH, "Cannot resolve the origin's host name")
    return ProxyError(502, Code.FETCH, "Cannot fetch the source from its origin")
