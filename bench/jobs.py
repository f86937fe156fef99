"""Jobs per second against the image API's req/s, for the same work, in the same run.

Starts the bench origin (own process) and one imgproxy server with the job API
(`--workers=2 --jobs --job_concurrency=2`, SQLite queue and file destinations in a temporary
folder), then, in turns:

1. image API: N requests `w=300&h=300&mode=crop&q=85`, each photo under --variants URLs taken
   in turn (nothing in flight twice, so nothing coalesces), over 2 keep-alive connections (as
   many as the job slots): wall time -> req/s, server CPU (whole process tree) per request;
2. jobs: the same N sources as jobs (`args: {"width": 300, "height": 300, "q": 85}`, crop by
   default) to `file://<out>/{$basename}-{n}.{$ext}`, posted over 2 connections; from the first
   POST to the last file in place -> jobs/s, CPU per job, and the ratios to the image API;
   once more with a literal `.jpg` (no `{$ext}`: the POST need not read the source's header);
3. outputs: M jobs with three outputs (300x300 crop, 800x800 clip, 150x150 crop) against 3M
   single-output jobs (M of each size): CPU and wall time per set of three.

Every job's status is read after its run (not timed) to check it is done. Bounded by
--time-cap; stops every process it started by PID and removes its temporary folder.

    cd /work/main && /tmp/venv/bin/python bench/jobs.py [--repeat 2] [--sets 26] [--rounds 1]
        [--variants 8] [--wait-quiet S] [--time-cap 600] [--repo DIR] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import common, loadgen  # noqa: E402
from bench.throughput import QUIET, Machine, MachineMeter, quiet_runs, scrape, wait_quiet  # noqa: E402
from imgproxy.signature import job_signature  # noqa: E402

KEY = "bench-job-key"
CONNECTIONS = 2  # = job_concurrency: jobs may use both workers, like the image API
SIZE_ARGS = {"width": common.SIZE[0], "height": common.SIZE[1], "q": common.QUALITY}
# The three outputs of a set: the workload's crop, a large fit, a small crop.
OUTPUTS = [
    ("300crop", {"width": 300, "height": 300, "mode": "crop", "q": common.QUALITY}),
    ("800clip", {"width": 800, "height": 800, "mode": "clip", "q": common.QUALITY}),
    ("150crop", {"width": 150, "height": 150, "mode": "crop", "q": common.QUALITY}),
]
SETTLE_SECONDS = 2.0


class TimeUp(Exception):
    pass


class Clock:
    """The run's total time cap."""

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise TimeUp(f"time cap reached during {what}")


@dataclass
class Run:
    name: str
    round: int
    units: int            # requests, jobs, or sets of outputs
    unit: str             # "req", "job", "set"
    wall: float           # seconds
    cpu: dict[int, common.Cpu]
    machine: Machine
    metrics: dict[str, float] = field(default_factory=dict)  # deltas over the run
    notes: list[str] = field(default_factory=list)
    errors: int = 0
    root: int = 0         # the server's PID, to name the processes of its tree

    @property
    def cpu_seconds(self) -> float:
        return sum(c.total for c in self.cpu.values())

    @property
    def per_second(self) -> float:
        return self.units / self.wall if self.wall else float("nan")

    @property
    def cpu_ms(self) -> float:
        return 1000.0 * self.cpu_seconds / self.units if self.units else float("nan")

    @property
    def wall_ms(self) -> float:
        return 1000.0 * self.wall / self.units if self.units else float("nan")


# --- /metrics ------------------------------------------------------------------------------

WATCHED = {  # name in the summary -> (metric, labels)
    "fetches": ("imgproxy_request_seconds_count", 'stage="fetch"'),
    "fetch s": ("imgproxy_request_seconds_sum", 'stage="fetch"'),
    "pool tasks": ("imgproxy_request_seconds_count", 'stage="process"'),
    "pool s": ("imgproxy_request_seconds_sum", 'stage="process"'),
    "queue s": ("imgproxy_request_seconds_sum", 'stage="queue"'),
    "fetched MB": ("imgproxy_fetched_bytes_total", ""),
}


def metrics_delta(before: dict | None, after: dict | None) -> dict[str, float]:
    if before is None or after is None:
        return {}
    out = {}
    for name, key in WATCHED.items():
        out[name] = after.get(key, 0.0) - before.get(key, 0.0)
    out["fetched MB"] /= 1e6
    return out


# --- measuring one run -----------------------------------------------------------------------

