"""The worker pool through the real server: crashes, deadlines, a full queue, shutdown."""

import os
import signal
import threading
import time
from urllib.parse import quote

import pytest
from PIL import Image
from support import alive, descendants, encode, quadrants, wait_for, workers_of

# Work that keeps a worker busy for half a second or more: upscaling to 25 MP with Lanczos
# (0.7 s on an idle 2-core machine; the tests need it busy for some milliseconds).
HEAVY = "w=5000&h=5000&mode=scale&fmt=jpeg&q=50"


@pytest.fixture(scope="module")
def sources(origin):
    noise = Image.effect_noise((1500, 1500), 64).convert("RGB")
    return {
        "heavy": origin.serve("/heavy.png", encode(noise, "PNG"), content_type="image/png"),
        "light": origin.serve("/light.jpg", encode(quadrants(), "JPEG")),
    }


def query(url: str, extra: str) -> str:
    return f"url={quote(url, safe='')}&{extra}"


def in_background(fn):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", fn()), daemon=True)
    t.start()
    return t, box


def cpu_ticks(pid: int) -> int:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


QUICK_DEADLINE = ("--workers=1", "--process_timeout=0.5")
SHORT_QUEUE = ("--workers=1", "--max_queue=1", "--process_timeout=60")
# one worker that may stay busy: the killed worker's test does not fill the queue, so it
# shares SHORT_QUEUE's proxy (as does test_delivery's BUSY_ALLOWED)
BUSY_ALLOWED = SHORT_QUEUE
TWO_WORKERS = ("--workers=2", "--process_timeout=60")


@pytest.fixture(scope="module", autouse=True)
def _proxies_side_by_side(shared_proxy):
    shared_proxy.warm(SHORT_QUEUE, QUICK_DEADLINE, TWO_WORKERS)


def test_killed_worker_costs_only_its_task(shared_proxy, sources):
    p = shared_proxy(*BUSY_ALLOWED)
    assert p.get(query(sources["light"], "w=10")).status == 200
    (worker,) = workers_of(p)
    idle_ticks = cpu_ticks(worker)
    t, box = in_background(lambda: p.get(query(sources["heavy"], HEAVY)))
    # wait until the worker is actually busy (using CPU), then kill it mid-task
    assert wait_for(lambda: cpu_ticks(worker) > idle_ticks + 10)
    os.kill(worker, signal.SIGKILL)
    t.join(30)
    r = box["r"]
    assert r.status == 502 and r.json["error_code"] == 502
    # replaced within a second, and the next request is served
    assert wait_for(lambda: len(workers_of(p)) == 1 and workers_of(p) != [worker], 1.0)
    assert p.get(query(sources["light"], "w=12")).image.size[0] == 12


def test_task_over_deadline_is_504_and_worker_replaced(shared_proxy, sources):
    p = shared_proxy(*QUICK_DEADLINE)
    before = workers_of(p)
    started = time.monotonic()
    r = p.get(query(sources["heavy"], HEAVY))
    took = time.monotonic() - started
    assert r.status == 504 and r.json["error_code"] == 504
    assert took < 5  # about the deadline, not the whole job (generous: shared machines)
    assert wait_for(lambda: len(workers_of(p)) == 1 and workers_of(p) != before, 2.0)
    assert p.get(query(sources["light"], "w=14")).image.size[0] == 14


def health(proxy) -> dict:
    return proxy.get(path="/health").json


def test_full_queue_answers_503_at_once(shared_proxy, origin, sources):
    p = shared_proxy(*SHORT_QUEUE)
    running = in_background(lambda: p.get(query(sources["heavy"], HEAVY)))
    assert wait_for(lambda: health(p)["workers"]["busy"] == 1)  # the worker is on it
    waiting = in_background(lambda: p.get(query(sources["heavy"], HEAVY.replace("5000", "4999"))))
    assert wait_for(lambda: health(p)["queue"] == 1)  # and the one place in the queue is taken
    hits = origin.hits.get("/light.jpg", 0)
    r = p.get(query(sources["light"], "w=16"))
    assert r.status == 503 and r.json["error_code"] == 501
    assert r.headers["Retry-After"]
    assert origin.hits.get("/light.jpg", 0) == hits  # refused without fetching
    for t, box in (running, waiting):
        t.join(60)
        assert box["r"].status == 200


def test_few_keepalive_connections_use_every_worker(shared_proxy, sources):
    import http.client
    p = shared_proxy(*TWO_WORKERS)
    conn = [http.client.HTTPConnection("127.0.0.1", p.port, timeout=60) for _ in range(2)]
    busy_seen = set()
    results = []

    def run(c, extra):
        c.request("GET", "/?" + query(sources["heavy"], extra))
        results.append(c.getresponse().status)

    threads = [threading.Thread(target=run, args=(c, HEAVY.replace("5000", str(4990 + i))))
               for i, c in enumerate(conn)]
    for t in threads:
        t.start()
    workers = workers_of(p)
    deadline = time.monotonic() + 30
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        for w in workers:
            try:
                if open(f"/proc/{w}/stat").read().rsplit(")", 1)[1].split()[0] == "R":
                    busy_seen.add(w)
            except OSError:
                pass
        time.sleep(0.01)
    for t in threads:
        t.join(30)
    assert results == [200, 200]
    assert busy_seen == set(workers) and len(workers) == 2


def test_sigterm_finishes_work_and_leaves_no_worker(start_proxy, sources):
    p = start_proxy(*TWO_WORKERS)  # its own: this test stops it
    tree = descendants(p.process.pid)
    assert len(tree) >= 3  # fork server + 2 workers
    t, box = in_background(lambda: p.get(query(sources["heavy"], HEAVY)))
    assert wait_for(lambda: health(p)["workers"]["busy"] == 1)  # stopped mid-task
    assert p.stop() == 0
    t.join(30)
    assert box["r"].status == 200  # the running request was finished
    assert wait_for(lambda: not any(alive(pid) for pid in tree), 5.0), [pid for pid in tree if alive(pid)]
