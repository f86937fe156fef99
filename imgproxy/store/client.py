"""Python helpers for application code: upload to the store, then build URLs and `<img>`
tags for an image by ID, as huImages' imageurl, scaled_imageurl, scaled_dimensions and
scaled_tag did.

    store = StoreClient("https://img.example.com", token="...", client_key="...",
                        sizes=["240x160", "75x75!"])
    image_id = store.upload("red-bicycle.jpg", title="A red bicycle")["id"]
    store.scaled_tag(image_id, "240x160")
    # <img src="https://img.example.com/images/<id>/240x160/a-red-bicycle.jpg" width="240" ...>

HTTP is the standard library's (urllib), so an application needs nothing more than this
package. Image records (GET /images/<id>) are kept in a small in-memory LRU: a ready
record's size, title and variants never change, so one request per image and process is
enough. Width and height come from sizes.scaled_size, the server's own geometry, so they
are those of the bytes served; no pixel is fetched.
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
import secrets
import threading
import unicodedata
import urllib.error
import urllib.request
from collections import OrderedDict
from typing import IO, Any, Iterable

from ..imaging.encode import extension
from ..signature import sign_path
from .ids import is_id
from .records import READY, image_path
from .sizes import is_size, scaled_size

MAX_SLUG = 60  # characters of the title kept in a file name


class StoreError(Exception):
    """The server refused or failed a request: its HTTP status, error code and reason."""

    def __init__(self, status: int, reason: str, error_code: int | None = None):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.error_code = error_code


class StoreClient:
    """Talks to one imgproxy's store at `base_url` (what comes before /images).

    token: the server's store_token, for upload and delete only.
    client_key: the server's client_key; with it, sizes outside `sizes` are signed.
    sizes: the server's store_sizes, the sizes anyone may ask for; None (the default) when
        the server has no list and takes any size. Other sizes need `client_key`.
    signed_reads: the server has store_signed_reads: every read is signed.
    cache_size: how many image records to keep in memory.
    """

    def __init__(self, base_url: str, token: str | None = None, client_key: str | bytes | None = None,
                 sizes: Iterable[str] | None = None, signed_reads: bool = False, timeout: float = 30.0,
                 cache_size: int = 1000):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.client_key = client_key or None
        self.sizes = None if sizes is None else tuple(sizes)
        for size in self.sizes or ():
            if not is_size(size):
                raise ValueError(f"Not a size: {size!r} (WxH or WxH!)")
        if signed_reads and not self.client_key:
            raise ValueError("signed_reads needs client_key to sign with")
        self.signed_reads = signed_reads
        self.timeout = timeout
        self.cache_size = cache_size
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    # --- writes (token) ----------------------------------------------------------------------
    def upload(self, image: bytes | str | os.PathLike | IO[bytes], title: str | None = None,
               background: bool = False) -> dict[str, Any]:
        """Store an image (bytes, a file's path, or a binary file object); its record as
        JSON (`id`, `width`, `height`, ...). With background, the server answers before it
        has made the variants (state pending)."""
        if isinstance(image, (str, os.PathLike)):
            with open(image, "rb") as f:
                data = f.read()
        elif hasattr(image, "read"):
            data = image.read()
        else:
            data = bytes(image)
        query = "?async=1" if background else ""
        if title is None:
            body, content_type = data, "application/octet-stream"
        else:  # a form, so the title stays out of the URL (and access logs)
            body, content_type = _form({"title": title}, "image", data)
        doc = self._request("POST", f"/images{query}", body, {"Content-Type": content_type}, write=True)
        self._remember(doc)
        return doc

    def delete(self, image_id: str) -> None:
        """Delete the image and every size of it; it drops from the cache too."""
        _check_id(image_id)
        with self._lock:
            self._cache.pop(image_id, None)
        self._request("DELETE", image_path(image_id), write=True)

    # --- records ------------------------------------------------------------------------------
    def info(self, image_id: str) -> dict[str, Any]:
        """The image's record (GET /images/<id>): cached once ready; a pending one is asked
        again each time. StoreError (status 404) for an unknown or deleted ID."""
        _check_id(image_id)
        with self._lock:
            doc = self._cache.get(image_id)
            if doc is not None:
                self._cache.move_to_end(image_id)
                return copy.deepcopy(doc)
        try:
            doc = self._request("GET", self._signed_read(image_path(image_id)))
        except StoreError as e:
            if e.status == 404:
                self.forget(image_id)
            raise
        self._remember(doc)
        return copy.deepcopy(doc)

    def forget(self, image_id: str) -> None:
        """Drop an image from the cache (deleted by someone else, say)."""
        with self._lock:
            self._cache.pop(image_id, None)

    # --- URLs and tags ------------------------------------------------------------------------
    def imageurl(self, image_id: str) -> str:
        """The URL of the image as uploaded; when the server does not serve originals
        (store_serve_original off), that of its largest variant. Signed with signed_reads."""
        doc = self.info(image_id)
        path, fmt = doc["url"], doc["format"]
        if path is None:
            if not doc["variants"]:
                raise ValueError(f"Image {image_id}: the server serves neither its original nor a variant")
            # of equal sizes (an image smaller than two variants), the one in the original's format
            largest = max(doc["variants"].values(), key=lambda v: (v["width"] * v["height"], v["format"] == fmt))
            path, fmt = largest["url"], largest["format"]
        return self._url(path + _file_name(doc["title"], fmt), self.signed_reads)

    def may_ask(self, size: str) -> bool:
        """True when this client can get a URL the server serves for `size`."""
        return is_size(size) and (self.sizes is None or size in self.sizes or bool(self.client_key))

    def scaled_imageurl(self, image_id: str, size: str) -> str:
        """The URL of the image at `size` (`240x160`, `75x75!`, `300x0`), with the title as
        its file name; signed when the size needs it. ValueError when it cannot be asked for."""
        self._check_askable(size)
        return self._scaled_url(self.info(image_id), size)

    def scaled_dimensions(self, image_id: str, size: str) -> tuple[int, int]:
        """(width, height) of the image at `size`: what the server will send, computed from
        the record alone."""
        _check_size(size)
        doc = self.info(image_id)
        return scaled_size(doc["width"], doc["height"], size)

    def scaled_tag(self, image_id: str, size: str, alt: str | None = None, **attributes: str) -> str:
        """An `<img>` of the image at `size`: src, width, height, alt (the title unless
        given), and a srcset with the size doubled when that is a true 2x this client may
        ask for. Further attributes (class_="..." for class) are added, escaped."""
        self._check_askable(size)
        doc = self.info(image_id)  # one record (one request at most) for the whole tag
        width, height = scaled_size(doc["width"], doc["height"], size)
        attrs = {"src": self._scaled_url(doc, size), "width": str(width), "height": str(height),
                 "alt": alt if alt is not None else doc["title"] or ""}
        double = doubled(size)
        if self.may_ask(double) and is_true_2x(doc["width"], doc["height"], size):
            attrs["srcset"] = f"{self._scaled_url(doc, double)} 2x"
        attrs.update((k.rstrip("_").replace("_", "-"), v) for k, v in attributes.items())
        return "<img " + " ".join(f'{k}="{html.escape(str(v), quote=True)}"' for k, v in attrs.items()) + ">"

    # --- plumbing ---------------------------------------------------------------------------
    def _check_askable(self, size: str) -> None:
        _check_size(size)
        if not self.may_ask(size):
            raise ValueError(f"Size {size} is not one of the server's sizes ({', '.join(self.sizes)}) "
                             "and there is no client_key to sign it with")

    def _scaled_url(self, doc: dict[str, Any], size: str) -> str:
        # a size keeps the original's format, but an SVG's is drawn as PNG (as the server does)
        fmt = "png" if doc["format"] == "svg" else doc["format"]
        path = f"{image_path(doc['id'])}/{size}{_file_name(doc['title'], fmt)}"
        unsigned = self.sizes is None or size in self.sizes
        return self._url(path, self.signed_reads or not unsigned)

    def _signed_read(self, path: str) -> str:
        return sign_path(self.client_key, path) if self.signed_reads else path

    def _url(self, path: str, signed: bool) -> str:
        return self.base_url + (sign_path(self.client_key, path) if signed else path)

    def _remember(self, doc: dict[str, Any]) -> None:
        if doc.get("state") != READY:
            return
        with self._lock:
            self._cache[doc["id"]] = doc
            self._cache.move_to_end(doc["id"])
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                 write: bool = False) -> dict[str, Any]:
        headers = dict(headers or {})
        if write:
            if not self.token:
                raise ValueError(f"{method} needs the store token: StoreClient(..., token=...)")
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base_url + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as e:
            raise _error(e) from None
        return json.loads(data) if data else {}


def doubled(size: str) -> str:
    """The size with both numbers doubled: 240x160 -> 480x320, 75x75! -> 150x150!."""
    width, _, rest = size.partition("x")
    height = rest.rstrip("!")
    return f"{int(width) * 2}x{int(height) * 2}{rest[len(height):]}"


def is_true_2x(width: int, height: int, size: str) -> bool:
    """Whether an image `width` x `height` is large enough for `size` doubled without being
    enlarged (never done): every side a crop or a single side asks for, the fit's deciding
    side (one is enough: the other then follows the aspect ratio)."""
    w, _, rest = size.partition("x")
    w2, h2 = 2 * int(w), 2 * int(rest.rstrip("!"))
    if not w2 or not h2:  # Wx0, 0xH: the side given
        return width >= w2 if w2 else height >= h2
    if rest.endswith("!"):
        return width >= w2 and height >= h2
    return width >= w2 or height >= h2


def slug(title: str | None) -> str:
    """A title as a file name's stem: ASCII letters, digits and dashes ("Ça va?" -> "ca-va")."""
    text = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", text)[:MAX_SLUG].strip("-")


def _file_name(title: str | None, fmt: str) -> str:
    """The optional last segment of a stored image's URL: `/<slug>.<ext>`, or nothing."""
    stem = slug(title)
    return f"/{stem}.{extension(fmt.upper())}" if stem else ""


def _check_id(image_id: str) -> None:
    if not is_id(image_id):
        raise ValueError(f"Not an image ID: {image_id!r}")


def _check_size(size: str) -> None:
    if not is_size(size):
        raise ValueError(f"Not a size: {size!r} (WxH, WxH! or Wx0)")


def _form(fields: dict[str, str], file_field: str, data: bytes) -> tuple[bytes, str]:
    boundary = "imgproxy-" + secrets.token_hex(16)
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
             + value.encode() + b"\r\n" for name, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="upload"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _error(e: urllib.error.HTTPError) -> StoreError:
    """The server's JSON error ({"status_code", "error_code", "error"}), else the HTTP reason."""
    try:
        body = json.loads(e.read() or b"{}")
    except (ValueError, OSError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return StoreError(e.code, str(body.get("error") or e.reason), body.get("error_code"))
