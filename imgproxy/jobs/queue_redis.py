"""The job queue in Redis, shared by several nodes (issue 11: `job_queue_url = "redis://..."`).

Any number of servers behind one load balancer use one Redis: any of them takes a job
another one accepted, and any of them answers `GET /jobs/<id>`. The semantics are
SqliteQueue's (queue.py), call for call; only the storage differs.

Keys (`P` is the prefix, "imgproxy:jobs" by default):

- `P:job:<id>`  a hash, the record: spec, results, destinations and error as JSON,
  status, attempts, created/started/finished, and while running `lease_owner`,
  `lease_until` (the caller's clock) and `entry` (its stream entry).
- `P:delayed`   a sorted set of the pending jobs not yet in the stream, scored by the
  time they are due: a new job (due at `created`) and a job to retry (due at `at`).
- `P:ready`     a stream with the consumer group "runners": the due pending jobs, one
  entry each ({"id": <id>}). A node leases by XREADGROUP as consumer `owner`, so a
  delivered, unacknowledged entry sits in the group's pending entries list (PEL)
  under the node holding it; XPENDING shows who holds what.
- `P:leased`    a sorted set of the running jobs, scored by `lease_until`.

Every call of the protocol is one Lua script (add, lease, renew, settle/retry), so
each is atomic in Redis: two nodes never both move a due job into the stream, never
both take one entry or one lapsed lease, and a late settle is checked and applied
in one step. `lease`, in one script: moves the due jobs of `delayed` (up to 100)
into the stream; takes the running job whose lease lapsed longest ago (`leased`
below `now`), XCLAIMing its entry to the new owner (a dead node's jobs); else reads
the next new entry of the stream (XREADGROUP COUNT 1, non-blocking). Lapsed leases
go first: they were due before anything still in the stream. `renew`, `settle` and
`retry` act only if the hash still says running for `owner`; a lease that lapsed and
was taken has a new owner, so the first owner's late renew returns False and its
settle or retry changes nothing. `settle` stores the end and XACK + XDELs the entry;
`retry` stores the record as pending, XACK + XDELs the entry and puts the id in
`delayed` at `at`, whence a later lease moves it back into the stream.

Why lapses are found in `leased`, not by XAUTOCLAIM's min-idle: the protocol's clock
is the caller's (`now`, `until`; tests pass their own), while a stream entry's idle
time is the Redis server's and counts from the last delivery, not from the last
renew. So `lease_until` in the hash decides, and `leased` indexes it. The
assumption: the nodes' clocks agree to well within a lease time (NTP); a node whose
clock runs ahead by d takes lapsed jobs d early. The PEL is kept true all the same:
a takeover XCLAIMs the entry to its new owner, a renew XCLAIMs it to the same owner
(JUSTID: resetting its idle time, not counting a delivery).

Jobs are never lost, as long as Redis keeps what it acknowledged:

- `add` writes the hash and the `delayed` entry in one script; the 202 follows it.
- A pending job is always in `delayed` or an undelivered stream entry; a running one
  always in `leased` with its entry in the PEL; both moves (delayed -> stream,
  stream -> running) happen inside one script with the hash update.
- An entry is acknowledged only by `settle` or `retry`, in the same script that
  stores the job's end or puts it back in `delayed`.
- A node dying at any point between calls leaves a running job with a lease that
  lapses; the next lease on any node takes it (attempts counted again): delivery is
  at least once, as with SqliteQueue.
- A reply lost to a timeout or a dropped connection (the script ran, the node does
  not know): a lease nobody uses lapses and the job runs later; a settle that did not
  run leaves the lease to lapse and the job runs again. Errors are not retried here:
  redis-py's exceptions reach the caller, like sqlite3's from SqliteQueue.

Limits: durability is Redis's. For "a 202 is on disk" as SqliteQueue gives it, run
Redis with `appendonly yes` and `appendfsync always` (`everysec` may lose the last
second on a Redis crash); an asynchronous replica promoted by a failover may lack the
last writes. Jobs are kept after they end, as in SQLite (nothing expires them). The
scripts build the job keys from the prefix, so on Redis Cluster the prefix needs a
hash tag ("{imgproxy:jobs}") to keep every key in one slot.
"""

