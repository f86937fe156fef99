"""Where a job's outputs go: http(s) form uploads (imgserve's) and PUTs, FTP/FTPS, local files.

check_destination() decides whether a URL may be used at all: its form, and the
operator's allow-list (job_allowed_destinations, prefixes matched at a path boundary;
an empty list allows nothing). deliver() checks it again and uploads.

The address guard (sources/guard.py) applies to every connection, as for sources:
non-public addresses are refused unless the host is trusted. A host the operator
lists in job_allowed_destinations (or allowed_hosts) is trusted, for its own port:
naming it is the operator saying it is theirs. Redirects are never followed.

Failures are DeliveryError (502, code 302) with `transient`: worth another attempt
(5xx, 429, timeouts, refused or reset connections, FTP 4xx) or not (everything else).
A URL refused before any connection is an ordinary ProxyError (400 or 403), never
transient. No password reaches a URL, a log line or a reason: FTP passwords are
only in settings.job_credentials, and a URL holding one is refused.
"""

from __future__ import annotations

import asyncio
import ftplib
import io
import json
import logging
import os
import re
import secrets
import stat
from contextlib import suppress
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pycurl
from tornado.curl_httpclient import CurlAsyncHTTPClient, CurlError
from tornado.httpclient import HTTPRequest, HTTPResponse

from .. import __version__, errors
from ..config import JOB_SCHEMES
from ..errors import Code, ProxyError
from ..sources.files import PathRefused, below_root, open_parent
from ..sources.ftp import BLOCK, FtpTarget, classify, end_session, open_session
from ..sources.guard import AddressGuard
from ..sources.paths import SAFE, normalise_path
from ..urls import MAX_URL_LENGTH, check_url, named_host

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings

log = logging.getLogger("imgproxy.jobs.destinations")

DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ftps": 21}
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\\]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_FIELD = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
_TRANSIENT_CURL = (pycurl.E_OPERATION_TIMEDOUT, pycurl.E_COULDNT_CONNECT, pycurl.E_RECV_ERROR,
                   pycurl.E_SEND_ERROR, pycurl.E_GOT_NOTHING)


class DeliveryError(ProxyError):
    """An upload failed; `transient`: trying again later may work."""

    def __init__(self, reason: str, transient: bool):
        failed = errors.destination_failed(reason)
        super().__init__(failed.status, failed.code, failed.reason)
        self.transient = transient

    def __reduce__(self):  # pickles with its own arguments, not ProxyError's
        return (DeliveryError, (self.reason, self.transient))


# --- which URLs ---------------------------------------------------------------------------

class _Parsed:
    """A destination URL in the form prefixes are compared in: no user, default ports filled
    in, the path canonical (sources/paths.py)."""

    def __init__(self, scheme: str, host: str, port: int | None, path: str):
        self.scheme, self.host, self.port, self.path = scheme, host, port, path

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port else host


def _refuse(reason: str) -> ProxyError:
    return errors.bad_request(Code.JOB, reason)


