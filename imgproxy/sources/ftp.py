"""ftp:// and ftps:// references: the Loader of job sources, and the guarded connection that
job destinations (jobs/destinations.py) upload through.

ftplib blocks, so each transfer runs in a thread. The address guard of http.py
applies to every connection: the control connection goes only to a public address
(unless the host is trusted), and a data connection only to the host the control
connection reached. A PASV reply naming any other address is refused outright
(the FTP bounce: a server steering us at 127.0.0.1 or 10.x). ftps:// is explicit
TLS (AUTH TLS, then PROT P for data) on port 21 by default.

Passwords come only from settings.job_credentials ("host:port" first, then "host");
the user name from the URL, anonymous without one. No password reaches a log line
or an error's reason.
"""

from __future__ import annotations

import asyncio
import ftplib
import logging
import socket
import ssl
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .. import errors
from ..errors import Code, ProxyError
from ..urls import named_host
from . import Source, Validators
from .guard import is_public
from .paths import normalise_path

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings

log = logging.getLogger("imgproxy.sources.ftp")

DEFAULT_PORT = 21
BLOCK = 64 * 1024


class AddressRefused(Exception):
    """A connection the address guard refused; str() is the address and why."""


class Deadline(Exception):
    """The whole transfer took longer than settings.timeout."""


class TooLarge(Exception):
    pass


class FtpTarget:
    """What an ftp(s) URL names: where to connect, as whom, and the path's segments."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        if self.scheme not in ("ftp", "ftps") or not parts.hostname:
            raise errors.bad_request(Code.URL, "An FTP URL is ftp(s)://[user@]host[:port]/path")
        if parts.password is not None:
            raise errors.bad_request(Code.URL, "An FTP URL must not hold a password; set job_credentials")
        if parts.query or parts.fragment:
            raise errors.bad_request(Code.URL, "An FTP URL has no query or fragment")
        try:
            self.port = parts.port or DEFAULT_PORT
        except ValueError:
            raise errors.bad_request(Code.URL, "Malformed URL") from None
        self.host = parts.hostname.lower()
        self.user = unquote(parts.username) if parts.username else None
        self.segments = [unquote(s) for s in normalise_path(parts.path).split("/")[1:]]
        self.url = url

    @property
    def where(self) -> str:
        """host:port for messages (no user, no password)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def password_for(settings: Settings, host: str, port: int) -> str | None:
    credentials = dict(settings.job_credentials)
    bracketed = f"[{host}]" if ":" in host else host
    for key in (f"{bracketed}:{port}", bracketed, host):
        if key in credentials:
            return credentials[key]
    return None


class _Guarded:
    """Mixed into ftplib.FTP / FTP_TLS: guarded control and data connections, one deadline."""

    trusted = False
    deadline = float("inf")
    connect_timeout = 3.0

    def connect(self, host="", port=0, timeout=-999, source_address=None):  # ftplib's signature
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        self.sock = self._open(self.host, self.port)
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def _open(self, host: str, port: int) -> socket.socket:
        refused, failure = None, None
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            if not self.trusted and not is_public(address[0]):
                refused = address[0]
                continue
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.connect_timeout)
                sock.connect(address)
                sock.settimeout(self.timeout)
                return sock
            except OSError as e:
                sock.close()
                failure = e
        if failure is not None:
            raise failure
        raise AddressRefused(f"{host} resolves to an internal address ({refused})")

    def makepasv(self):
        """The data address: the control connection's peer, and nothing else."""
        peer = self.sock.getpeername()[0]
        if self.af == socket.AF_INET:
            named, port = ftplib.parse227(self.sendcmd("PASV"))
            if named not in (peer, "0.0.0.0"):
                raise AddressRefused(f"the server's PASV reply points at another host ({named})")
        else:
            _, port = ftplib.parse229(self.sendcmd("EPSV"), self.sock.getpeername())
        if not self.trusted and not is_public(peer):  # checked at connect; kept for the data side
            raise AddressRefused(f"data connection to an internal address ({peer})")
        self.check_deadline()
        return peer, port

    def sendport(self, host, port):  # active mode would let the server connect anywhere
        raise AddressRefused("active mode (PORT) is not used")

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise Deadline()


class GuardedFTP(_Guarded, ftplib.FTP):
    pass


class GuardedFTPS(_Guarded, ftplib.FTP_TLS):
    pass


