"""The http(s) Loader: fetch over curl (pycurl) without blocking the event loop, within limits."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import pycurl
from tornado.curl_httpclient import CurlAsyncHTTPClient, CurlError
from tornado.httpclient import HTTPRequest, HTTPResponse

from .. import __version__, errors
from ..errors import Code, ProxyError
from ..urls import check_url, named_host
from . import Source, Validators
from .guard import AddressGuard

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings

log = logging.getLogger("imgproxy.sources.http")

# Origin headers a reply passes through (Pilbox's list).
FORWARDED_HEADERS = ("Cache-Control", "Expires", "Last-Modified")
MAX_REDIRECTS = 5
LOW_SPEED_BYTES = 1024  # an origin slower than this per second for LOW_SPEED_SECONDS is dropped
LOW_SPEED_SECONDS = 5
RECEIVE_BUFFER = 512 * 1024

_NOT_FOUND = (404, 410)
_REDIRECTS = (301, 302, 303, 307, 308)


class HttpLoader:
    """One curl client for the process: at most `max_requests` fetches at a time.

    Redirects are followed here, not by curl, so every hop is checked like the
    first URL: scheme and form, allowed hosts, and the address connected to.
    """

    def __init__(self, settings: Settings, trusted_hosts: tuple[str, ...] = ()):
        """`trusted_hosts` (host or host:port, matched like allowed_hosts): the operator's own
        origins, fetched even on loopback or private addresses, and accepted as redirect targets."""
        self._settings = settings
        self._trusted_hosts = tuple(trusted_hosts)
        self._client = CurlAsyncHTTPClient(
            force_instance=True,
            max_clients=settings.max_requests,
            max_body_size=settings.max_source_bytes,
        )

    def close(self) -> None:
        self._client.close()

    def _trusted(self, url: str) -> bool:
        s = self._settings
        # Behind an operator's proxy, curl connects to the proxy: the proxy decides.
        return bool(s.proxy_host) or named_host(url, s.allowed_hosts, self._trusted_hosts)

    async def load(self, ref: str, validators: Validators | None = None) -> Source | None:
        """The source at URL `ref`; or None when `validators` are given and the origin says 304."""
        url = ref
        for _ in range(MAX_REDIRECTS + 1):
            response = await self._get(url, validators)
            if validators and response.code == 304 and _errno(response) is None:
                return None  # not modified: tornado reports a 304 as an HTTP error
            if response.code not in _REDIRECTS or _errno(response):
                break
            url = self._next_hop(url, response)
        else:
            raise errors.origin_failed(f"Too many redirects (more than {MAX_REDIRECTS})")
        if response.error is None and response.code == 200:
            headers = {k: response.headers[k] for k in FORWARDED_HEADERS if response.headers.get(k)}
            return Source(response.body, headers,
                          Validators(response.headers.get("ETag"), response.headers.get("Last-Modified")))
        raise _fetch_error(url, response)

    def _next_hop(self, url: str, response: HTTPResponse) -> str:
        location = response.headers.get("Location")
        if not location:
            raise errors.origin_failed(f"Origin answered {response.code} without a Location")
        url = urljoin(url, location.strip())
        try:
            check_url(url)
        except ProxyError:
            raise errors.origin_failed("Origin redirected to an unsupported URL") from None
        allowed = self._settings.allowed_hosts
        if allowed and not named_host(url, allowed, self._trusted_hosts):
            raise errors.forbidden(Code.HOST, "Origin redirected to a host that is not allowed")
        return url

    async def _get(self, url: str, validators: Validators | None) -> HTTPResponse:
        s = self._settings
        conditional = {}
        if validators and validators.etag:
            conditional["If-None-Match"] = validators.etag
        if validators and validators.last_modified:
            conditional["If-Modified-Since"] = validators.last_modified
        guard = AddressGuard(self._trusted(url))
        abandoned = False  # set when the awaiting task is cancelled: curl then drops the transfer

        def progress(*_) -> int:
            return 1 if abandoned else 0  # non-zero aborts (E_ABORTED_BY_CALLBACK)

        def prepare(curl: pycurl.Curl) -> None:
            # A Content-Length above the cap is refused before any body is read.
            curl.setopt(pycurl.MAXFILESIZE_LARGE, s.max_source_bytes)
            curl.setopt(pycurl.LOW_SPEED_LIMIT, LOW_SPEED_BYTES)
            curl.setopt(pycurl.LOW_SPEED_TIME, LOW_SPEED_SECONDS)
            curl.setopt(pycurl.OPENSOCKETFUNCTION, guard.open_socket)
            # Larger reads: a megabyte source costs tens of Python callbacks, not hundreds.
            curl.setopt(pycurl.BUFFERSIZE, RECEIVE_BUFFER)
            # Tornado cannot cancel a fetch; without this a fetch nobody awaits any more (a
            # losing origin, a client gone) holds one of max_requests until the origin answers.
            curl.setopt(pycurl.NOPROGRESS, 0)
            curl.setopt(pycurl.XFERINFOFUNCTION, progress)

        request = HTTPRequest(
            url,
            headers=conditional,
            connect_timeout=s.connect_timeout,
            request_timeout=s.timeout,
            follow_redirects=False,
            decompress_response=False,  # a gzip bomb stays compressed, and is not an image
            user_agent=s.user_agent or f"imgproxy/{__version__}",
            ca_certs=s.ca_certs,
            validate_cert=s.validate_cert,
            proxy_host=s.proxy_host,
            proxy_port=s.proxy_port,
            prepare_curl_callback=prepare,
        )
        try:
            response = await self._client.fetch(request, raise_error=False)
        except asyncio.CancelledError:
            abandoned = True  # curl calls progress() at least once a second, even while idle
            raise
        except CurlError as e:  # raise_error=False covers HTTP statuses only
            response = HTTPResponse(request, 599, error=e)
        if guard.refused:
            log.warning("refused to connect to %s for %s", guard.refused, url)
            host = urlsplit(url).netloc
            raise errors.forbidden(Code.HOST, f"Source host {host} resolves to an internal address "
                                   f"({guard.refused}); add {host} to allowed_hosts to fetch from it")
        return response


def _errno(response: HTTPResponse) -> int | None:
    return getattr(response.error, "errno", None)


def _fetch_error(url: str, response: HTTPResponse) -> ProxyError:
    errno = _errno(response)
    log.warning("fetch failed for %s: %s", url, response.error or response.code)
    if errno is None:
        if response.code in _NOT_FOUND:
            return errors.source_not_found(f"Source not found (origin answered {response.code})")
        return errors.origin_failed(f"Origin answered HTTP {response.code}")
    if errno == pycurl.E_OPERATION_TIMEDOUT:
        return errors.origin_timeout("Origin timed out")
    if errno == pycurl.E_FILESIZE_EXCEEDED or "max_body_size" in str(response.error):
        return errors.source_too_large("Source image is larger than max_source_bytes")
    if errno == pycurl.E_COULDNT_RESOLVE_HOST:
        return errors.origin_failed("Cannot resolve the origin's host name")
    return errors.origin_failed("Cannot fetch the source from its origin")
