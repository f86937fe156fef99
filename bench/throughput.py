"""Throughput of the real server under a bounded load, with its CPU and memory, and a peer's.

Starts a static origin (own process) on 127.0.0.1 serving the photos, the imgproxy server with
2 workers, and drives it at --connections for --duration seconds, once with keep-alive and once
with `Connection: close`, each request the next photo at w=300&h=300&mode=crop&q=85. Per mode:
req/s, p50/p90/p99 latency, errors (non-200 + socket), server CPU ms per request (utime+stime
of the server's whole process tree) and its ratio to the single-core floor, and the peak RSS and
PSS of the tree (sampled every 200 ms). With --peer thumbor, thumbor (2 processes) does the same
work in the same run, after ours, and our req/s is given as a ratio to its. With --paths,
imgproxy asked by path URL with a warm cache of originals (result cache off) runs in the same
rounds, compared with the query API's cold fetches (req/s, CPU per request, and the fetch stage
from each server's /metrics).

    cd /work/main && /tmp/venv/bin/python bench/throughput.py [--peer thumbor] [--paths]
        [--connections 8] [--duration 20] [--dir DIR] [--floor-ms MS] [--client auto|wrk|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import common, loadgen, servers  # noqa: E402

MODES = {"keep-alive": True, "close": False}
SETTLE_SECONDS = 2.0  # between runs: let requests left in flight by the last one finish


@dataclass
class Run:
    server: str
    mode: str
    round: int
    load: loadgen.LoadResult
    cpu: dict[int, common.Cpu]  # what each process of the tree used during the load
    memory: common.MemoryPeak
    machine: "Machine"
    stages: "Stages | None" = None  # from the server's /metrics, over the load (imgproxy only)

    @property
    def cpu_seconds(self) -> float:
        return sum(c.total for c in self.cpu.values())

    @property
    def system_seconds(self) -> float:
        return sum(c.system for c in self.cpu.values())

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000.0 * self.cpu_seconds / self.load.requests if self.load.requests else float("nan")


@dataclass
class Stages:
    """What the server's /metrics counted during the load: the fetch stage (a hit in the cache
    of originals counts too, and costs next to nothing) and the cache of originals' results."""
    fetch_seconds: float
    fetches: int
    source_cache: dict[str, int]  # hit / miss / ... -> requests

    @property
    def fetch_ms(self) -> float:
        return 1000.0 * self.fetch_seconds / self.fetches if self.fetches else float("nan")


METRIC_LINE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def scrape(port: int) -> dict[tuple[str, str], float] | None:
    """The server's /metrics as {(name, labels): value}; None when it has none (thumbor)."""
    try:
        status, _, body = asyncio.run(loadgen.get(port, "/metrics"))
    except (OSError, asyncio.TimeoutError):
        return None
    if status != 200:
        return None
    found = {}
    for line in body.decode("utf-8", "replace").splitlines():
        m = METRIC_LINE.match(line)
        if m:
            found[m.group(1), m.group(2) or ""] = float(m.group(3))
    return found


def stages_between(before: dict | None, after: dict | None) -> Stages | None:
    if before is None or after is None:
        return None

    def delta(name: str, labels: str) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    cache = {}
    for name, labels in after:
        m = re.fullmatch(r'result="(\w+)"', labels)
        if name == "imgproxy_source_cache_requests_total" and m:
            cache[m.group(1)] = int(delta(name, labels))
    return Stages(delta("imgproxy_request_seconds_sum", 'stage="fetch"'),
                  int(delta("imgproxy_request_seconds_count", 'stage="fetch"')), cache)


@dataclass
class Machine:
    """Where the machine's CPU went during a run, in cores (CPU seconds per second)."""
    busy: float      # all CPUs, every process
    server: float    # the server's process tree
    harness: float   # this script, the load generator and the origin
    steal: float     # taken by the hypervisor

    @property
    def others(self) -> float:  # whatever else runs on the machine
        return max(0.0, self.busy - self.server - self.harness)


