"""Blobs as files under a root directory, optionally bounded in bytes (least recently used out).

Disk I/O runs in threads, off the event loop. Writes go to a temporary file in the
same directory, then os.replace(), so a crash never leaves half a blob under a
real name. In a bounded store recency is the files' modification time, so it survives
a restart; an unbounded one never touches a file it reads.
"""

from __future__ import annotations

import asyncio
import collections
import os
import tempfile
import threading

from . import StorageError, check_key


class FileStore:
    def __init__(self, root: str, max_bytes: int | None = None, fan_out: bool = True,
                 file_mode: int | None = None):
        """`fan_out`: file each name under its first two characters (keys that spread by
        themselves, like the upload store's, say False and keep the key's own folders).
        `file_mode`: the files' permissions (0o644 for a web server to read); else private.
        Without `max_bytes` nothing is counted and nothing is read at start."""
        self.root = root
        self.max_bytes = max_bytes
        self.fan_out = fan_out
        self.file_mode = file_mode
        self._sizes: collections.OrderedDict[str, int] = collections.OrderedDict()  # oldest first
        self._total = 0
        self._lock = threading.Lock()
        os.makedirs(root, exist_ok=True)
        if max_bytes is not None:
            self._scan()

    def _path(self, key: str) -> str:
        *folders, name = check_key(key)
        # Fan out by the name's first two characters: no folder grows to millions of files.
        return os.path.join(self.root, *folders, *([name[:2]] if self.fan_out else []), name)

    def _key(self, path: str) -> str:
        parts = os.path.relpath(path, self.root).split(os.sep)
        return "/".join(parts[:-2] + parts[-1:] if self.fan_out else parts)

    def _scan(self) -> None:
        """Rebuild sizes and recency from the files, after a restart."""
        found = []
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = os.path.join(folder, name)
                if name.startswith("."):  # a temporary file a crash left behind
                    _remove(path)
                    continue
                st = os.stat(path)
                found.append((st.st_mtime, self._key(path), st.st_size))
        for _, key, size in sorted(found):
            self._sizes[key] = size
            self._total += size
        self._evict()

    # the protocol, off the event loop
    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._get, key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, key, data)

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        return await asyncio.to_thread(self._put_if_absent, key, data)

    async def head(self, key: str) -> int | None:
        return await asyncio.to_thread(self._head, key)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._delete, key)

    async def list(self, prefix: str = "") -> list[str]:
        if self.max_bytes is None:
            return await asyncio.to_thread(self._walk, prefix)
        with self._lock:
            return [k for k in self._sizes if k.startswith(prefix)]

    # the work, in a thread
    def _get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(str(e)) from e
        if self.max_bytes is None:
            # Nothing is evicted, so recency is not kept: a read leaves the file's mtime (and
            # so a web server's ETag and Last-Modified for it, e.g. the upload store's) alone.
            return data
        with self._lock:
            if key in self._sizes:
                self._sizes.move_to_end(key)
        try:
            os.utime(path)  # recency survives a restart
        except OSError:
            pass
        return data

    def _put(self, key: str, data: bytes) -> None:
        if self.max_bytes is not None and len(data) > self.max_bytes:
            return
        path = self._path(key)
        try:
            tmp = self._write_temporary(path, data)
            os.replace(tmp, path)
        except OSError as e:
            raise StorageError(str(e)) from e
        self._account(key, len(data))

    def _put_if_absent(self, key: str, data: bytes) -> bool:
        if self.max_bytes is not None and len(data) > self.max_bytes:
            # put() drops it silently (a cache), but here the caller relies on the answer
            raise StorageError(f"{len(data)} bytes do not fit in a store of {self.max_bytes}")
        path = self._path(key)
        tmp = None
        try:
            tmp = self._write_temporary(path, data)
            # link() never replaces an existing name: of two racing writers exactly one
            # succeeds, and the name only ever appears with the whole blob behind it
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as e:
            raise StorageError(str(e)) from e
        finally:
            if tmp is not None:
                _remove(tmp)
        self._account(key, len(data))
        return True

    def _write_temporary(self, path: str, data: bytes) -> str:
        """A temporary file holding `data` in `path`'s folder (a dot name: _scan removes leftovers)."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if self.file_mode is not None:  # files for a web server to read: its folders too, whatever the umask
            for folder in self._folders(path):
                os.chmod(folder, 0o755)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".")
        try:
            if self.file_mode is not None:
                os.fchmod(fd, self.file_mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BaseException:
            _remove(tmp)
            raise
        return tmp

    def _walk(self, prefix: str) -> list[str]:
        """Keys under `prefix` read from the disk (an unbounded store keeps no index)."""
        folder, _, _ = prefix.rpartition("/")
        if folder:
            check_key(folder)
        found = []
        for path_folder, _, names in os.walk(os.path.join(self.root, *folder.split("/") if folder else [])):
            for name in names:
                if not name.startswith("."):
                    key = self._key(os.path.join(path_folder, name))
                    if key.startswith(prefix):
                        found.append(key)
        return sorted(found)

    def _head(self, key: str) -> int | None:
        try:
            return os.stat(self._path(key)).st_size
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(str(e)) from e

    def _account(self, key: str, size: int) -> None:
        with self._lock:
            self._total -= self._sizes.pop(key, 0)
            self._sizes[key] = size
            self._total += size
            self._evict()

    def _delete(self, key: str) -> None:
        path = self._path(key)
        with self._lock:
            self._total -= self._sizes.pop(key, 0)
        _remove(path)
        if not self.fan_out:  # the key's own folders: emptied ones go too, up to the root
            for folder in self._folders(path):
                try:
                    os.rmdir(folder)
                except OSError:  # not empty (or gone): the rest above stays
                    break

    def _folders(self, path: str):
        """The folders holding `path`, innermost first, up to the root (not included)."""
        folder = os.path.dirname(path)
        while folder != self.root and folder.startswith(self.root + os.sep):
            yield folder
            folder = os.path.dirname(folder)

    def _evict(self) -> None:
        while self.max_bytes is not None and self._total > self.max_bytes and self._sizes:
            key, size = self._sizes.popitem(last=False)
            self._total -= size
            _remove(self._path(key))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
