"""Bounded HTTP load on 127.0.0.1: wrk when it is installed, else a small asyncio client.

Both keep `connections` connections busy for `duration` seconds, each request taking the next
path of a fixed list in turn, with keep-alive or with `Connection: close`, and report the same
LoadResult. Requests still in flight at the end are neither counted nor timed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench import common

HOST = "127.0.0.1"
REQUEST_TIMEOUT = 30.0  # seconds; a reply slower than this counts as a socket error


@dataclass
class LoadResult:
    client: str
    duration: float                 # seconds the load ran
    requests: int                   # complete responses, whatever their status
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_200: int
    socket_errors: int
    statuses: dict[int, int] = field(default_factory=dict)  # only the asyncio client fills this

    @property
    def rps(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    @property
    def errors(self) -> int:
        return self.non_200 + self.socket_errors


def run(port: int, paths: list[str], connections: int, duration: float, keepalive: bool,
        client: str = "auto") -> LoadResult:
    """client: "wrk", "asyncio", or "auto" (wrk if it is on PATH)."""
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "asyncio"
    if client == "wrk":
        return run_wrk(port, paths, connections, duration, keepalive)
    return asyncio.run(run_asyncio(port, paths, connections, duration, keepalive))


# --- wrk -------------------------------------------------------------------------------

# Each wrk thread walks the path list from its own offset (spread evenly over the list), one
# turn for all its connections (so the mix of photos stays even), counts non-200 replies, and
# the main thread prints one JSON line at the end.
_WRK_SCRIPT = """
local paths = {%(paths)s}
local thread_count = %(threads)d
local connection = "%(connection)s"
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  i = id * math.floor(#paths / thread_count)
  non200 = 0
end

function request()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1], {["Connection"] = connection})
end

function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  local non = 0
  for _, t in ipairs(threads) do non = non + t:get("non200") end
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %%d, "duration_us": %%d, "p50": %%d, "p90": %%d, "p99": %%d, ' ..
    '"max": %%d, "non200": %%d, "connect": %%d, "read": %%d, "write": %%d, "timeout": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, non, e.connect, e.read, e.write, e.timeout))
end
"""


def run_wrk(port: int, paths: list[str], connections: int, duration: float,
            keepalive: bool) -> LoadResult:
    threads = min(2, connections)
    lua = _WRK_SCRIPT % {"paths": ", ".join(json.dumps(p) for p in paths), "threads": threads,
                         "connection": "keep-alive" if keepalive else "close"}
    common.CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=common.CACHE, delete=False) as f:
        f.write(lua)
    cmd = ["wrk", f"--threads={threads}", f"--connections={connections}",
           f"--duration={max(1, round(duration))}s", f"--timeout={int(REQUEST_TIMEOUT)}s",
           f"--script={f.name}", f"http://{HOST}:{port}/"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    finally:
        Path(f.name).unlink(missing_ok=True)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    r = json.loads(line.split(" ", 1)[1])
    return LoadResult("wrk", r["duration_us"] / 1e6, r["requests"],
                      r["p50"] / 1000, r["p90"] / 1000, r["p99"] / 1000, r["max"] / 1000,
                      r["non200"], r["connect"] + r["read"] + r["write"] + r["timeout"])


# --- the built-in asyncio client -------------------------------------------------------

async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response: status, headers (lower-case names), body."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before a response")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        raise ValueError(f"bad status line {status_line[:80]!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n"):
            break
        if not line:
            raise ConnectionError("connection closed in the headers")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)  # the data and its CRLF
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
    else:
        body = await reader.read()  # until the server closes
    return status, headers, body


def request_bytes(port: int, path: str, keepalive: bool) -> bytes:
    connection = "keep-alive" if keepalive else "close"
    return (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: imgproxy-bench\r\n"
            f"Connection: {connection}\r\n\r\n").encode("latin-1")


async def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (for warm-up and checks)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request_bytes(port, path, keepalive=False))
        return await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
    finally:
        writer.close()


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    socket_errors: int = 0
    issued: int = 0


async def _connection(port: int, paths: list[str], keepalive: bool, deadline: float,
                      tally: _Tally) -> None:
    reader = writer = None
    try:
        while time.monotonic() < deadline:
            path = paths[tally.issued % len(paths)]  # one turn for all connections: an even mix
            tally.issued += 1
            t0 = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(request_bytes(port, path, keepalive))
                status, headers, _ = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
                tally.latencies.append(time.perf_counter() - t0)
                tally.statuses[status] += 1
                reusable = keepalive and headers.get("connection", "").lower() != "close"
            except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError,
                    asyncio.TimeoutError):
                tally.socket_errors += 1
                reusable = False
            if not reusable and writer is not None:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def run_asyncio(port: int, paths: list[str], connections: int, duration: float,
                      keepalive: bool) -> LoadResult:
    tally = _Tally()
    deadline = time.monotonic() + duration
    tasks = [asyncio.create_task(_connection(port, paths, keepalive, deadline, tally))
             for n in range(connections)]
    _, pending = await asyncio.wait(tasks, timeout=duration)
    for task in pending:  # requests still in flight at the end are not counted
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lat = sorted(1000.0 * x for x in tally.latencies)
    ok = tally.statuses.get(200, 0)
    return LoadResult("asyncio", duration, len(lat),
                      common.percentile(lat, 50), common.percentile(lat, 90),
                      common.percentile(lat, 99), lat[-1] if lat else float("nan"),
                      len(lat) - ok, tally.socket_errors, dict(tally.statuses))
