"""Access control after parsing: signature, client name, allowed hosts (Pilbox's order)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import signature
from .errors import Code, forbidden

if TYPE_CHECKING:  # pragma: no cover
    from .config import Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}


def authorize(raw_query: str, client: str | None, url: str, settings: Settings) -> None:
    if settings.client_key and not signature.verify(settings.client_key, raw_query):
        raise forbidden(Code.SIGNATURE, "Invalid signature")
    if settings.client_name and client != settings.client_name:
        raise forbidden(Code.CLIENT, "Invalid client")
    if settings.allowed_hosts and not host_allowed(url, settings.allowed_hosts):
        raise forbidden(Code.HOST, "Invalid host")


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


def _has_port(entry: str) -> bool:
    # "host:port" or "[v6]:port"; a bare IPv6 address has colons but no port
    head, sep, tail = entry.rpartition(":")
    return bool(sep) and tail.isdigit() and (entry.startswith("[") or ":" not in head)
