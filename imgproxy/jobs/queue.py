"""Durable job queues with leases: a job answered 202 is never lost.

A runner leases a job for a while and renews the lease while it works; a runner
that dies (or a server killed with kill -9) leaves a lease that expires, and the
job runs again: delivery is at least once. SqliteQueue is the embedded default
(one node); a Redis queue serves several nodes (queue_redis.py).
"""

from __future__ import annotations

import json
from typing import Protocol

from ..storage.sqlite import SqliteFile
from .model import DONE, FAILED, PENDING, RUNNING, JobRecord, JobSpec


class JobQueue(Protocol):
    async def add(self, record: JobRecord, due: float | None = None) -> None:
        """Keep the job, due at `due` (default: at once, its created time)."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def lease(self, owner: str, seconds: float, now: float) -> JobRecord | None:
        """A job that is due (pending and its time has come, or running with a lapsed
        lease), now running for `owner` until now + seconds; its attempts counted."""

    async def renew(self, job_id: str, owner: str, until: float) -> bool:
        """False when the lease is no longer `owner`'s (it lapsed and another took it)."""

    async def settle(self, record: JobRecord, owner: str) -> None:
        """Store the job's end (done or failed) if `owner` still holds it."""

    async def retry(self, record: JobRecord, owner: str, at: float) -> None:
        """Back to pending, due again at `at`, if `owner` still holds it."""

    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, spec TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
    error TEXT, results TEXT NOT NULL, destinations TEXT NOT NULL,
    created REAL NOT NULL, started REAL, finished REAL,
    due REAL NOT NULL, lease_owner TEXT, lease_until REAL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, due);
"""
_COLUMNS = "id, spec, status, attempts, error, results, destinations, created, started, finished"


class SqliteQueue(SqliteFile):
    """Jobs in one SQLite file (WAL): every call runs in one thread of its own."""

    def __init__(self, path: str):
        super().__init__(path, _SCHEMA, "imgproxy-jobs-db")

    # --- the protocol -------------------------------------------------------------------
    async def add(self, record: JobRecord, due: float | None = None) -> None:
        await self._call(self._add, record, record.created if due is None else due)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._call(self._get, job_id)

    async def lease(self, owner: str, seconds: float, now: float) -> JobRecord | None:
        return await self._call(self._lease, owner, seconds, now)

    async def renew(self, job_id: str, owner: str, until: float) -> bool:
        return await self._call(self._renew, job_id, owner, until)

    async def settle(self, record: JobRecord, owner: str) -> None:
        await self._call(self._store, record, owner, record.finished or 0.0)

    async def retry(self, record: JobRecord, owner: str, at: float) -> None:
        record.status = PENDING
        await self._call(self._store, record, owner, at)

    # --- in the database thread -----------------------------------------------------------
    def _add(self, r: JobRecord, due: float) -> None:
        self._db.execute(
            f"INSERT INTO jobs ({_COLUMNS}, due) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.id, r.spec.dumps(), r.status, r.attempts, _json(r.error), json.dumps(r.results),
             json.dumps(r.destinations), r.created, r.started, r.finished, due))

    def _get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row else None

    def _lease(self, owner: str, seconds: float, now: float) -> JobRecord | None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # one leaser at a time, across processes too
        try:
            row = db.execute(
                "SELECT id FROM jobs WHERE (status = ? AND due <= ?) OR (status = ? AND lease_until < ?) "
                "ORDER BY due LIMIT 1", (PENDING, now, RUNNING, now)).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            db.execute("UPDATE jobs SET status = ?, attempts = attempts + 1, lease_owner = ?, lease_until = ?, "
                       "started = COALESCE(started, ?) WHERE id = ?", (RUNNING, owner, now + seconds, now, row[0]))
            record = _record(db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (row[0],)).fetchone())
            db.execute("COMMIT")
            return record
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _renew(self, job_id: str, owner: str, until: float) -> bool:
        cursor = self._db.execute("UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_owner = ? AND status = ?",
                                  (until, job_id, owner, RUNNING))
        return cursor.rowcount == 1

    def _store(self, r: JobRecord, owner: str, due: float) -> None:
        self._db.execute(
            "UPDATE jobs SET status = ?, error = ?, results = ?, destinations = ?, finished = ?, due = ?, "
            "lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
            (r.status, _json(r.error), json.dumps(r.results), json.dumps(r.destinations),
             r.finished if r.status in (DONE, FAILED) else None, due, r.id, owner))


def _json(value) -> str | None:
    return None if value is None else json.dumps(value)


def _record(row) -> JobRecord:
    (job_id, spec, status, attempts, error, results, destinations, created, started, finished) = row
    return JobRecord(job_id, JobSpec.loads(spec), status, attempts, json.loads(error) if error else None,
                     json.loads(results), json.loads(destinations), created, started, finished)