class MachineMeter:
    """Machine-wide busy CPU, and our harness's share, between start() and stop()."""

    def __init__(self, origin_pid: int):
        self.origin_pid = origin_pid

    def _read(self) -> tuple[float, float, float, float]:
        busy, steal = common.machine_cpu_seconds()
        harness = common.own_cpu_seconds() + sum(c.total for c in common.tree_cpu(self.origin_pid).values())
        return time.monotonic(), busy, steal, harness

    def start(self) -> None:
        self._start = self._read()

    def stop(self, server_cpu: float) -> Machine:
        t1, busy1, steal1, harness1 = self._read()
        t0, busy0, steal0, harness0 = self._start
        wall = t1 - t0
        return Machine((busy1 - busy0) / wall, server_cpu / wall, (harness1 - harness0) / wall,
                       (steal1 - steal0) / wall)


# --- the floor ---------------------------------------------------------------------------

def measure_floor(folder: Path | None, repeats: int, repo: Path) -> dict:
    """floor.py in a child process (it pins itself to one CPU; we must not be pinned)."""
    cmd = [sys.executable, str(common.BENCH / "floor.py"), "--json", f"--repeats={repeats}",
           f"--repo={repo.resolve()}"]
    if folder is not None:
        cmd.append(f"--dir={folder.resolve()}")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=common.REPO)
    if out.returncode != 0:
        raise RuntimeError(f"floor.py failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- one server --------------------------------------------------------------------------

def check_replies(server: servers.Server, paths: list[str]) -> bool:
    """One request per photo, one at a time: warms the server up and shows what it answers."""
    from PIL import Image  # only for the check

    async def each() -> list[tuple[int, dict, bytes]]:
        return [await loadgen.get(server.port, p) for p in paths]

    t0 = time.perf_counter()
    replies = asyncio.run(each())
    took = time.perf_counter() - t0
    bad = [(p, r) for p, r in zip(paths, replies) if r[0] != 200]
    sizes = set()
    for status, headers, body in replies:
        if status == 200:
            with Image.open(io.BytesIO(body)) as img:
                sizes.add(f"{headers.get('content-type')} {img.format} {img.width}x{img.height}")
    print(f"  warm-up: {len(paths) - len(bad)}/{len(paths)} OK, one at a time in {took:.1f}s; "
          f"replies: {', '.join(sorted(sizes)) or 'none'}")
    for path, (status, _, body) in bad[:3]:
        print(f"  ! {status} for {path}: {body[:200]!r}")
    return len(bad) < len(paths)


def wait_quiet(limit: float, most: float = 0.25) -> None:
    """Wait up to `limit` seconds for a second in which other processes use < `most` cores."""
    if limit <= 0:
        return
    started = time.monotonic()
    while True:
        t0, (b0, _), own0 = time.monotonic(), common.machine_cpu_seconds(), common.own_cpu_seconds()
        time.sleep(1.0)
        busy = max(0.0, common.machine_cpu_seconds()[0] - b0 - (common.own_cpu_seconds() - own0)) / (
            time.monotonic() - t0)
        waited = time.monotonic() - started
        if busy < most or waited >= limit:
            print(f"  machine: other processes use {busy:.2f} cores"
                  + (f" (waited {waited:.0f}s)" if waited > 1.5 else ""), flush=True)
            return


def run_server(server: servers.Server, source_urls: list[str], args, log: Path,
               meter: MachineMeter, round_: int) -> list[Run]:
    paths = [server.path(u) for u in source_urls]
    print(f"\n{server.name}, round {round_}: {' '.join(server.command)}\n  log: {log}", flush=True)
    proc = common.start(server.command, log, cwd=server.cwd)
    runs = []
    try:
        common.wait_for_port(server.port, proc)
        time.sleep(1.0)  # workers and forks up
        # A cached server gets every URL once, so that the load only ever hits.
        warm = paths if getattr(server, "warm_all", False) else paths[:len(paths) // args.variants]
        if not check_replies(server, warm):
            print(f"  skipping {server.name}: it answered no request with an image; see {log}")
            return runs
        for mode in args.modes:
            time.sleep(SETTLE_SECONDS)
            wait_quiet(args.wait_quiet)
            metrics_before = scrape(server.port)
            meter.start()
            before = common.tree_cpu(proc.pid)
            with common.MemorySampler(proc.pid) as sampler:
                load = loadgen.run(server.port, paths, args.connections, args.duration,
                                   MODES[mode], args.client)
            after = common.tree_cpu(proc.pid)
            # A process gone by the end has its CPU in its parent's cutime now.
            cpu = {pid: t - before.get(pid, common.Cpu()) for pid, t in after.items()}
            machine = meter.stop(sum(c.total for c in cpu.values()))
            stages = stages_between(metrics_before, scrape(server.port))
            run = Run(server.name, mode, round_, load, cpu, sampler.peak, machine, stages)
            runs.append(run)
            print_run(run)
            if proc.poll() is not None:
                raise RuntimeError(f"{server.name} exited with status {proc.returncode}; see {log}")
    finally:
        common.stop(proc)
    return runs


# --- printing ------------------------------------------------------------------------------

def print_run(run: Run) -> None:
    ld, mem = run.load, run.memory
    print(f"  {run.mode:<10} {ld.rps:6.2f} req/s  ({ld.requests} in {ld.duration:.1f}s, {ld.client})  "
          f"p50 {ld.p50_ms:.0f}  p90 {ld.p90_ms:.0f}  p99 {ld.p99_ms:.0f}  max {ld.max_ms:.0f} ms  "
          f"errors {ld.errors} (non-200 {ld.non_200}, socket {ld.socket_errors})")
    print(f"  {'':<10} CPU {run.cpu_ms_per_request:.1f} ms/req ({run.cpu_seconds:.1f}s, "
          f"{run.system_seconds:.1f}s of it in the kernel)  "
          f"peak RSS {common.mb(mem.rss_kib):.0f} MB  peak PSS {common.mb(mem.pss_kib):.0f} MB "
          f"(sum over {mem.processes} processes, max of {mem.samples} samples)")
    if run.stages is not None:
        st = run.stages
        cache = ", ".join(f"{k} {v}" for k, v in sorted(st.source_cache.items())) or "none"
        print(f"  {'':<10} fetch stage: {fmt(st.fetch_ms, '.2f')} ms per request "
              f"({st.fetch_seconds:.2f}s over {st.fetches}); cache of originals: {cache}")
    m = run.machine
    print(f"  {'':<10} machine: {m.busy:.2f} of {os.cpu_count()} cores busy = server {m.server:.2f} "
          f"+ load generator/origin/this script {m.harness:.2f} + other processes {m.others:.2f}"
          f"; steal {m.steal:.2f}")
    for pid in sorted(set(run.cpu) | set(mem.per_process_pss)):
        name, pss = mem.per_process_pss.get(pid, ("?", 0))
        cpu = run.cpu.get(pid, common.Cpu(float("nan"), float("nan")))
        print(f"  {'':<10}   pid {pid:<7} {name:<16} CPU {cpu.total:5.1f}s (kernel {cpu.system:4.1f}s)  "
              f"peak PSS {common.mb(pss):6.1f} MB")


def fmt(value: float, spec: str = ".1f") -> str:
    return "n/a" if value != value else format(value, spec)  # NaN -> n/a


def print_table(rows: list[tuple[str, Run]], floor_ms: float | None) -> None:
    print(f"{'server':<14} {'mode':<10} {'round':>5} {'req/s':>6} {'p50':>6} {'p90':>6} "
          f"{'p99':>6} {'p99/p50':>7} {'errors':>6} {'CPU ms/req':>10} {'/floor':>6} "
          f"{'RSS MB':>7} {'PSS MB':>7} {'others':>6}")
    for label, r in rows:
        ld = r.load
        ratio = r.cpu_ms_per_request / floor_ms if floor_ms else float("nan")
        print(f"{r.server:<14} {r.mode:<10} {label:>5} {ld.rps:6.2f} {ld.p50_ms:6.0f} "
              f"{ld.p90_ms:6.0f} {ld.p99_ms:6.0f} "
              f"{fmt(ld.p99_ms / ld.p50_ms if ld.p50_ms else float('nan'), '.2f'):>7} "
              f"{ld.errors:6d} {fmt(r.cpu_ms_per_request):>10} {fmt(ratio, '.2f'):>6} "
              f"{common.mb(r.memory.rss_kib):7.0f} {common.mb(r.memory.pss_kib):7.0f} "
              f"{r.machine.others:6.2f}")


QUIET = 0.10  # cores: a run during which other processes used less than this counts as quiet


def quiet_runs(runs: list[Run]) -> list[Run]:
    """The runs during which other processes took under QUIET cores; else the quietest one."""
    return [r for r in runs if r.machine.others < QUIET] or [min(runs, key=lambda r: r.machine.others)]


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def fetch_ms(run: Run) -> float:
    return run.stages.fetch_ms if run.stages else float("nan")


def print_summary(runs: list[Run], floor_ms: float | None, args) -> None:
    print(f"\nsummary: {args.connections} connections, {args.duration:g}s per mode, "
          f"300x300 crop q85; floor {fmt(floor_ms or float('nan'))} CPU ms/image; "
          f"'others' = cores used by other processes during the run")
    print_table([(str(r.round), r) for r in runs], floor_ms)
    groups: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.server, r.mode), []).append(r)
    chosen = {key: quiet_runs(group) for key, group in groups.items()}
    if len(runs) > len(groups):
        print(f"\nquiet runs (other processes under {QUIET:.2f} cores; else each one's quietest):")
        print_table([(str(r.round), r) for group in chosen.values() for r in group], floor_ms)
    for peer in args.peer + (["imgproxy@base"] if args.baseline else []):
        for mode in args.modes:
            ours, theirs = chosen.get(("imgproxy", mode)), chosen.get((peer, mode))
            if not (ours and theirs):
                continue
            rps = mean(r.load.rps for r in ours) / mean(r.load.rps for r in theirs)
            cpu = mean(r.cpu_ms_per_request for r in ours) / mean(r.cpu_ms_per_request for r in theirs)
            print(f"imgproxy / {peer}, {mode} (mean of {len(ours)} and {len(theirs)} runs): "
                  f"req/s {rps:.2f}x; CPU per request {cpu:.2f}x "
                  f"(so {1 / cpu:.2f}x the requests per CPU second)")
    for mode in args.modes:
        cold, warm = chosen.get(("imgproxy", mode)), chosen.get(("imgproxy+paths", mode))
        if cold and warm:
            rps = mean(r.load.rps for r in warm) / mean(r.load.rps for r in cold)
            cpu = mean(r.cpu_ms_per_request for r in warm) / mean(r.cpu_ms_per_request for r in cold)
            print(f"path URLs, warm originals / query API, cold, {mode} (mean of {len(warm)} and "
                  f"{len(cold)} runs): req/s {rps:.2f}x; CPU per request {cpu:.2f}x; fetch stage "
                  f"{fmt(mean(fetch_ms(r) for r in warm), '.2f')} vs "
                  f"{fmt(mean(fetch_ms(r) for r in cold), '.2f')} ms per request")
    for mode in args.modes:
        cold, warm = chosen.get(("imgproxy", mode)), chosen.get(("imgproxy+cache", mode))
        if cold and warm:
            hit, miss = mean(r.load.rps for r in warm), mean(r.load.rps for r in cold)
            print(f"warm result cache / uncached, {mode}: req/s {hit:.1f} vs {miss:.1f} ({hit / miss:.1f}x); "
                  f"p50 {mean(r.load.p50_ms for r in warm):.1f} ms, p99 {mean(r.load.p99_ms for r in warm):.1f} ms")


