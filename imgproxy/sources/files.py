"""file:// references, only below the operator's job_file_root: the Loader of job sources, and
the walk that job destinations (jobs/destinations.py) share with it.

A path is walked one directory at a time from an open descriptor of the root
(`dir_fd`, `O_NOFOLLOW`), so a symlink anywhere below the root, or one swapped in
while we walk, is refused rather than followed, and nothing resolves outside it.
The root itself is the operator's and may be reached through symlinks.
"""

from __future__ import annotations

import asyncio
import os
import stat
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator
from urllib.parse import unquote, urlsplit

from .. import errors
from ..errors import Code, ProxyError
from . import Source, Validators
from .paths import normalise_path

if TYPE_CHECKING:  # pragma: no cover
    from ..config import Settings

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
READ_CHUNK = 1 << 20


class PathRefused(Exception):
    """The path is not below the root (403), or meets a symlink or a non-directory on the way (400)."""


def file_url_segments(url: str) -> list[str]:
    """The decoded path segments of `file:///a/b`; a 400 (code 8) for any unsafe or odd form."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file" or parts.netloc.lower() not in ("", "localhost"):
        raise errors.bad_request(Code.URL, "A file URL is file:///absolute/path")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise errors.bad_request(Code.URL, "A file URL has no query or fragment")
    return [unquote(s) for s in normalise_path(parts.path).split("/")[1:]]


def below_root(root: str, url: str) -> list[str]:
    """The segments of file URL `url` relative to `root` (at least the file name); PathRefused
    when it is not below it."""
    segments = file_url_segments(url)
    for base in {os.path.abspath(root), os.path.realpath(root)}:
        prefix = [s for s in base.split(os.sep) if s]
        if segments[:len(prefix)] == prefix and len(segments) > len(prefix):
            return segments[len(prefix):]
    raise PathRefused("the path is not below job_file_root")


@contextmanager
def open_parent(root: str, relative: list[str], *, create: bool) -> Iterator[int]:
    """A descriptor of the directory that holds relative[-1], walked from `root` without
    following symlinks; missing directories are made when `create`. FileNotFoundError when a
    directory is missing and not `create`."""
    fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the root: the operator's, links allowed
    try:
        for name in relative[:-1]:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: checked below like any other
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                raise PathRefused(f"{name!r} on the path is a symlink or not a directory")
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:  # ELOOP / ENOTDIR: swapped for a symlink since the stat
                raise PathRefused(f"{name!r} on the path is a symlink or not a directory") from e
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def read_below(root: str, relative: list[str], limit: int) -> bytes:
    """The regular file at root/relative, refused past `limit` bytes (SourceTooLarge)."""
    with open_parent(root, relative, create=False) as parent:
        try:
            fd = os.open(relative[-1], os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
                         | getattr(os, "O_NONBLOCK", 0), dir_fd=parent)  # NONBLOCK: a FIFO does not hang
        except OSError as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise PathRefused("the file is a symlink or cannot be opened") from e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise PathRefused("not a regular file")
        if st.st_size > limit:
            raise SourceTooLarge()
        chunks, size = [], 0
        while chunk := f.read(min(READ_CHUNK, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # grew since the fstat
                raise SourceTooLarge()
        return b"".join(chunks)


class SourceTooLarge(Exception):
    pass


class FileLoader:
    """file:///path sources below settings.job_file_root (unset: every file URL is refused)."""

    def __init__(self, settings: Settings):
        self._settings = settings

    def close(self) -> None:
        pass

    async def load(self, ref: str, validators: Validators | None = None) -> Source:
        """The file's bytes; `validators` are ignored (a local file is always read afresh)."""
        root = self._settings.job_file_root
        if not root:
            raise errors.forbidden(Code.URL, "file sources are not enabled (job_file_root is unset)")
        try:
            relative = below_root(root, ref)
        except PathRefused as e:  # outside the root: not allowed (a symlink below it is a 400)
            raise errors.forbidden(Code.URL, f"File source refused: {e}") from None
        try:
            body = await asyncio.to_thread(read_below, root, relative, self._settings.max_source_bytes)
        except ProxyError:
            raise
        except PathRefused as e:
            raise errors.bad_request(Code.URL, f"File source refused: {e}") from None  # traversal: 400
        except SourceTooLarge:
            raise errors.source_too_large("Source image is larger than max_source_bytes") from None
        except (FileNotFoundError, NotADirectoryError):
            raise errors.source_not_found("Source file not found") from None
        except OSError as e:
            raise errors.origin_failed(f"Cannot read the source file: {e.strerror}") from None
        return Source(body)