class Measure:
    """CPU of the server's tree, the machine, and /metrics between enter and exit."""

    def __init__(self, server_pid: int, origin_pid: int, port: int):
        self.server_pid, self.port = server_pid, port
        self.meter = MachineMeter(origin_pid)

    def __enter__(self) -> "Measure":
        self.metrics_before = scrape(self.port)
        self.meter.start()
        self.cpu_before = common.tree_cpu(self.server_pid)
        self.t0 = time.monotonic()
        return self

    def stop(self, end: float | None = None) -> None:
        """The end of the run: CPU read now, wall time up to `end` (default now)."""
        now = time.monotonic()
        after = common.tree_cpu(self.server_pid)
        self.cpu = {pid: t - self.cpu_before.get(pid, common.Cpu()) for pid, t in after.items()}
        self.machine = self.meter.stop(sum(c.total for c in self.cpu.values()))
        self.wall = (end or now) - self.t0
        self.metrics = metrics_delta(self.metrics_before, scrape(self.port))

    def __exit__(self, *exc) -> None:
        pass


# --- the image API: a fixed number of requests ------------------------------------------------

async def fixed_load(port: int, paths: list[str], connections: int, deadline: float) -> tuple[int, int, list[float]]:
    """Every path once, `connections` keep-alive connections taking them in turn.
    Returns (ok, errors, latencies in ms)."""
    queue = list(reversed(paths))
    latencies: list[float] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader = writer = None
        try:
            while queue and time.monotonic() < deadline:
                path = queue.pop()
                t0 = time.perf_counter()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(loadgen.HOST, port)
                    writer.write(loadgen.request_bytes(port, path, keepalive=True))
                    status, headers, _ = await asyncio.wait_for(loadgen.read_response(reader),
                                                                loadgen.REQUEST_TIMEOUT)
                    latencies.append(1000.0 * (time.perf_counter() - t0))
                    if status != 200:
                        errors += 1
                    if headers.get("connection", "").lower() == "close":
                        writer.close()
                        reader = writer = None
                except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError,
                        asyncio.TimeoutError):
                    errors += 1
                    if writer is not None:
                        writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return len(latencies) - errors, errors + len(queue), latencies


def run_api(name: str, round_: int, port: int, server_pid: int, origin_pid: int,
            source_urls: list[str], clock: Clock) -> Run:
    paths = [f"/?url={quote(u, safe='')}&{common.QUERY}" for u in source_urls]
    with Measure(server_pid, origin_pid, port) as m:
        ok, errors, lat = asyncio.run(fixed_load(port, paths, CONNECTIONS, clock.deadline))
        m.stop()
    clock.check(name)
    lat.sort()
    notes = [f"latency p50 {common.percentile(lat, 50):.0f} p99 {common.percentile(lat, 99):.0f} ms"]
    return Run(name, round_, ok, "req", m.wall, m.cpu, m.machine, m.metrics, notes, errors, server_pid)


# --- jobs ------------------------------------------------------------------------------------

class Poster:
    """POSTs signed jobs over `connections` keep-alive connections (one per thread)."""

    def __init__(self, port: int, connections: int):
        self.port = port
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="bench-post")

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return conn

    def _request(self, method: str, path: str, body: bytes | None, signed: bytes | str) -> tuple[int, dict]:
        headers = {"X-Signature": job_signature(KEY, signed)}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):  # a keep-alive connection the server closed: once more, fresh
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=headers)
                r = conn.getresponse()
                return r.status, json.loads(r.read() or b"null")
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def post(self, body: bytes) -> tuple[int, dict, float]:
        t0 = time.perf_counter()
        status, doc = self._request("POST", "/jobs", body, body)
        return status, doc, 1000.0 * (time.perf_counter() - t0)

    def status(self, job_id: str) -> dict:
        path = f"/jobs/{job_id}"
        return self._request("GET", path, None, path)[1]

    def close(self) -> None:
        self.pool.shutdown()


def file_path(dst_url: str) -> Path:
    assert dst_url.startswith("file://"), dst_url
    return Path(dst_url.removeprefix("file://"))


