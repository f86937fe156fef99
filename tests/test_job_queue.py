"""The job queues' shared behaviour, run against each backend: SqliteQueue on a real
file, RedisQueue on a real redis-server of the test's own.

The two-node tests run each node in a process of its own (multiprocessing, spawn:
a fresh interpreter, its own event loop and its own connections), and the dead node
is killed with SIGKILL while holding its leases."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
import uuid

import pytest
from support import start_redis, stop_redis

from imgproxy.jobs.model import DONE, PENDING, RUNNING, JobRecord, JobSpec, Output
from imgproxy.jobs.queue import SqliteQueue
from imgproxy.jobs.queue_redis import RedisQueue

SPEC = JobSpec("resize", "http://127.0.0.1:9/a.jpg", (Output({"w": "40"}, "file:///tmp/{$basename}-40.jpg"),),
               callback="http://127.0.0.1:9/done")
T0 = 1_700_000_000.0  # the callers' clock in the single-node tests


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory):
    proc, port = start_redis(tmp_path_factory.mktemp("redis"))
    yield port
    stop_redis(proc)


@pytest.fixture(params=["sqlite", "redis"])
def where(request, tmp_path):
    """What a node needs to open the queue: ("sqlite", path) or ("redis", url, prefix). Each
    test gets a queue of its own: a fresh file, or a fresh prefix on the module's Redis."""
    if request.param == "sqlite":
        return ("sqlite", str(tmp_path / "jobs.db"))
    port = request.getfixturevalue("redis_port")
    return ("redis", f"redis://127.0.0.1:{port}/0", f"test:{uuid.uuid4().hex}")


def open_queue(where):
    return SqliteQueue(where[1]) if where[0] == "sqlite" else RedisQueue(where[1], prefix=where[2])


async def close(queue) -> None:
    if isinstance(queue, RedisQueue):
        await queue.aclose()
    else:
        queue.close()


def job(n: int = 0, created: float = T0) -> JobRecord:
    return JobRecord(f"job-{n:03d}-{uuid.uuid4().hex[:8]}", SPEC, created=created)


def run(where, scenario):
    """Run `scenario(queue, *more)` in a fresh event loop; it names how many queues
    (nodes) it wants by its arity."""
    async def main():
        count = scenario.__code__.co_argcount
        queues = [open_queue(where) for _ in range(count)]
        try:
            return await scenario(*queues)
        finally:
            for q in queues:
                await close(q)
    return asyncio.run(main())


# --- one node ------------------------------------------------------------------------

def test_add_then_get_round_trip(where):
    async def scenario(q):
        record = job()
        record.destinations = ["file:///tmp/a-40.jpg"]
        await q.add(record)
        got = await q.get(record.id)
        assert got == record
        assert got.spec == SPEC and got.status == PENDING and got.attempts == 0
        assert got.started is None and got.finished is None and got.error is None
        assert await q.get("no-such-job") is None
    run(where, scenario)


def test_a_due_job_is_leased_once_and_its_attempt_counted(where):
    async def scenario(q):
        record = job()
        await q.add(record)
        leased = await q.lease("node-a", 30, T0 + 1)
        assert leased.id == record.id and leased.spec == SPEC
        assert leased.status == RUNNING and leased.attempts == 1 and leased.started == T0 + 1
        assert await q.lease("node-a", 30, T0 + 2) is None
        assert await q.lease("node-b", 30, T0 + 2) is None
        assert (await q.get(record.id)).status == RUNNING
    run(where, scenario)


def test_a_job_is_not_leased_before_it_is_due(where):
    async def scenario(q):
        await q.add(job(created=T0 + 10))
        assert await q.lease("node-a", 30, T0) is None
        assert (await q.lease("node-a", 30, T0 + 10)).attempts == 1
    run(where, scenario)


def test_a_lapsed_lease_is_taken_over_and_the_first_owner_refused(where):
    async def scenario(q):
        record = job()
        await q.add(record)
        first = await q.lease("node-a", 0.2, T0)
        assert first.attempts == 1
        assert await q.lease("node-b", 30, T0 + 0.1) is None  # not lapsed yet
        second = await q.lease("node-b", 30, T0 + 1)
        assert second.id == record.id and second.attempts == 2 and second.started == T0
        # node-a comes back late: its renew and its settle change nothing
        assert await q.renew(record.id, "node-a", T0 + 60) is False
        first.status, first.finished, first.results = DONE, T0 + 2, [{"by": "node-a"}]
        await q.settle(first, "node-a")
        now = await q.get(record.id)
        assert now.status == RUNNING and now.results == [] and now.finished is None
        assert await q.lease("node-c", 30, T0 + 2) is None  # still node-b's
        # node-b renews, so it is not taken at its first lease_until, then settles
        assert await q.renew(record.id, "node-b", T0 + 100) is True
        assert await q.lease("node-c", 30, T0 + 50) is None
        second.status, second.finished, second.results = DONE, T0 + 60, [{"by": "node-b"}]
        await q.settle(second, "node-b")
        assert (await q.get(record.id)).results == [{"by": "node-b"}]
    run(where, scenario)