from __future__ import annotations

import asyncio
import json

from .model import DONE, FAILED, PENDING, JobRecord, JobSpec

GROUP = "runners"
MOVE_AT_ONCE = 100  # due jobs moved from `delayed` into the stream by one lease

# KEYS: job key, delayed. ARGV: id, created, then the hash's fields and values.
_ADD = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('job ' .. ARGV[1] .. ' exists')
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# KEYS: ready, delayed, leased. ARGV: job key prefix, group, owner, now, until, moves.
_LEASE = """
local ready, delayed, leased = KEYS[1], KEYS[2], KEYS[3]
local P, group, owner, now, untl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', ready) == 0 then
  redis.call('XGROUP', 'CREATE', ready, group, '0', 'MKSTREAM')
end
-- due jobs into the stream, the earliest first
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[6]))) do
  redis.call('ZREM', delayed, id)
  if redis.call('HGET', P .. id, 'status') == 'pending' then
    redis.call('HSET', P .. id, 'entry', redis.call('XADD', ready, '*', 'id', id))
  end
end
local function take(id)
  local key = P .. id
  redis.call('HSET', key, 'status', 'running', 'lease_owner', owner, 'lease_until', untl)
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSETNX', key, 'started', now)
  redis.call('ZADD', leased, untl, id)
  return redis.call('HGETALL', key)
end
-- a lapsed lease (a node died, or stopped renewing): the longest lapsed first
while true do
  local lapsed = redis.call('ZRANGEBYSCORE', leased, '-inf', '(' .. now, 'LIMIT', 0, 1)[1]
  if not lapsed then break end
  local key = P .. lapsed
  local entry = redis.call('HGET', key, 'entry')
  if redis.call('HGET', key, 'status') == 'running' and entry then
    redis.call('XCLAIM', ready, group, owner, 0, entry, 'JUSTID')
    return take(lapsed)
  end
  redis.call('ZREM', leased, lapsed)  -- its hash is gone or no longer running
end
-- else the next new entry of the stream
while true do
  local got = redis.call('XREADGROUP', 'GROUP', group, owner, 'COUNT', 1, 'STREAMS', ready, '>')
  if not got then return false end
  local entry = got[1][2][1]
  local id = entry[2][2]
  local key = P .. id
  if redis.call('HGET', key, 'status') == 'pending' and redis.call('HGET', key, 'entry') == entry[1] then
    return take(id)
  end
  redis.call('XACK', ready, group, entry[1])  -- a stale entry: its job is gone or elsewhere
  redis.call('XDEL', ready, entry[1])
end
"""

# KEYS: job key, ready, leased. ARGV: id, owner, until, group.
_RENEW = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'lease_owner') ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'lease_until', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
local entry = redis.call('HGET', KEYS[1], 'entry')
if entry then redis.call('XCLAIM', KEYS[2], ARGV[4], ARGV[2], 0, entry, 'JUSTID') end
return 1
"""

# settle and retry. KEYS: job key, ready, leased, delayed.
# ARGV: id, owner, group, at ('' to settle), error ('' for none), then fields and values.
_STORE = """
local key = KEYS[1]
if redis.call('HGET', key, 'lease_owner') ~= ARGV[2] then return 0 end
local entry = redis.call('HGET', key, 'entry')
redis.call('HDEL', key, 'lease_owner', 'lease_until', 'entry', 'error', 'finished')
redis.call('HSET', key, unpack(ARGV, 6))
if ARGV[5] ~= '' then redis.call('HSET', key, 'error', ARGV[5]) end
redis.call('ZREM', KEYS[3], ARGV[1])
if entry then
  redis.call('XACK', KEYS[2], ARGV[3], entry)
  redis.call('XDEL', KEYS[2], entry)