def run_jobs(name: str, round_: int, unit: str, bodies: list[bytes], units: int, poster: Poster,
             server_pid: int, origin_pid: int, port: int, clock: Clock) -> Run:
    """Post every job, wait for every destination file; then check every job's status."""
    with Measure(server_pid, origin_pid, port) as m:
        replies = list(poster.pool.map(poster.post, bodies))
        post_end = time.monotonic()
        accepted = [(doc["id"], [o["dstURL"] for o in doc.get("outputs", [])] or [doc["dstURL"]])
                    for status, doc, _ in replies if status == 202]
        waiting = {file_path(u) for _, urls in accepted for u in urls}
        last_seen = time.monotonic()
        while waiting:
            clock.check(name)
            found = {p for p in waiting if p.exists()}
            if found:
                last_seen = time.monotonic()
                waiting -= found
            if waiting:
                time.sleep(0.01)
        m.stop(end=last_seen)
    # Not timed: every job done, on its first attempt?
    docs = []
    for job_id, _ in accepted:
        while True:
            doc = poster.status(job_id)
            if doc["status"] in ("done", "failed"):
                break
            clock.check(name + " (status)")
            time.sleep(0.05)
        docs.append(doc)
    failed = sum(d["status"] != "done" for d in docs)
    retried = sum(d["attempts"] > 1 for d in docs)
    rejected = len(replies) - len(accepted)
    post_ms = sorted(ms for _, _, ms in replies)
    waits = sorted(d["started"] - d["created"] for d in docs if d.get("started"))
    span = (max(d["finished"] for d in docs) - min(d["created"] for d in docs)) if docs else float("nan")
    notes = [f"POST p50 {common.percentile(post_ms, 50):.1f} p99 {common.percentile(post_ms, 99):.1f} "
             f"max {post_ms[-1]:.1f} ms; all posted after {post_end - m.t0:.1f}s",
             f"server's own span (first created .. last finished) {span:.2f}s; "
             f"queued before lease p50 {common.percentile(waits, 50):.2f}s",
             f"{len(docs) - failed} done, {failed} failed, {retried} retried, {rejected} not accepted"]
    for status, doc, _ in replies:
        if status != 202:
            notes.append(f"! POST answered {status}: {str(doc)[:200]}")
            break
    for d in docs:
        if d["status"] != "done":
            notes.append(f"! job {d['id']}: {d['status']} {d.get('error')}")
            break
    return Run(name, round_, units, unit, m.wall, m.cpu, m.machine, m.metrics, notes,
               failed + rejected, server_pid)


def job_body(src: str, dst: str, args: dict) -> bytes:
    return json.dumps({"operationType": "resize", "srcURL": src, "dstURL": dst, "args": args}).encode()


def outputs_body(src: str, dsts: list[str]) -> bytes:
    return json.dumps({"operationType": "resize", "srcURL": src, "outputs": [
        {"args": args, "dstURL": dst} for (_, args), dst in zip(OUTPUTS, dsts)]}).encode()


# --- printing ----------------------------------------------------------------------------------

def fmt(value: float, spec: str = ".1f") -> str:
    return "n/a" if value != value else format(value, spec)