def open_session(target: FtpTarget, settings: Settings, trusted: bool) -> ftplib.FTP:
    """A logged-in session in binary mode (PROT P for ftps). Blocking: call it in a thread."""
    if target.scheme == "ftps":
        context = ssl.create_default_context(cafile=settings.ca_certs)
        if not settings.validate_cert:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        ftp: ftplib.FTP = GuardedFTPS(context=context, timeout=settings.timeout)
    else:
        ftp = GuardedFTP(timeout=settings.timeout)
    ftp.trusted = trusted
    ftp.connect_timeout = settings.connect_timeout
    ftp.deadline = time.monotonic() + settings.timeout
    try:
        ftp.connect(target.host, target.port)
        if target.user:
            ftp.login(target.user, password_for(settings, target.host, target.port) or "")
        else:
            ftp.login()  # anonymous
        if isinstance(ftp, ftplib.FTP_TLS):
            ftp.prot_p()
        ftp.voidcmd("TYPE I")
        return ftp
    except BaseException:
        ftp.close()
        raise


def end_session(ftp: ftplib.FTP) -> None:
    try:
        ftp.quit()
    except (OSError, ftplib.Error, EOFError):
        pass
    finally:
        ftp.close()


def classify(e: BaseException) -> tuple[str, bool]:
    """(a one-line reason, whether trying again later may work) for a failed FTP exchange."""
    if isinstance(e, AddressRefused):
        return f"refused: {e}", False
    if isinstance(e, (Deadline, TimeoutError, socket.timeout)):
        return "timed out", True
    if isinstance(e, ftplib.error_temp):
        return f"server answered {_reply(e)}", True
    if isinstance(e, ftplib.error_perm):
        return f"server answered {_reply(e)}", False
    if isinstance(e, (ftplib.error_reply, ftplib.error_proto, EOFError)):
        return f"unexpected reply ({_reply(e)})", False
    if isinstance(e, ssl.SSLError):
        return f"TLS failed ({e.reason or type(e).__name__})", False
    if isinstance(e, ConnectionError):
        return f"connection failed ({e.strerror or type(e).__name__})", True
    if isinstance(e, socket.gaierror):
        return "cannot resolve the host name", False
    if isinstance(e, OSError):
        return f"connection failed ({e.strerror or type(e).__name__})", False
    return f"failed ({type(e).__name__})", False


def _reply(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


class FtpLoader:
    """ftp(s):// sources, capped at max_source_bytes; `trusted_hosts` (and allowed_hosts) may be
    on internal addresses."""

    def __init__(self, settings: Settings, trusted_hosts: tuple[str, ...] = ()):
        self._settings = settings
        self._trusted_hosts = tuple(trusted_hosts)

    def close(self) -> None:
        pass

    async def load(self, ref: str, validators: Validators | None = None) -> Source:
        """The file's bytes; `validators` are ignored (FTP has none worth trusting)."""
        target = FtpTarget(ref)
        trusted = named_host(ref, self._settings.allowed_hosts, self._trusted_hosts)
        try:
            body = await asyncio.to_thread(self._fetch, target, trusted)
        except ProxyError:
            raise
        except TooLarge:
            raise errors.source_too_large("Source image is larger than max_source_bytes") from None
        except AddressRefused as e:
            log.warning("refused FTP source %s: %s", target.where, e)
            raise errors.forbidden(Code.HOST, f"FTP source {target.where} refused: {e}; add {target.host} "
                                   "to allowed_hosts to fetch from it") from None
        except ftplib.error_perm as e:
            if str(e)[:3] == "550":
                raise errors.source_not_found(f"Source not found (FTP server answered {_reply(e)})") from None
            raise errors.origin_failed(f"FTP server answered {_reply(e)}") from None
        except Exception as e:  # noqa: BLE001 - every other failure of the exchange is the origin's
            reason, _ = classify(e)
            log.warning("FTP fetch from %s failed: %s", target.where, reason)
            if isinstance(e, (Deadline, TimeoutError, socket.timeout)):
                raise errors.origin_timeout("FTP origin timed out") from None
            raise errors.origin_failed(f"Cannot fetch the source over FTP: {reason}") from None
        return Source(body)

    def _fetch(self, target: FtpTarget, trusted: bool) -> bytes:
        limit = self._settings.max_source_bytes
        ftp = open_session(target, self._settings, trusted)
        try:
            for name in target.segments[:-1]:
                ftp.cwd(name)
            try:
                size = ftp.size(target.segments[-1])
            except ftplib.error_perm:
                size = None  # SIZE is optional; the count below still caps it
            if size is not None and size > limit:
                raise TooLarge()
            chunks: list[bytes] = []
            received = 0

            def take(chunk: bytes) -> None:
                nonlocal received
                received += len(chunk)
                if received > limit:
                    raise TooLarge()
                ftp.check_deadline()
                chunks.append(chunk)

            ftp.retrbinary(f"RETR {target.segments[-1]}", take, blocksize=BLOCK)
        except BaseException:
            ftp.close()  # perhaps mid-transfer: the control connection is in no state for QUIT
            raise
        end_session(ftp)
        return b"".join(chunks)
