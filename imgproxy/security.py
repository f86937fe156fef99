"""Access control after the first checks: signature, client name, allowed hosts (Pilbox's order)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import signature
from .errors import Code, forbidden
from .options import build
from .urls import host_allowed

if TYPE_CHECKING:  # pragma: no cover
    from .config import Settings


def authorize(raw_query: str, client: str | None, url: str, settings: Settings) -> None:
    if settings.client_key and not signature.verify(settings.client_key, raw_query):
        raise forbidden(Code.SIGNATURE, "Invalid signature")
    if settings.client_name and client != settings.client_name:
        raise forbidden(Code.CLIENT, "Invalid client")
    if settings.allowed_hosts and not host_allowed(url, settings.allowed_hosts):
        raise forbidden(Code.HOST, "Invalid host")


def check_image_request(options: build.Options, raw_query: str, settings: Settings) -> tuple[tuple[str, ...], str]:
    """Pilbox's first checks, in its order: operations, the source URL, then access control."""
    ops = build.operations(options, settings)
    url = check_source_request(options, raw_query, settings)
    return ops, url


def check_source_request(options: build.Options, raw_query: str, settings: Settings) -> str:
    """The source URL, then access control: what /info checks (it runs no operation)."""
    url = build.source_url(options.get("url"), settings)
    authorize(raw_query, options.get("client"), url, settings)
    return url