def print_run(run: Run) -> None:
    mc = run.machine
    print(f"  {run.name}: {run.units} {run.unit} in {run.wall:.2f}s = {run.per_second:.2f} {run.unit}/s; "
          f"CPU {run.cpu_ms:.1f} ms/{run.unit} ({run.cpu_seconds:.1f}s); errors {run.errors}")
    for note in run.notes:
        print(f"    {note}")
    if run.metrics:
        mt = run.metrics
        n = run.units
        print(f"    per {run.unit}: fetches {mt['fetches'] / n:.2f} ({mt['fetched MB'] / n:.2f} MB, "
              f"{1000 * mt['fetch s'] / max(1, mt['fetches']):.1f} ms each), pool tasks "
              f"{mt['pool tasks'] / n:.2f} ({1000 * mt['pool s'] / n:.1f} ms in a worker, "
              f"{1000 * mt['queue s'] / n:.1f} ms waiting for one)")
    by_role: dict[str, float] = {}
    for pid, cpu in run.cpu.items():
        role = common.role(pid, run.root)
        by_role[role] = by_role.get(role, 0.0) + cpu.total
    print("    CPU by process: " + ", ".join(f"{r} {s:.2f}s ({1000 * s / run.units:.1f} ms/{run.unit})"
                                             for r, s in by_role.items() if s > 0.005))
    print(f"    machine: {mc.busy:.2f} of {os.cpu_count()} cores busy = server {mc.server:.2f} + "
          f"this script/origin {mc.harness:.2f} + others {mc.others:.2f}; steal {mc.steal:.2f}")


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def print_summary(runs: list[Run], args) -> None:
    print(f"\nsummary: 2 workers, job_concurrency 2, {CONNECTIONS} connections; "
          "'others' = cores used by other processes during the run")
    print(f"{'run':<22} {'round':>5} {'units':>6} {'wall s':>7} {'per s':>7} {'CPU ms/unit':>11} "
          f"{'fetch/u':>7} {'tasks/u':>7} {'errors':>6} {'others':>6}")
    for r in runs:
        n = r.units or 1
        print(f"{r.name:<22} {r.round:5d} {r.units:6d} {r.wall:7.2f} {r.per_second:7.2f} {r.cpu_ms:11.1f} "
              f"{fmt(r.metrics.get('fetches', float('nan')) / n, '.2f'):>7} "
              f"{fmt(r.metrics.get('pool tasks', float('nan')) / n, '.2f'):>7} {r.errors:6d} "
              f"{r.machine.others:6.2f}")

    def group(name: str) -> list[Run]:
        """The run's quiet rounds (others under QUIET cores), else its quietest one."""
        found = [r for r in runs if r.name == name]
        return quiet_runs(found) if found else []

    if args.rounds > 1:
        print(f"ratios over the quiet rounds (other processes under {QUIET:.2f} cores; else the quietest):")

    api = group("image API")
    for jobs in ("jobs {$ext}", "jobs .jpg"):
        js = group(jobs)
        if api and js:
            rate = mean(r.per_second for r in js) / mean(r.per_second for r in api)
            cpu = mean(r.cpu_ms for r in js) / mean(r.cpu_ms for r in api)
            print(f"{jobs} / image API (mean of {len(js)} and {len(api)} runs): jobs/s / req/s "
                  f"{rate:.2f}; CPU per job / CPU per request {cpu:.2f}")
    three, singles = group("3 outputs"), group("3 single jobs")
    if three and singles:
        cpu = mean(r.cpu_ms for r in three) / mean(r.cpu_ms for r in singles)
        wall = mean(r.wall_ms for r in three) / mean(r.wall_ms for r in singles)
        print(f"one job with 3 outputs / 3 single-output jobs, per set (mean of {len(three)} and "
              f"{len(singles)} runs): CPU {cpu:.2f}; wall {wall:.2f}")