end
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1]) end
return 1
"""


class RedisQueue:
    """Jobs in one Redis, shared by every node using the same url and prefix."""

    def __init__(self, url: str, prefix: str = "imgproxy:jobs", timeout: float = 2.0):
        import redis.asyncio as redis  # only needed when the queue is in Redis

        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                            retry_on_timeout=False, decode_responses=True)
        self._jobs = f"{prefix}:job:"
        self._ready, self._delayed, self._leased = f"{prefix}:ready", f"{prefix}:delayed", f"{prefix}:leased"
        self._add = self._client.register_script(_ADD)
        self._lease = self._client.register_script(_LEASE)
        self._renew = self._client.register_script(_RENEW)
        self._store = self._client.register_script(_STORE)
        self._closing: asyncio.Task | None = None

    # --- the protocol -------------------------------------------------------------------
    async def add(self, record: JobRecord, due: float | None = None) -> None:
        fields = {
            "id": record.id, "spec": record.spec.dumps(), "status": record.status, "attempts": record.attempts,
            "results": json.dumps(record.results), "destinations": json.dumps(record.destinations),
            "created": repr(record.created), "started": record.started, "finished": record.finished,
            "error": None if record.error is None else json.dumps(record.error),
        }
        await self._add(keys=[self._jobs + record.id, self._delayed],
                        args=[record.id, repr(record.created if due is None else due), *_flat(fields)])

    async def get(self, job_id: str) -> JobRecord | None:
        found = await self._client.hgetall(self._jobs + job_id)
        return _record(found) if found else None

    async def lease(self, owner: str, seconds: float, now: float) -> JobRecord | None:
        got = await self._lease(keys=[self._ready, self._delayed, self._leased],
                                args=[self._jobs, GROUP, owner, repr(now), repr(now + seconds), MOVE_AT_ONCE])
        if not got:
            return None
        return _record(dict(zip(got[::2], got[1::2])))

    async def renew(self, job_id: str, owner: str, until: float) -> bool:
        done = await self._renew(keys=[self._jobs + job_id, self._ready, self._leased],
                                 args=[job_id, owner, repr(until), GROUP])
        return done == 1

    async def settle(self, record: JobRecord, owner: str) -> None:
        await self._store_as(record, owner, None)

    async def retry(self, record: JobRecord, owner: str, at: float) -> None:
        record.status = PENDING
        await self._store_as(record, owner, at)

    def close(self) -> None:
        """Close the connections: in the running loop if there is one (the close then
        finishes later; `aclose` waits for it), else right away."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._closing = loop.create_task(self.aclose())
            return
        try:
            asyncio.run(self.aclose())
        except (RuntimeError, OSError):  # its connections belonged to a loop now closed
            pass

    async def aclose(self) -> None:
        closer = getattr(self._client, "aclose", None) or self._client.close  # aclose: redis-py >= 5.0.1
        await closer()

    # --- helpers --------------------------------------------------------------------------
    async def _store_as(self, r: JobRecord, owner: str, at: float | None) -> None:
        fields = {"status": r.status, "results": json.dumps(r.results),
                  "destinations": json.dumps(r.destinations),
                  "finished": repr(r.finished) if r.status in (DONE, FAILED) and r.finished is not None else None}
        await self._store(keys=[self._jobs + r.id, self._ready, self._leased, self._delayed],
                          args=[r.id, owner, GROUP, "" if at is None else repr(at),
                                "" if r.error is None else json.dumps(r.error), *_flat(fields)])


def _flat(fields: dict) -> list:
    """A hash's fields and values for HSET, leaving out the None ones (absent in the hash)."""
    return [item for name, value in fields.items() if value is not None for item in (name, str(value))]


def _number(found: dict, name: str) -> float | None:
    return float(found[name]) if name in found else None


def _record(found: dict) -> JobRecord:
    return JobRecord(found["id"], JobSpec.loads(found["spec"]), found["status"], int(found["attempts"]),
                     json.loads(found["error"]) if "error" in found else None, json.loads(found["results"]),
                     json.loads(found["destinations"]), float(found["created"]), _number(found, "started"),
                     _number(found, "finished"))