def test_retry_is_due_again_at_its_time_only(where):
    async def scenario(q):
        record = job()
        await q.add(record)
        leased = await q.lease("node-a", 30, T0)
        leased.error = {"status_code": 502, "error_code": 1, "error": "origin down"}
        await q.retry(leased, "node-b", T0 + 5)  # not node-b's: no effect
        assert (await q.get(record.id)).status == RUNNING
        await q.retry(leased, "node-a", T0 + 5)
        waiting = await q.get(record.id)
        assert waiting.status == PENDING and waiting.attempts == 1 and waiting.error == leased.error
        assert await q.renew(record.id, "node-a", T0 + 60) is False  # no longer leased
        assert await q.lease("node-a", 30, T0 + 1) is None
        assert await q.lease("node-b", 30, T0 + 4.9) is None
        again = await q.lease("node-b", 30, T0 + 5)
        assert again.id == record.id and again.attempts == 2 and again.status == RUNNING
        assert await q.lease("node-a", 30, T0 + 6) is None
    run(where, scenario)


def test_settle_stores_the_end(where):
    async def scenario(q):
        done, failed = job(1), job(2)
        await q.add(done)
        await q.add(failed)
        for _ in range(2):
            leased = await q.lease("node-a", 30, T0 + 1)
            if leased.id == done.id:
                leased.status, leased.finished = DONE, T0 + 3
                leased.results = [{"destination": "file:///tmp/a-40.jpg", "width": 40, "height": 27}]
                leased.destinations = ["file:///tmp/a-40.jpg"]
            else:
                leased.status, leased.finished = "failed", T0 + 4
                leased.error = {"status_code": 404, "error_code": 2, "error": "source not found"}
            await q.settle(leased, "node-a")
        got = await q.get(done.id)
        assert got.status == DONE and got.finished == T0 + 3 and got.attempts == 1 and got.started == T0 + 1
        assert got.results == [{"destination": "file:///tmp/a-40.jpg", "width": 40, "height": 27}]
        assert got.destinations == ["file:///tmp/a-40.jpg"] and got.error is None
        bad = await q.get(failed.id)
        assert bad.status == "failed" and bad.error["error_code"] == 2 and bad.finished == T0 + 4
        # ended jobs are never leased again, nor renewed, even long after
        assert await q.lease("node-b", 30, T0 + 10_000) is None
        assert await q.renew(done.id, "node-a", T0 + 10_000) is False
    run(where, scenario)


def test_two_queue_objects_share_the_jobs(where):
    """Two nodes in one process, each with its own connection: one adds, the other leases."""
    async def scenario(a, b):
        record = job()
        await a.add(record)
        assert (await b.get(record.id)) == record
        leased = await b.lease("node-b", 30, T0)
        assert leased.id == record.id and await a.lease("node-a", 30, T0) is None
        leased.status, leased.finished = DONE, T0 + 1
        await b.settle(leased, "node-b")
        assert (await a.get(record.id)).status == DONE
    run(where, scenario)


# --- two nodes in processes of their own -------------------------------------------------

def _node(where, owner: str, seconds: float, ready, start, out, settle: bool, limit: int) -> None:
    """A node: once its queue is open (it releases `ready`) and `start` is set, lease jobs on
    the wall clock until none is due (or `limit`: a broken queue might hand them out
    forever), settling each after a moment's work if `settle`; report the ids leased, then
    wait to be killed or end."""
    async def main():
        q = open_queue(where)
        taken = []
        ready.release()
        start.wait(20)
        while len(taken) < limit:
            record = await q.lease(owner, seconds, time.time())
            if record is None:
                break
            taken.append((record.id, record.attempts))
            if settle:
                await asyncio.sleep(0.003)
                record.status, record.finished = DONE, time.time()
                await q.settle(record, owner)
        out.put(taken)
        if not settle:
            await asyncio.sleep(3600)  # holding its leases until SIGKILL
        await close(q)
    asyncio.run(main())