# --- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_workload_args(parser)
    common.add_repo_arg(parser)
    parser.add_argument("--variants", type=int, default=8,
                        help="URLs per photo, taken in turn (8): no two sources in flight are the same")
    parser.add_argument("--repeat", type=int, default=2,
                        help="requests (and jobs) per photo URL (2): N = repeat x variants x photos")
    parser.add_argument("--sets", type=int, default=None,
                        help="M, jobs with three outputs (default 2 per photo); 3M single jobs")
    parser.add_argument("--rounds", type=int, default=1, help="run everything this many times (1)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each run, wait up to this long for other processes to use "
                             "under 0.25 cores (0: do not wait)")
    parser.add_argument("--time-cap", type=float, default=600.0,
                        help="seconds for the whole script (600); what is measured by then is printed")
    args = parser.parse_args(argv)
    args.variants, args.repeat = max(1, args.variants), max(1, args.repeat)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    clock = Clock(args.time_cap)
    photos = common.workload(args.dir)
    folder = args.dir or common.DEFAULT_CORPUS
    sets = args.sets or 2 * len(photos)
    tmp = Path(tempfile.mkdtemp(prefix="imgproxy-bench-jobs-"))
    out = tmp / "out"
    out.mkdir()
    logs = common.CACHE / "logs"
    origin = server = poster = None
    runs: list[Run] = []
    try:
        origin_port, port = common.free_port(), common.free_port()
        origin = common.start([sys.executable, str(common.BENCH / "origin.py"), f"--port={origin_port}",
                               f"--dir={folder}"], logs / "origin-jobs.log")
        common.wait_for_port(origin_port, origin)
        source_urls = [f"http://127.0.0.1:{origin_port}/v{k}/{p.name}"
                       for _ in range(args.repeat) for k in range(args.variants) for p in photos]
        print(f"origin: {len(photos)} photos from {folder} on 127.0.0.1:{origin_port}, each under "
              f"{args.variants} URLs; N = {len(source_urls)} requests / jobs per run, M = {sets} sets")
        command = [sys.executable, "-m", "imgproxy", f"--port={port}", "--address=127.0.0.1",
                   "--workers=2", "--allowed_hosts=127.0.0.1", "--jobs", f"--job_key={KEY}",
                   f"--job_db={tmp / 'jobs.sqlite3'}", f"--job_allowed_destinations=file://{out}/",
                   f"--job_file_root={out}", f"--job_concurrency={CONNECTIONS}"]
        log = logs / "imgproxy-jobs.log"
        print(f"server: {' '.join(command)}\n  log: {log}")
        server = common.start(command, log, cwd=args.repo.resolve())
        common.wait_for_port(port, server)
        time.sleep(1.0)
        poster = Poster(port, CONNECTIONS)
        warm_up(port, poster, source_urls[:len(photos)], out, clock)

        serial = iter(range(1, 10 ** 9))
        for round_ in range(1, args.rounds + 1):
            print(f"\nround {round_}")
            plan = [
                ("image API", None),
                ("jobs {$ext}", [job_body(u, f"file://{out}/{{$basename}}-{next(serial)}.{{$ext}}", SIZE_ARGS)
                                 for u in source_urls]),
                ("jobs .jpg", [job_body(u, f"file://{out}/{p}-{next(serial)}.jpg", SIZE_ARGS)
                               for u, p in zip(source_urls, names(source_urls))]),
            ]
            set_urls = [source_urls[i % len(source_urls)] for i in range(sets)]
            three = [outputs_body(u, [f"file://{out}/{p}-{next(serial)}-{tag}.jpg" for tag, _ in OUTPUTS])
                     for u, p in zip(set_urls, names(set_urls))]
            singles = [job_body(u, f"file://{out}/{p}-{next(serial)}-{tag}.jpg", args_)
                       for u, p in zip(set_urls, names(set_urls)) for tag, args_ in OUTPUTS]
            plan += [("3 outputs", three), ("3 single jobs", singles)]
            for name, bodies in plan:
                clock.check(name)
                time.sleep(SETTLE_SECONDS)
                wait_quiet(min(args.wait_quiet, max(0.0, clock.left() - 60)))
                if bodies is None:
                    run = run_api(name, round_, port, server.pid, origin.pid, source_urls, clock)
                else:
                    unit, units = ("set", sets) if name.startswith("3 ") else ("job", len(bodies))
                    run = run_jobs(name, round_, unit, bodies, units, poster, server.pid, origin.pid,
                                   port, clock)
                runs.append(run)
                print_run(run)
                if server.poll() is not None:
                    raise RuntimeError(f"imgproxy exited with status {server.returncode}; see {log}")
                clear(out)
    except TimeUp as e:
        print(f"\n{e}; stopping")
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what was started")
        return 130
    finally:
        if poster is not None:
            poster.close()
        common.stop(server)
        common.stop(origin)
        shutil.rmtree(tmp, ignore_errors=True)
        if runs:
            print_summary(runs, args)
    return 0


def names(urls: list[str]) -> list[str]:
    return [u.rsplit("/", 1)[-1].rsplit(".", 1)[0] for u in urls]


def clear(out: Path) -> None:
    """Remove the results of the last run (so the next one writes new files, as in use)."""
    for child in out.iterdir():
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def warm_up(port: int, poster: Poster, source_urls: list[str], out: Path, clock: Clock) -> None:
    """Each photo once by the image API and once as a job, one at a time; checks the results."""
    from PIL import Image

    async def each() -> list[tuple[int, dict, bytes]]:
        return [await loadgen.get(port, f"/?url={quote(u, safe='')}&{common.QUERY}") for u in source_urls]

    replies = asyncio.run(each())
    sizes = set()
    for status, _, body in replies:
        if status != 200:
            raise RuntimeError(f"image API answered {status}: {body[:200]!r}")
        with Image.open(io.BytesIO(body)) as img:
            sizes.add(f"{img.format} {img.width}x{img.height}")
    for i, u in enumerate(source_urls):
        status, doc, _ = poster.post(job_body(u, f"file://{out}/warm-{i}.{{$ext}}", SIZE_ARGS))
        if status != 202:
            raise RuntimeError(f"job POST answered {status}: {doc}")
        while (doc := poster.status(doc["id"]))["status"] not in ("done", "failed"):
            clock.check("warm-up")
            time.sleep(0.05)
        if doc["status"] != "done":
            raise RuntimeError(f"warm-up job failed: {doc}")
        with Image.open(file_path(doc["dstURL"])) as img:
            sizes.add(f"job: {img.format} {img.width}x{img.height}")
    print(f"  warm-up: {len(source_urls)} requests and {len(source_urls)} jobs, one at a time; "
          f"results: {', '.join(sorted(sizes))}")
    clear(out)


if __name__ == "__main__":
    sys.exit(main())
