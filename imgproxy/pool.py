"""Forked worker processes that run pure image functions under a deadline.

A task is a module-level function (imaging.pipeline.process, or imaging.info.describe
for /info), the source bytes and the function's other arguments. The event loop only
moves bytes: each worker owns one socket pair, takes one task at a time (the bytes
as they are, the rest pickled once) and answers with the result (pickled once).

Workers are forked from multiprocessing's fork server, which imports Pillow and
OpenCV once before any thread exists, so a replacement worker starts in
milliseconds from a clean single-threaded parent. Tasks wait in a
bounded queue; past it the pool refuses at once (503). A task over its deadline
has its worker killed (504); a worker that dies costs only its own task (502).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import pickle
import signal
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable

from tornado.iostream import IOStream, StreamClosedError

from . import errors
from .errors import ProxyError

log = logging.getLogger("imgproxy.pool")

_HEADER = struct.Struct("!Q")  # a reply: the length of its pickle
_TASK = struct.Struct("!QQ")  # a task: the length of its pickle (function, arguments), then of the bytes
_MAX_FRAME = 1 << 30
_SOCKET_BUFFER = 4 << 20  # the kernel caps it at net.core.wmem_max/rmem_max
_KEEP_RESIDENT = 160 << 20  # a worker above this after a task is trimmed (see _memory_releaser)
_PRELOAD = ["imgproxy.worker_preload"]
FAILING_AFTER = 3  # tasks in a row that cost their worker (memory, death): the pool is failing


# --- the worker side (runs in the child process) ----------------------------------

def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)


def _send_frame(sock: socket.socket, obj: Any) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def _memory_releaser(keep_bytes: int):
    """A function that hands freed heap memory back to the OS once a worker holds more
    than `keep_bytes` (glibc only; elsewhere a no-op).

    glibc keeps freed blocks in the heap for reuse, which is what makes the next
    decode fast: giving them back after every task costs ~30% more CPU in page
    faults. So a worker keeps what a typical large photo needs and is trimmed only
    after an outlier, so it cannot stay at its largest image's size for good.
    """
    try:
        import ctypes
        trim = ctypes.CDLL("libc.so.6").malloc_trim
        page = os.sysconf("SC_PAGE_SIZE")
    except (OSError, AttributeError, ValueError):
        return lambda: None

    def release() -> None:
        with open("/proc/self/statm") as f:
            resident = int(f.read().split()[1]) * page
        if resident > keep_bytes:
            trim(0)
    return release


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _worker_main(sock: socket.socket, memory_limit: int | None) -> None:
    # The parent handles signals; a worker is stopped by closing its socket or SIGKILL.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if memory_limit:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    # Ready, and how much address space an idle worker already maps (against memory_limit).
    _send_frame(sock, ("ready", _mapped_bytes()))
    release_memory = _memory_releaser(_KEEP_RESIDENT)
    while True:
        header = _recv_exact(sock, _TASK.size)
        if header is None:
            return
        meta_size, data_size = _TASK.unpack(header)
        meta = _recv_exact(sock, meta_size)
        data = _recv_exact(sock, data_size)
        if meta is None or data is None:
            return
        function, args = pickle.loads(meta)
        try:
            result: Any = ("ok", function(data, *args))
        except ProxyError as e:
            result = ("error", e)
        except MemoryError:
            result = ("error", errors.worker_failed("Image needs more memory than a worker may use"))
        except Exception:
            log.exception("unexpected error in %s", getattr(function, "__qualname__", "?"))
            result = ("error", errors.internal("Internal error while processing the image"))
        del data
        _send_frame(sock, result)
        del result
        release_memory()


# --- the parent side (runs on the event loop) ------------------------------------

@dataclass
class PoolStats:
    total: int
    alive: int
    busy: int
    queued: int
    restarts: int
    failing: bool  # the last tasks all ended with a worker out of memory or dead


class _Worker:
    def __init__(self, process: multiprocessing.process.BaseProcess, stream: IOStream):
        self.process = process
        self.stream = stream
        self.busy = False
        self.ready = False  # until its first frame arrives
        self.mapped = 0  # bytes of address space it mapped when idle

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def kill(self) -> None:
        self.stream.close()
        try:
            self.process.kill()
        except (OSError, ValueError, AttributeError):
            pass


def _fork_context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)  # read only when the fork server starts
    return context


def start_fork_server() -> None:
    """Start the fork server now rather than at the first Pool.start: its imports then
    run beside the caller's own (start-up is that much shorter on two cores or more)."""
    _fork_context()
    multiprocessing.forkserver.ensure_running()


