"""Source URLs: the form a fetchable URL must have, and matching it against allowed hosts.

Used on the URL a client sends and again on every redirect an origin answers.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from .errors import Code, bad_request

MAX_URL_LENGTH = 2048
_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ftps": 21}


def _check_host(host: str) -> None:
    # Hosts whose last label starts with a digit are IPv4 to a browser or libc;
    # only the canonical dotted quad is accepted (no 127.1, 0x7f000001, 0177.0.0.1).
    last = host.rstrip(".").rsplit(".", 1)[-1]
    if last[:1].isdigit() or last[:2].lower() == "0x":
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise bad_request(Code.URL, f"Invalid host: {host}") from None


def check_url(url: str) -> str:
    """Reject what is not a plain absolute http(s) URL; returns it unchanged."""
    if len(url) > MAX_URL_LENGTH:
        raise bad_request(Code.URL, f"URL longer than {MAX_URL_LENGTH} characters")
    if _BAD_URL_CHARS.search(url):
        raise bad_request(Code.URL, "URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise bad_request(Code.URL, "Malformed URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise bad_request(Code.URL, "Unsupported protocol")
    if "@" in parts.netloc:
        raise bad_request(Code.URL, "URL must not contain user info")
    if not parts.hostname:
        raise bad_request(Code.URL, "URL has no host")
    if not parts.netloc.startswith("["):
        _check_host(parts.hostname)
    return url


def host_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """`host` entries match any port; `host:port` entries match exactly."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    for entry in allowed:
        entry_host, _, entry_port = entry.lower().rpartition(":") if _has_port(entry) else (entry.lower(), "", "")
        if entry_host.strip("[]").rstrip(".") == host and (not entry_port or int(entry_port) == port):
            return True
    return False


def named_host(url: str, allowed_hosts: tuple[str, ...], extra: tuple[str, ...] = ()) -> bool:
    """The URL's host is one the operator named (allowed_hosts, or `extra` such as the
    origins or job destinations): the address guard lets such hosts be internal."""
    hosts = tuple(allowed_hosts) + tuple(extra)
    return bool(hosts) and host_allowed(url, hosts)


def _has_port(entry: str) -> bool:
    # "host:port" or "[v6]:port"; a bare IPv6 address has colons but no port
    head, sep, tail = entry.rpartition(":")
    return bool(sep) and tail.isdigit() and (entry.startswith("[") or ":" not in head)