def _seed(where, count: int) -> list[str]:
    async def scenario(q):
        records = [job(n, created=time.time() - 1) for n in range(count)]
        for r in records:
            await q.add(r)
        return [r.id for r in records]
    return run(where, scenario)


def test_two_nodes_lease_each_job_exactly_once(where):
    ids = _seed(where, 50)
    ctx = multiprocessing.get_context("spawn")
    ready, start, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    nodes = [ctx.Process(target=_node, args=(where, f"node-{n}", 30, ready, start, out, True, 60)) for n in "ab"]
    for p in nodes:
        p.start()
    try:
        # both started and connected: on a busy machine one could otherwise take every job
        # before the other has imported anything
        for _ in nodes:
            assert ready.acquire(timeout=20)
        start.set()
        reports = [out.get(timeout=20) for _ in nodes]
    finally:
        for p in nodes:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
    leased = [i for report in reports for i, _ in report]
    assert sorted(leased) == sorted(ids)  # each exactly once
    assert all(attempts == 1 for report in reports for _, attempts in report)
    assert all(report for report in reports), [len(r) for r in reports]  # both nodes took some

    async def check(q):
        return {(await q.get(i)).status for i in ids}
    assert run(where, check) == {DONE}


def test_a_dead_nodes_jobs_go_to_another_after_its_lease(where):
    ids = _seed(where, 12)
    ctx = multiprocessing.get_context("spawn")
    ready, start, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    doomed = ctx.Process(target=_node, args=(where, "node-dead", 0.5, ready, start, out, False, 10))
    doomed.start()
    try:
        start.set()
        held = [i for i, _ in out.get(timeout=20)]
        assert len(held) == 10
    finally:
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.join(10)

    async def survivor(q):
        first = []  # before the dead node's leases lapse: only the two it left
        for _ in range(len(ids) + 1):  # bounded, should a broken queue hand out jobs forever
            if (r := await q.lease("node-live", 30, time.time())) is None:
                break
            first.append(r.id)
        await asyncio.sleep(0.6)
        later = []
        for _ in range(len(ids) + 1):
            if (r := await q.lease("node-live", 30, time.time())) is None:
                break
            later.append((r.id, r.attempts))
            r.status, r.finished = DONE, time.time()
            await q.settle(r, "node-live")
        return first, later

    first, later = run(where, survivor)
    assert sorted(first) == sorted(set(ids) - set(held))
    assert sorted(i for i, _ in later) == sorted(held)
    assert all(attempts == 2 for _, attempts in later)


# --- Redis only: the stream's consumer group tells the truth ---------------------------------

def test_redis_pending_entries_follow_the_lease_and_settle_empties_them(redis_port):
    import redis

    where = ("redis", f"redis://127.0.0.1:{redis_port}/0", f"test:{uuid.uuid4().hex}")
    prefix = where[2]
    client = redis.Redis(port=redis_port, decode_responses=True)

    def holders():
        return {p["consumer"] for p in client.xpending_range(f"{prefix}:ready", "runners", "-", "+", 10)}

    async def scenario(a, b):
        record = job()
        await a.add(record)
        assert client.zscore(f"{prefix}:delayed", record.id) == T0
        first = await a.lease("node-a", 1, T0)
        assert holders() == {"node-a"} and client.zscore(f"{prefix}:leased", record.id) == T0 + 1
        assert await a.renew(record.id, "node-a", T0 + 2)
        assert client.zscore(f"{prefix}:leased", record.id) == T0 + 2
        second = await b.lease("node-b", 30, T0 + 3)  # node-a's lease lapsed
        assert second.attempts == 2 and holders() == {"node-b"}
        await a.settle(first, "node-a")  # refused: the entry stays node-b's
        assert holders() == {"node-b"} and client.xlen(f"{prefix}:ready") == 1
        second.status, second.finished = DONE, T0 + 4
        await b.settle(second, "node-b")
        assert holders() == set() and client.xlen(f"{prefix}:ready") == 0
        assert client.zcard(f"{prefix}:leased") == client.zcard(f"{prefix}:delayed") == 0
        a.close()  # from inside a loop: closes in a task
        await asyncio.sleep(0.05)

    queues = []

    async def main():
        queues.extend([open_queue(where), open_queue(where)])
        try:
            await scenario(*queues)
        finally:
            await close(queues[1])
    asyncio.run(main())
    queues[1].close()  # outside any loop, after aclose: harmless
    client.close()
