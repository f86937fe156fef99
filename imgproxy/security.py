"""Access control after the first checks: signature, client name, allowed hosts (Pilbox's
order), and what unsigned requests may ask for (sizes, presets_only).

A request is signed when it carries a valid `sig`. With `client_key` set, every
request must be signed, except under `presets_only`, where unsigned requests are
let through but may use only presets, listed sizes and `fmt`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from . import signature
from .errors import Code, forbidden
from .options import build, presets
from .options.path import PathRequest, read_path
from .urls import host_allowed

if TYPE_CHECKING:  # pragma: no cover
    from .config import Settings

# What an unsigned request may say under presets_only, beside the source and preset.
UNSIGNED_EXTRAS = ("fmt", "client")


def authorize(signed: bool, client: str | None, url: str, settings: Settings) -> None:
    """Signature (already checked: `signed`), client name, then the source's host."""
    if settings.client_key and not signed and not settings.presets_only:
        raise forbidden(Code.SIGNATURE, "Invalid signature")
    if settings.client_name and client != settings.client_name:
        raise forbidden(Code.CLIENT, "Invalid client")
    if url.startswith("/"):
        return  # a path on the configured origins: the operator's own hosts
    if settings.allowed_hosts and not host_allowed(url, settings.allowed_hosts):
        raise forbidden(Code.HOST, "Invalid host")


def _signed(settings: Settings, raw_query: str, raw_path: str | None = None) -> bool:
    """True for a valid signature; one that is there but wrong is 403 (without client_key
    there is nothing to sign with and `sig` is ignored, as Pilbox does)."""
    if not settings.client_key:
        return False
    if raw_path is None:
        valid = signature.verify(settings.client_key, raw_query)
    else:
        valid = signature.verify_path(settings.client_key, raw_path, raw_query)
    if not valid and signature.has_signature(raw_query):
        raise forbidden(Code.SIGNATURE, "Invalid signature")
    return valid


def check_image_request(options: build.Options, raw_query: str,
                        settings: Settings) -> tuple[tuple[str, ...], str, dict[str, str]]:
    """The query API's first checks, in Pilbox's order (operations, the source URL, then
    access control); returns the operations, the source and the options with presets applied."""
    layered = presets.layered(options, settings, options.get("preset") or None)
    ops = build.operations(layered, settings)
    url = build.source_url(options.get("url"), settings)
    signed = _signed(settings, raw_query)
    authorize(signed, options.get("client"), url, settings)
    if settings.presets_only and not signed:
        _only_presets(options, ("url", "preset"), "the query API")
        if not options.get("preset"):
            raise forbidden(Code.OPERATION, "Only presets may be used without a signature: add preset=")
    return ops, url, layered


def check_source_request(options: build.Options, raw_query: str, settings: Settings) -> str:
    """The source URL, then access control: what /info checks (it runs no operation)."""
    url = build.source_url(options.get("url"), settings)
    signed = _signed(settings, raw_query)
    if settings.presets_only and not signed:
        raise forbidden(Code.OPERATION, "/info needs a signature when only presets are allowed")
    authorize(signed, options.get("client"), url, settings)
    return url


def check_path_request(raw_path: str, query: Mapping[str, str], raw_query: str,
                       settings: Settings) -> PathRequest:
    """A path URL: its options and source, then signature, client, sizes and presets_only."""
    request = read_path(raw_path, query, settings)
    signed = _signed(settings, raw_query, raw_path)
    authorize(signed, query.get("client"), request.source, settings)
    if signed:
        return request
    if request.size and settings.sizes and request.size not in settings.sizes:
        raise forbidden(Code.DIMENSIONS, f"Size {request.size} is not allowed (sizes: {', '.join(settings.sizes)})")
    if settings.presets_only:
        _only_presets(query, (), "path URLs")
        if request.size and not settings.sizes:
            raise forbidden(Code.DIMENSIONS, "Only presets may be used without a signature")
    return request


def _only_presets(options: Mapping[str, str], allowed: tuple[str, ...], where: str) -> None:
    extra = sorted(set(options) - set(allowed) - set(UNSIGNED_EXTRAS))
    if extra:
        raise forbidden(Code.OPERATION, f"Only presets and fmt may be used without a signature on {where}; "
                        f"not {extra[0]}=")


def check_store_read(raw_path: str, raw_query: str, settings: Settings, size: str | None = None,
                     rendering: bool = False) -> None:
    """A read of a stored image by ID. Knowing the ID is enough, except: every read with
    store_signed_reads; a size outside a non-empty store_sizes (or any size under presets_only
    with no list); a query-API rendering when there is a key to sign with, or under presets_only."""
    if _signed(settings, raw_query, raw_path):
        return
    if settings.store_signed_reads:
        raise forbidden(Code.SIGNATURE, "Invalid signature: reads of stored images are signed")
    if size is not None and (size not in settings.store_sizes if settings.store_sizes else settings.presets_only):
        allowed = ", ".join(settings.store_sizes) or "none without a signature"
        raise forbidden(Code.DIMENSIONS, f"Size {size} is not allowed (sizes: {allowed})")
    if rendering and (settings.client_key or settings.presets_only):
        raise forbidden(Code.SIGNATURE, "Invalid signature")