# --- main --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_workload_args(parser)
    common.add_repo_arg(parser)
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections (8)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per mode (20)")
    parser.add_argument("--peer", action="append", choices=["thumbor"], default=[],
                        help="also run this server the same way, after ours")
    parser.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto",
                        help="load generator: wrk if installed (auto), or the built-in one")
    parser.add_argument("--modes", default="keep-alive,close",
                        help="comma-separated: keep-alive, close (both)")
    parser.add_argument("--floor-ms", type=float, default=None,
                        help="single-core floor in CPU ms per image (floor.py's last line); "
                             "default: measure it first")
    parser.add_argument("--floor-repeats", type=int, default=5, help="floor.py --repeats (5)")
    parser.add_argument("--no-imgproxy", action="store_true", help="run only the peer(s)")
    parser.add_argument("--baseline", type=Path, default=None, metavar="DIR",
                        help="also run the imgproxy package in DIR (e.g. a `git archive` of an earlier "
                             "commit) in the same rounds, as peer 'imgproxy@base'")
    parser.add_argument("--no-cached", dest="cached", action="store_false",
                        help="skip the run of imgproxy with a warm result cache (every request a hit)")
    parser.add_argument("--paths", action="store_true",
                        help="also run imgproxy asked by path URL (/300x300!/vK/name.jpg?q=85) with "
                             "the origin as its one origin and a warm cache of originals (no result "
                             "cache), and compare it with the query API's cold fetches")
    parser.add_argument("--variants", type=int, default=8,
                        help="URLs per photo, taken in turn (8): no request is in flight twice")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every server this many times, taking turns (1); the summary "
                             "then compares the means of the quiet runs")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each run, wait up to this long for other processes to use "
                             "under 0.25 cores (0: do not wait)")
    args = parser.parse_args(argv)
    args.variants = max(1, args.variants)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows as it happens, even in a file
    # A plain `kill` of this script still runs the finally blocks that stop our children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    photos = common.workload(args.dir)
    folder = args.dir or common.DEFAULT_CORPUS
    if "thumbor" in args.peer:
        servers.ensure_thumbor()
        print(servers.thumbor_versions())

    floor_ms = args.floor_ms
    if floor_ms is None:
        wait_quiet(args.wait_quiet)
        floor = measure_floor(args.dir, args.floor_repeats, args.repo)
        # CPU, not wall time: the ratio must not move with what else runs on that core.
        floor_ms = floor["cpu_ms_per_image"]
        print(f"floor: {floor_ms:.1f} CPU ms per image ({floor['ms_per_image']:.1f} ms wall), "
              f"{floor['images']} images, one core, median of {floor['repeats']}")

    origin_port = common.free_port()
    # Each photo under --variants URLs, so that no two requests in flight are ever the same
    # one: a server that merges identical concurrent requests must still render every reply.
    source_urls = [f"http://127.0.0.1:{origin_port}/v{k}/{p.name}"
                   for k in range(args.variants) for p in photos]
    logs = common.CACHE / "logs"
    origin = None
    runs: list[Run] = []
    try:
        origin = common.start([sys.executable, str(common.BENCH / "origin.py"),
                               f"--port={origin_port}", f"--dir={folder}"], logs / "origin.log")
        common.wait_for_port(origin_port, origin)
        print(f"origin: {len(photos)} photos from {folder} on 127.0.0.1:{origin_port}, "
              f"each under {args.variants} URLs")
        chosen = ([] if args.no_imgproxy else [servers.Imgproxy]) + [
            {"thumbor": servers.Thumbor}[name] for name in args.peer]
        if args.baseline:
            chosen.append(lambda port, _repo: servers.Imgproxy(port, args.baseline, name="imgproxy@base"))
        if args.paths and not args.no_imgproxy:
            base = f"http://127.0.0.1:{origin_port}/"
            chosen.append(lambda port, repo: servers.ImgproxyPaths(port, base, repo))
        if args.cached and not args.no_imgproxy:
            chosen.append(servers.ImgproxyCached)
        for round_ in range(1, args.rounds + 1):
            for make in chosen:
                server = make(common.free_port(), args.repo)
                runs += run_server(server, source_urls, args, logs / f"{server.name}.log",
                                   MachineMeter(origin.pid), round_)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what was started")
        return 130
    finally:
        common.stop(origin)
        if runs:
            print_summary(runs, floor_ms, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