class Pool:
    def __init__(self, size: int, max_queue: int, task_timeout: float,
                 memory_limit: int | None = None,
                 observe: Callable[[str, float], None] | None = None):
        """`observe(stage, seconds)` hears how long each task waited ("queue") and ran ("process")."""
        self.size = size
        self.max_queue = max_queue
        self.task_timeout = task_timeout
        self.memory_limit = memory_limit
        self._observe = observe or (lambda stage, seconds: None)
        self.restarts = 0
        self._failures = 0  # tasks in a row whose worker ran out of memory or died
        self._ctx = _fork_context()
        self._workers: list[_Worker] = []
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self._closing = False

    # lifecycle
    def start(self) -> None:
        for _ in range(self.size):
            self._workers.append(self._spawn())

    async def ready(self, timeout: float = 60.0) -> int:
        """Wait until every worker has started; returns the most address space an idle
        worker maps, in bytes. Listening before this would refuse an early burst."""
        deadline = time.monotonic() + timeout
        while not all(w.ready for w in self._workers) or len(self._workers) < self.size:
            if time.monotonic() > deadline:
                raise RuntimeError(f"image workers did not start within {timeout:g}s")
            await asyncio.sleep(0.01)
        return max((w.mapped for w in self._workers), default=0)

    def _spawn(self) -> _Worker:
        parent, child = socket.socketpair()
        # Room for a whole typical source in the socket: fewer wake-ups per task.
        for sock, option in ((parent, socket.SO_SNDBUF), (child, socket.SO_RCVBUF)):
            sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
        process = self._ctx.Process(target=_worker_main, args=(child, self.memory_limit),
                                    name="imgproxy-worker", daemon=True)
        process.start()
        child.close()
        stream = IOStream(parent, max_buffer_size=_MAX_FRAME + _HEADER.size)
        worker = _Worker(process, stream)
        stream.set_close_callback(lambda: self._on_worker_closed(worker))
        asyncio.get_running_loop().create_task(self._await_ready(worker))
        log.debug("worker %s started", process.pid)
        return worker

    async def _await_ready(self, worker: _Worker) -> None:
        try:
            _, worker.mapped = await self._read_frame(worker)
        except StreamClosedError:
            self._failures += 1  # it died starting: the close callback replaces it
            return
        worker.ready = True
        self._wake_next()

    def _on_worker_closed(self, worker: _Worker) -> None:
        """A worker's socket closed: it died, was killed, or the pool is closing."""
        worker.kill()
        if worker in self._workers:
            self._workers.remove(worker)
            if not self._closing:
                self.restarts += 1
                log.warning("worker %s exited; starting a replacement", worker.pid)
                self._replace()

    def _replace(self) -> None:
        if self._closing:
            return
        try:
            self._workers.append(self._spawn())
        except Exception:  # e.g. out of processes: try again shortly, /health shows it
            log.exception("cannot start a worker; retrying in a second")
            asyncio.get_running_loop().call_later(1.0, self._replace)
            return
        self._wake_next()

    async def close(self, grace: float = 10.0) -> None:
        """Finish running tasks (up to `grace` seconds), then stop every worker."""
        self._closing = True
        while self._waiting:
            waiting = self._waiting.popleft()
            if not waiting.done():
                waiting.set_exception(errors.busy("Server is shutting down"))
        deadline = time.monotonic() + grace
        while any(w.busy for w in self._workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        workers, self._workers = self._workers, []
        for w in workers:
            w.stream.close()  # a worker exits when its socket closes
        for w in workers:
            w.process.join(max(0.0, deadline - time.monotonic()) or 0.5)
            if w.process.is_alive():
                w.kill()
                w.process.join(1.0)

    def stats(self) -> PoolStats:
        alive = sum(1 for w in self._workers if w.process.is_alive())
        busy = sum(1 for w in self._workers if w.busy)
        return PoolStats(self.size, alive, busy, len(self._waiting), self.restarts,
                         self._failures >= FAILING_AFTER)

    # running tasks
    def _idle_worker(self) -> _Worker | None:
        for w in self._workers:
            if w.ready and not w.busy and not w.stream.closed():
                return w
        return None

    def _wake_next(self) -> None:
        while self._waiting and self._idle_worker() is not None:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def check_capacity(self) -> None:
        """Refuse early (before fetching) when no task could even wait."""
        if self._closing:
            raise errors.busy("Server is shutting down")
        if self._idle_worker() is None and len(self._waiting) >= self.max_queue:
            raise errors.busy("Server is busy; try again shortly")

    async def run(self, function: Callable[..., Any], data: bytes, *args: Any) -> Any:
        """`function(data, *args)` in a worker; returns its result or raises its ProxyError.

        `function` must be a module-level function (it is pickled by name).
        """
        self.check_capacity()
        queued = time.monotonic()
        worker = self._idle_worker()
        while worker is None:
            fut = asyncio.get_running_loop().create_future()
            self._waiting.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut in self._waiting:
                    self._waiting.remove(fut)
                raise
            worker = self._idle_worker()
        worker.busy = True
        started = time.monotonic()
        try:
            return await self._execute(worker, function, data, args)
        finally:
            worker.busy = False
            self._observe("queue", started - queued)
            self._observe("process", time.monotonic() - started)
            self._wake_next()

    async def _execute(self, worker: _Worker, function: Callable[..., Any], data: bytes,
                       args: tuple) -> Any:
        try:
            reply = await asyncio.wait_for(self._exchange(worker, function, data, args), self.task_timeout)
        except asyncio.TimeoutError:
            log.warning("worker %s over the %.1fs deadline; killing it", worker.pid, self.task_timeout)
            worker.kill()
            raise errors.deadline(f"Processing took longer than {self.task_timeout:g}s") from None
        except StreamClosedError:
            worker.kill()
            self._failures += 1
            raise errors.worker_failed("The worker processing this image stopped unexpectedly") from None
        if reply[0] == "ok":
            self._failures = 0
            return reply[1]
        error = reply[1]
        self._failures = self._failures + 1 if error.code == errors.Code.WORKER_FAILED else 0
        raise error

    async def _exchange(self, worker: _Worker, function: Callable[..., Any], data: bytes,
                        args: tuple) -> Any:
        # The source bytes go as they are: the stream sends them without a copy,
        # where pickling them would copy megabytes on the event loop.
        meta = pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL)
        worker.stream.write(_TASK.pack(len(meta), len(data)) + meta)
        await worker.stream.write(data)
        return await self._read_frame(worker)

    async def _read_frame(self, worker: _Worker) -> Any:
        (n,) = _HEADER.unpack(await worker.stream.read_bytes(_HEADER.size))
        return pickle.loads(await worker.stream.read_bytes(n))
