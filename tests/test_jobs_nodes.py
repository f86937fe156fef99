"""Two servers on one Redis job queue: every job delivered once, any node answers for any job,
and a node killed mid-run hands its jobs to the other."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from support import Proxy, Receiver, decode, encode, quadrants, serve_gated, start_redis, stop_redis
from support import job_post as post
from support import job_status as status
from support import job_wait as wait_done

KEY = "nodes-secret"
PHOTO = encode(quadrants((320, 214)), "JPEG")


@pytest.fixture
def cluster(tmp_path, origin):
    redis_proc, port = start_redis(tmp_path)
    receiver = Receiver()

    def node(name: str) -> Proxy:
        return Proxy("--workers=1", "--jobs", f"--job_key={KEY}", f"--job_queue_url=redis://127.0.0.1:{port}/0",
                     f"--job_allowed_destinations={receiver.url('/')}", "--allowed_hosts=127.0.0.1",
                     "--job_lease_seconds=1", "--job_retry_seconds=0.2", log_path=tmp_path / f"{name}.log").launch()
    nodes = [node("a"), node("b")]  # started side by side
    for n in nodes:
        n.wait_ready()
    yield nodes, receiver
    for n in nodes:
        n.stop()
    receiver.stop()
    stop_redis(redis_proc)


def job(origin, n: int, receiver, path: str = "/nodes/photo.jpg") -> dict:
    return {"operationType": "resize", "srcURL": origin.url(path), "method": "PUT",
            "dstURL": receiver.url(f"/put/job-{n}.jpg"), "args": {"width": 20 + n, "height": 20}}


def test_fifty_jobs_each_delivered_once_and_any_node_answers(cluster, origin):
    (a, b), receiver = cluster
    origin.serve("/nodes/photo.jpg", PHOTO)
    ids = [post(a if n % 2 else b, job(origin, n, receiver), KEY)[2]["id"] for n in range(50)]
    for n, job_id in enumerate(ids):
        doc = wait_done(b if n % 2 else a, job_id, KEY)  # asked of the node it was not posted to
        assert doc["status"] == "done" and doc["attempts"] == 1, doc
    assert sorted(receiver.files) == sorted(f"job-{n}.jpg" for n in range(50))
    assert all(len(receiver.times[f"/put/job-{n}.jpg"]) == 1 for n in range(50))  # exactly once each
    assert decode(receiver.files["job-7.jpg"][0]).size == (27, 20)


def test_a_node_killed_mid_run_hands_its_jobs_over(cluster, origin):
    (a, b), receiver = cluster
    killed = threading.Event()  # every fetch hangs until node a is killed, then is answered at once
    serve_gated(origin, "/nodes/slow.jpg", PHOTO, killed)
    try:
        ids = [post(a, job(origin, n, receiver, "/nodes/slow.jpg"), KEY)[2]["id"] for n in range(4)]
        deadline = time.monotonic() + 10
        while not any(status(a, i, KEY).json["status"] == "running" for i in ids):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(a.process.pid, signal.SIGKILL)
        a.process.wait(10)
    finally:
        killed.set()
    docs = [wait_done(b, i, KEY, timeout=60) for i in ids]
    assert all(d["status"] == "done" for d in docs), docs
    assert max(d["attempts"] for d in docs) == 2  # what node a held ran again on node b
    assert sorted(receiver.files) == [f"job-{n}.jpg" for n in range(4)]
