"""Shared helpers for the benchmark scripts: the workload, child processes, /proc readings.

Nothing here measures anything by itself; floor.py and throughput.py print the figures.
Linux only: process CPU and memory are read from /proc.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CACHE = BENCH / ".cache"  # git-ignored: venvs, logs, config files made by the scripts
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
WORKLOAD_LIST = BENCH / "workload_photos.txt"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")

# The one request every benchmark makes: a 300x300 centred crop at quality 85.
QUERY = "w=300&h=300&mode=crop&q=85"
SIZE = (300, 300)
QUALITY = 85

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the workload -------------------------------------------------------------------

def add_workload_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=None,
                        help="use every jpg/png/webp/gif in this folder instead of the "
                             f"13 photos of {WORKLOAD_LIST.name} in {DEFAULT_CORPUS}")


def workload(folder: Path | None) -> list[Path]:
    """The photos to run: the workload list in the corpus, or all images in `folder`."""
    if folder is None:
        names = [line.strip() for line in WORKLOAD_LIST.read_text().splitlines()]
        paths = [DEFAULT_CORPUS / name for name in names if name and not name.startswith("#")]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise SystemExit(f"missing workload photos: {', '.join(map(str, missing))}")
        return paths
    paths = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"no jpg/png/webp/gif files in {folder}")
    return paths


def add_repo_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="folder holding the imgproxy package to measure (default: this "
                             "checkout); e.g. a `git archive` of a commit, while the tree is edited")


# --- statistics and printing ---------------------------------------------------------

def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list (p in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def mb(kib: float) -> float:
    return kib / 1024.0


# --- ports and child processes --------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:port, or fail if `proc` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


def start(cmd: list[str], log_path: Path, cwd: Path = REPO, env: dict | None = None) -> subprocess.Popen:
    """Start a child in its own session (Ctrl-C reaches only us; we stop it), output to a log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM the child, SIGKILL it after `timeout`; then the same for any of its descendants
    still alive (e.g. a fork server or workers orphaned by a kill), each by its own PID."""
    if proc is None:
        return
    descendants = [(pid, start_time(pid)) for pid in process_tree(proc.pid)[1:]]
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid, started in descendants if started and start_time(pid) == started]
        for pid in alive:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if not alive:
            break
        time.sleep(2.0)


# --- /proc readings -------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [0] is field 3 (state)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()


def start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot: tells a process from a later one with its PID."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def process_tree(root: int) -> list[int]:
    """root and all its live descendants, root first."""
    tree, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        if os.path.exists(f"/proc/{pid}"):
            tree.append(pid)
            todo.extend(children(pid))
    return tree


@dataclass(frozen=True)
class Cpu:
    """CPU seconds in user and in system (kernel) mode."""
    user: float = 0.0
    system: float = 0.0

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, other: "Cpu") -> "Cpu":
        return Cpu(self.user - other.user, self.system - other.system)


def tree_cpu(root: int) -> dict[int, Cpu]:
    """CPU of each live process in the tree: its utime/stime plus its cutime/cstime, the CPU
    of children that exited and that it reaped (a replaced worker's time moves to its parent
    when reaped), so the difference of two sums counts every process once."""
    cpu = {}
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:  # stat fields 14-17: utime, stime, cutime, cstime
            utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
            cpu[pid] = Cpu((utime + cutime) / CLK_TCK, (stime + cstime) / CLK_TCK)
    return cpu


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, summed over its CPUs."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def own_cpu_seconds() -> float:
    """CPU of this process and its reaped children (e.g. a finished wrk)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def memory_kib(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) of one process in KiB from /proc/PID/smaps_rollup."""
    rss = pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        return None
    return (rss, pss) if rss is not None and pss is not None else None


def role(pid: int, root: int) -> str:
    """A short name for a process of a server's tree, from its place and command line."""
    if pid == root:
        return "main"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return "?"
    fields = _stat_fields(pid)
    parent = int(fields[1]) if fields else None
    if b"resource_tracker" in cmd:
        return "resource tracker"
    if b"forkserver" in cmd:
        return "fork server" if parent == root else "worker"
    return "child" if parent == root else "descendant"


@dataclass
class MemoryPeak:
    rss_kib: int = 0          # the largest sum over the tree seen in one sample
    pss_kib: int = 0
    processes: int = 0        # how many processes that sample summed
    samples: int = 0
    per_process_pss: dict[int, tuple[str, int]] = field(default_factory=dict)  # pid -> (role, peak)


class MemorySampler:
    """Samples RSS and PSS of a process tree every `interval` seconds in a thread; keeps peaks."""

    def __init__(self, root: int, interval: float = 0.2):
        self.root = root
        self.interval = interval
        self.peak = MemoryPeak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def sample(self) -> None:
        rss = pss = n = 0
        for pid in process_tree(self.root):
            reading = memory_kib(pid)
            if reading is None:
                continue
            rss += reading[0]
            pss += reading[1]
            n += 1
            name, best = self.peak.per_process_pss.get(pid, (None, 0))
            if reading[1] > best:
                self.peak.per_process_pss[pid] = (name or role(pid, self.root), reading[1])
        p = self.peak
        p.samples += 1
        if pss > p.pss_kib:
            p.pss_kib, p.processes = pss, n
        p.rss_kib = max(p.rss_kib, rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "MemorySampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
