"""Where image records live, in upload order: SQLite on one node (the default), Redis
when several nodes share a store (metadata_redis.py). Both survive a restart."""

from __future__ import annotations

from typing import Protocol

from ..storage.sqlite import SqliteFile
from .records import ImageRecord


class Records(Protocol):
    async def add(self, record: ImageRecord) -> None: ...

    async def get(self, image_id: str) -> ImageRecord | None: ...

    async def update(self, record: ImageRecord) -> bool:
        """False when the image is gone (deleted meanwhile)."""

    async def delete(self, image_id: str) -> bool:
        """True when there was such an image."""

    async def page(self, after: str | None, limit: int) -> list[ImageRecord] | None:
        """Up to `limit` records in upload order, after the image `after`
        (None: from the first); None when `after` is no image."""

    async def neighbour(self, image_id: str, later: bool) -> str | None:
        """The ID uploaded next after (`later`) or last before `image_id`; None at either end
        (and when `image_id` is no image)."""

    async def random(self) -> str | None: ...

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                                   record TEXT NOT NULL);
"""


class SqliteRecords(SqliteFile):
    """Records in one SQLite file (WAL), every call in one thread of its own."""

    def __init__(self, path: str):
        super().__init__(path, _SCHEMA, "imgproxy-store-db")

    async def add(self, record: ImageRecord) -> None:
        await self._call(self._db.execute, "INSERT INTO images (id, record) VALUES (?, ?)",
                         (record.id, record.dumps()))

    async def get(self, image_id: str) -> ImageRecord | None:
        row = await self._call(self._one, "SELECT record FROM images WHERE id = ?", (image_id,))
        return ImageRecord.loads(row[0]) if row else None

    async def update(self, record: ImageRecord) -> bool:
        cursor = await self._call(self._db.execute, "UPDATE images SET record = ? WHERE id = ?",
                                  (record.dumps(), record.id))
        return cursor.rowcount == 1

    async def delete(self, image_id: str) -> bool:
        cursor = await self._call(self._db.execute, "DELETE FROM images WHERE id = ?", (image_id,))
        return cursor.rowcount == 1

    async def page(self, after: str | None, limit: int) -> list[ImageRecord] | None:
        return await self._call(self._page, after, limit)

    async def neighbour(self, image_id: str, later: bool) -> str | None:
        sql = ("SELECT id FROM images WHERE seq > (SELECT seq FROM images WHERE id = ?) ORDER BY seq LIMIT 1"
               if later else
               "SELECT id FROM images WHERE seq < (SELECT seq FROM images WHERE id = ?) ORDER BY seq DESC LIMIT 1")
        row = await self._call(self._one, sql, (image_id,))
        return row[0] if row else None

    async def random(self) -> str | None:
        # A random point in the seq range, then the first image at or after it: no table scan.
        row = await self._call(self._one, "SELECT id FROM images WHERE seq >= (SELECT abs(random()) % "
                               "(max(seq) - min(seq) + 1) + min(seq) FROM images) ORDER BY seq LIMIT 1", ())
        return row[0] if row else None

    def _one(self, sql: str, args: tuple):
        return self._db.execute(sql, args).fetchone()

    def _page(self, after: str | None, limit: int) -> list[ImageRecord] | None:
        start = 0
        if after is not None:
            row = self._one("SELECT seq FROM images WHERE id = ?", (after,))
            if row is None:
                return None
            start = row[0]
        rows = self._db.execute("SELECT record FROM images WHERE seq > ? ORDER BY seq LIMIT ?",
                                (start, limit)).fetchall()
        return [ImageRecord.loads(r[0]) for r in rows]