def _parse(url: str) -> _Parsed:
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(f"Destination URL longer than {MAX_URL_LENGTH} characters")
    if _BAD_CHARS.search(url):
        raise _refuse("Destination URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _refuse("Malformed destination URL") from None
    scheme = parts.scheme.lower()
    if scheme not in JOB_SCHEMES or not url[len(scheme):].startswith("://"):
        raise _refuse(f"Unsupported destination; use one of {', '.join(s + '://' for s in JOB_SCHEMES)}")
    if parts.password is not None:
        raise _refuse("A destination URL must not hold a password; the operator sets it in job_credentials")
    if parts.fragment or "#" in url:
        raise _refuse("A destination URL has no fragment")
    if (parts.query or "?" in url) and scheme not in ("http", "https"):
        raise _refuse("Only http(s) destinations may have a query")
    if "@" in parts.netloc and scheme not in ("ftp", "ftps"):
        raise _refuse("Only ftp(s) destinations may name a user")
    if parts.username is not None and (not parts.username or _BAD_CHARS.search(unquote(parts.username))):
        raise _refuse("Bad user name in the destination URL")
    try:
        path = normalise_path(parts.path)
    except ProxyError as e:
        raise _refuse(f"Destination {e.reason[0].lower()}{e.reason[1:]}") from None
    if scheme == "file":
        if parts.netloc.lower() not in ("", "localhost"):
            raise _refuse("A file destination is file:///absolute/path")
        return _Parsed(scheme, "", None, path)
    hostport = parts.netloc.rpartition("@")[2]
    try:
        check_url(f"http://{hostport}/")  # the host's form: no 127.1, 0x7f.1, empty host, ...
    except ProxyError as e:
        raise _refuse(f"Destination {e.reason[0].lower()}{e.reason[1:]}") from None
    return _Parsed(scheme, (parts.hostname or "").lower().rstrip("."), parts.port or DEFAULT_PORTS[scheme], path)


def _prefix(prefix: str) -> _Parsed:
    """An allow-list entry (checked at start-up by config.py) in comparable form."""
    parts = urlsplit(prefix)
    scheme = parts.scheme.lower()
    path = "/".join(quote(unquote(s), safe=SAFE) for s in parts.path.split("/"))
    if scheme == "file":
        return _Parsed(scheme, "", None, path)
    return _Parsed(scheme, (parts.hostname or "").lower().rstrip("."), parts.port or DEFAULT_PORTS[scheme], path)


def _matches(prefix: _Parsed, url: _Parsed) -> bool:
    if (prefix.scheme, prefix.host, prefix.port) != (url.scheme, url.host, url.port):
        return False
    if prefix.path in ("", "/") or url.path == prefix.path:
        return True
    if not url.path.startswith(prefix.path):
        return False
    # At a path boundary only: /in/ or /in allows /in/x, never /inbox; http(s) also
    # /upload.html:name.jpg (imgserve's "form page:file name").
    following = url.path[len(prefix.path)]
    boundaries = "/:" if url.scheme in ("http", "https") else "/"
    return prefix.path.endswith("/") or following in boundaries


def check_destination(url: str, settings: Settings) -> None:
    """400 (code 601) for a malformed or unsafe destination URL, 403 for one the operator
    does not allow. Call it on the expanded URL, and on a callback URL."""
    parsed = _parse(url)
    if parsed.scheme == "file":
        if not settings.job_file_root:
            raise errors.forbidden(Code.JOB, "file destinations are not enabled (job_file_root is unset)")
        try:
            below_root(settings.job_file_root, url)
        except PathRefused:
            raise errors.forbidden(Code.JOB, "A file destination must be below job_file_root") from None
    if not any(_matches(_prefix(p), parsed) for p in settings.job_allowed_destinations):
        raise errors.forbidden(Code.JOB, f"Destination {parsed.scheme}://{parsed.netloc}{parsed.path} is not "
                               "under any of job_allowed_destinations")


def _trusted(url: str, settings: Settings) -> bool:
    """The operator named this host: in allowed_hosts, or in job_allowed_destinations (its port)."""
    listed = tuple(_prefix(p).netloc for p in settings.job_allowed_destinations if not p.lower().startswith("file:"))
    return named_host(url, settings.allowed_hosts, listed)


# --- uploads ------------------------------------------------------------------------------

async def deliver(url: str, body: bytes, content_type: str, *, settings: Settings, method: str = "POST",
                  field_name: str = "file") -> None:
    """Upload `body` to `url`; `method` and `field_name` apply to http(s) only. Raises a
    ProxyError (400/403, permanent) for a URL refused before any connection, else DeliveryError."""
    check_destination(url, settings)
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        await _http(url, body, content_type, settings, method.upper(), field_name, _trusted(url, settings))
    elif scheme in ("ftp", "ftps"):
        await _ftp(url, body, settings, _trusted(url, settings))
    else:
        await _file(url, body, settings)


async def _http(url: str, body: bytes, content_type: str, settings: Settings, method: str, field_name: str,
                trusted: bool) -> None:
    if not _TOKEN.match(content_type.partition("/")[0]) or not _TOKEN.match(content_type.partition("/")[2]):
        raise _refuse(f"Bad content type {content_type[:80]!r}")
    parts = urlsplit(url)
    http_method = "PUT" if method == "PUT" else "POST"
    if method in ("PUT", "RAW"):  # RAW: the body itself, POSTed (a callback's JSON)
        target, payload, headers = url, body, {"Content-Type": content_type}
    elif method == "POST":
        if not _FIELD.match(field_name):
            raise _refuse("A form field name is 1-64 letters, digits, '.', '_' or '-'")
        page, sep, name = parts.path.rpartition(":")
        filename = unquote(name)
        if not sep or not page or not filename or "/" in filename:
            raise _refuse("A POST destination is <form page URL>:<file name>")
        target = urlunsplit((parts.scheme, parts.netloc, page, parts.query, ""))
        payload, headers = _form(field_name, filename, content_type, body)
    else:
        raise _refuse(f"Unsupported method {method[:10]!r}: POST (a form upload) or PUT")
    guard = AddressGuard(trusted)
    request = HTTPRequest(
        target, method=http_method, body=payload, headers=headers,
        connect_timeout=settings.connect_timeout, request_timeout=settings.timeout,
        follow_redirects=False, decompress_response=False,
        user_agent=settings.user_agent or f"imgproxy/{__version__}",
        ca_certs=settings.ca_certs, validate_cert=settings.validate_cert,
        prepare_curl_callback=lambda curl: curl.setopt(pycurl.OPENSOCKETFUNCTION, guard.open_socket),
    )
    client = CurlAsyncHTTPClient(force_instance=True, max_clients=1)
    try:
        response = await client.fetch(request, raise_error=False)
    except CurlError as e:
        response = HTTPResponse(request, 599, error=e)
    finally:
        client.close()
    where = f"{parts.scheme}://{parts.netloc}"
    if guard.refused:
        raise _failed(where, f"resolves to an internal address ({guard.refused}); the operator may list it "
                      "in job_allowed_destinations", transient=False)
    errno = getattr(response.error, "errno", None)
    if errno is not None or response.code == 599:
        if errno == pycurl.E_OPERATION_TIMEDOUT or errno is None:
            raise _failed(where, "timed out", transient=True)
        reason = {pycurl.E_COULDNT_CONNECT: "refused the connection", pycurl.E_COULDNT_RESOLVE_HOST:
                  "cannot resolve the host name"}.get(errno, f"connection failed (curl error {errno})")
        raise _failed(where, reason, transient=errno in _TRANSIENT_CURL)
    if not 200 <= response.code < 300:
        raise _failed(where, f"answered HTTP {response.code}", transient=response.code >= 500 or response.code == 429)


def _form(field_name: str, filename: str, content_type: str, body: bytes) -> tuple[bytes, dict[str, str]]:
    """multipart/form-data with one file, as a browser sends imgserve's upload form."""
    boundary = "imgproxy-" + secrets.token_hex(16)
    while boundary.encode() in body:  # practically never
        boundary = "imgproxy-" + secrets.token_hex(16)
    quoted = filename.replace('"', "%22")
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; filename=\"{quoted}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode()
    return head + body + f"\r\n--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"}


