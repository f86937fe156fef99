"""One SQLite file (WAL, synchronous writes) used from one thread of its own, off the event
loop: the job queue and the store's records keep their state this way."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor


class SqliteFile:
    """A base for stores kept in SQLite: subclasses run their queries as `_call(fn, ...)`
    with `fn` using `_db`."""

    def __init__(self, path: str, schema: str, thread_name: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._db: sqlite3.Connection | None = None
        self._thread.submit(self._open, path, schema).result()

    def _open(self, path: str, schema: str) -> None:
        db = sqlite3.connect(path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # an answer given means the change is on disk
        db.executescript(schema)
        self._db = db

    async def _call(self, fn, *args):
        """Run `fn(*args)` in the database's thread (every use of `_db` must)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def close(self) -> None:
        def shut():
            if self._db is not None:
                self._db.close()
        self._thread.submit(shut).result()
        self._thread.shutdown()