def _failed(where: str, reason: str, transient: bool) -> DeliveryError:
    log.warning("delivery to %s failed: %s", where, reason)
    return DeliveryError(f"Destination {where} {reason}", transient)


def _temp_name(name: str) -> str:
    return f".{name[:200]}.{secrets.token_hex(6)}.part"


async def _ftp(url: str, body: bytes, settings: Settings, trusted: bool) -> None:
    target = FtpTarget(url)
    try:
        await asyncio.to_thread(_ftp_upload, target, body, settings, trusted)
    except Exception as e:  # noqa: BLE001 - every failure of the exchange, classified
        reason, transient = classify(e)
        raise _failed(f"{target.scheme}://{target.where}", reason, transient) from None


class _Reader(io.BytesIO):
    """The body for STOR, stopping at the session's deadline."""

    def __init__(self, body: bytes, ftp):
        super().__init__(body)
        self._ftp = ftp

    def read(self, size: int = -1) -> bytes:
        self._ftp.check_deadline()
        return super().read(size)


def _ftp_upload(target: FtpTarget, body: bytes, settings: Settings, trusted: bool) -> None:
    """STOR under a temporary name in the target directory (made if missing), then RNFR/RNTO:
    nobody sees a partial file under the final name."""
    ftp = open_session(target, settings, trusted)
    temp = None
    try:
        for name in target.segments[:-1]:
            try:
                ftp.cwd(name)
            except ftplib.error_perm:
                with suppress(ftplib.error_perm):  # made meanwhile, or refused: cwd tells which
                    ftp.mkd(name)
                ftp.cwd(name)
        final = target.segments[-1]
        temp = _temp_name(final)
        ftp.storbinary(f"STOR {temp}", _Reader(body, ftp), blocksize=BLOCK)
        ftp.rename(temp, final)
    except BaseException:
        if temp is not None:
            with suppress(Exception):  # best effort; the connection may be gone
                ftp.delete(temp)
        ftp.close()
        raise
    end_session(ftp)


async def _file(url: str, body: bytes, settings: Settings) -> None:
    root = settings.job_file_root
    assert root  # check_destination refused file:// without it
    relative = below_root(root, url)
    try:
        await asyncio.to_thread(_write_below, root, relative, body)
    except PathRefused as e:
        raise errors.bad_request(Code.JOB, f"File destination refused: {e}") from None  # traversal: 400
    except OSError as e:
        raise _failed("file://", f"cannot be written: {e.strerror or type(e).__name__}", transient=False) from None


def _write_below(root: str, relative: list[str], body: bytes) -> None:
    """Write a temporary file in the target directory (made if missing) and rename it into place."""
    with open_parent(root, relative, create=True) as parent:
        name = relative[-1]
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(st.st_mode):
                raise PathRefused(f"{name!r} exists and is a symlink or not a regular file")
        temp = _temp_name(name)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                     0o644, dir_fd=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with suppress(OSError):
                os.unlink(temp, dir_fd=parent)
            raise


async def post_json(url: str, document: dict, *, settings: Settings) -> None:
    """POST a JSON document (a job's final status, to its callbackURL), by the same rules."""
    check_destination(url, settings)
    body = json.dumps(document).encode()
    await _http(url, body, "application/json", settings, "RAW", "file", _trusted(url, settings))
