"""Test support: a real local origin server, a real imgproxy process, an HTTP client."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import io
import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import quote

import tornado.httpserver
import tornado.ioloop
import tornado.web
from PIL import Image

from imgproxy.config import Settings
from imgproxy.imaging import pipeline
from imgproxy.imaging.pipeline import Rendered
from imgproxy.imaging.settings import ImagingSettings
from imgproxy.plan import Plan, Save
from imgproxy.render import imaging_settings
from imgproxy.signature import job_signature

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- images ------------------------------------------------------------------------

QUADRANT_COLOURS = {  # top-left, top-right, bottom-left, bottom-right
    "tl": (255, 0, 0), "tr": (0, 255, 0), "bl": (0, 0, 255), "br": (255, 255, 0),
}


def quadrants(size=(640, 428), mode="RGB") -> Image.Image:
    """An image split into four flat colours, so crops and rotations can be traced."""
    w, h = size
    img = Image.new("RGB", size)
    img.paste(QUADRANT_COLOURS["tl"], (0, 0, w // 2, h // 2))
    img.paste(QUADRANT_COLOURS["tr"], (w // 2, 0, w, h // 2))
    img.paste(QUADRANT_COLOURS["bl"], (0, h // 2, w // 2, h))
    img.paste(QUADRANT_COLOURS["br"], (w // 2, h // 2, w, h))
    return img.convert(mode) if mode != "RGB" else img


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def close_to(pixel, colour, tolerance=40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, colour_type: int = 2) -> bytes:
    """A PNG signature and an IHDR claiming any size (8 bits; 2: RGB, 0: greyscale)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)


def png_claiming(width: int, height: int, pixels: bytes = b"") -> bytes:
    """A whole greyscale PNG whose header claims any size; its pixel data is whatever is given."""
    return (png_header(width, height, colour_type=0) + png_chunk(b"IDAT", zlib.compress(pixels))
            + png_chunk(b"IEND", b""))


# --- pairwise combinations --------------------------------------------------------------

def all_pairs(*dimensions: Sequence) -> list[tuple]:
    """Cases (one value per dimension) in which every pair of values of any two dimensions
    occurs at least once: far fewer than the cartesian product, and deterministic.

    Greedy: each new case starts from the first pair not yet covered, then takes, for each
    other dimension in turn, the value covering the most uncovered pairs with the values
    chosen so far (the first such value on a tie)."""
    dims = [list(d) for d in dimensions]
    assert dims and all(dims), "every dimension needs a value"
    if len(dims) == 1:
        return [(value,) for value in dims[0]]
    def pair(k: int, x: int, m: int, y: int) -> tuple:  # value x of dimension k, y of m
        return ((k, x), (m, y)) if k < m else ((m, y), (k, x))

    uncovered = {pair(k, x, m, y) for k in range(len(dims)) for m in range(k + 1, len(dims))
                 for x in range(len(dims[k])) for y in range(len(dims[m]))}
    cases: list[tuple] = []
    while uncovered:
        (k, x), (m, y) = min(uncovered)
        chosen = {k: x, m: y}
        for n in range(len(dims)):
            if n not in chosen:
                gains = [sum(pair(n, value, o, w) in uncovered for o, w in chosen.items())
                         for value in range(len(dims[n]))]
                chosen[n] = gains.index(max(gains))
        uncovered -= {pair(k, chosen[k], m, chosen[m]) for k in chosen for m in chosen if k < m}
        cases.append(tuple(dims[n][chosen[n]] for n in range(len(dims))))
    return cases


def missing_pairs(cases: Sequence[tuple], *dimensions: Sequence) -> set:
    """The pairs of values of two dimensions that no case holds (an empty set: all covered)."""
    missing = set()
    for k in range(len(dimensions)):
        for m in range(k + 1, len(dimensions)):
            held = {(case[k], case[m]) for case in cases}
            missing |= {(k, x, m, y) for x in dimensions[k] for y in dimensions[m] if (x, y) not in held}
    return missing


# --- in-process rendering: samples, plans, process() ----------------------------------

W, H = 640, 428
# A 3x3 grid of blocks in far-apart colours: after a crop or a rotation the colour
# at a point tells which block landed there. (column, row) -> RGB
BLOCKS = {
    (0, 0): (255, 0, 0), (1, 0): (0, 255, 0), (2, 0): (0, 0, 255),
    (0, 1): (255, 255, 0), (1, 1): (0, 255, 255), (2, 1): (255, 0, 255),
    (0, 2): (0, 0, 0), (1, 2): (128, 128, 128), (2, 2): (255, 128, 0),
}


def blocks(size: tuple[int, int] = (W, H)) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size)
    for (col, row), colour in BLOCKS.items():
        img.paste(colour, (w * col // 3, h * row // 3, w * (col + 1) // 3, h * (row + 1) // 3))
    return img


def encoded(img: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG" and "quality" not in options and "qtables" not in options:
        options["quality"] = 95
    img.save(out, fmt, **options)
    return out.getvalue()


def opened(body: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(body))
    img.load()
    return img


def block_at(img: Image.Image, x: int, y: int) -> tuple[int, int]:
    """The block whose colour is nearest to the pixel at (x, y)."""
    pixel = img.convert("RGB").getpixel((x, y))
    return min(BLOCKS, key=lambda b: sum((p - q) ** 2 for p, q in zip(pixel, BLOCKS[b])))


def near(a, b, tolerance: int = 12) -> bool:
    a = (a,) if isinstance(a, (int, float)) else tuple(a)
    b = (b,) if isinstance(b, (int, float)) else tuple(b)
    return len(a) == len(b) and all(abs(p - q) <= tolerance for p, q in zip(a, b))


# The image settings a default server uses; `limits(...)` changes some of them.
IMAGING = imaging_settings(Settings())


def limits(**changes) -> ImagingSettings:
    return dataclasses.replace(IMAGING, **changes)


@dataclass(frozen=True)
class Task:
    """A plan and the image settings to run it with, as a worker receives them."""
    plan: Plan
    imaging: ImagingSettings


def make_plan(*ops, limits: ImagingSettings = IMAGING, default_qualities=None, **save) -> Task:
    if default_qualities is not None:
        limits = dataclasses.replace(limits, qualities=default_qualities)
    return Task(Plan(tuple(ops), Save(**save)), limits)


def process(data: bytes, task: Task) -> Rendered:
    return pipeline.process(data, task.plan, task.imaging)


def run(data: bytes, *ops, limits: ImagingSettings = IMAGING, **save) -> tuple[Rendered, Image.Image]:
    """process() and the decoded result, with its declared size checked."""
    rendered = process(data, make_plan(*ops, limits=limits, **save))
    img = opened(rendered.body)
    assert img.size == (rendered.width, rendered.height)
    assert img.format == rendered.format
    return rendered, img


# --- the origin ----------------------------------------------------------------------

@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Origin:
    """A real HTTP server on loopback serving what a test registers, counting hits."""

    def __init__(self):
        self.routes: dict[str, Reply | Callable[[BaseHTTPRequestHandler], None]] = {}
        self.hits: dict[str, int] = {}
        self.requests: list[dict[str, str]] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without this, Nagle's
            # algorithm and curl's delayed ACKs add ~40 ms to every fetch.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                origin.hits[path] = origin.hits.get(path, 0) + 1
                origin.requests.append(dict(self.headers.items()))
                route = origin.routes.get(path)
                if route is None:
                    route = Reply(404, b"not here", {"Content-Type": "text/plain"})
                if callable(route):
                    route(self)
                    return
                if route.delay:
                    time.sleep(route.delay)
                self.send_response(route.status)
                for k, v in route.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                try:
                    self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        # serve_forever notices shutdown() only between polls: 0.5 s by default, paid by every stop
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: bytes, content_type: str = "image/jpeg",
              status: int = 200, headers: dict[str, str] | None = None, delay: float = 0.0) -> str:
        self.routes[path] = Reply(status, body, {"Content-Type": content_type, **(headers or {})}, delay)
        return self.url(path)

    def start(self) -> "Origin":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- asking the proxy --------------------------------------------------------------------

def q(url: str, extra: str = "", **params) -> str:
    """A query: the quoted url, then `extra` as written (e.g. "w=20&h=10"), then `params`."""
    return "&".join([f"url={quote(url, safe='')}"] + ([extra] if extra else [])
                    + [f"{k}={v}" for k, v in params.items()])


def assert_error(r, status: int, code: int | None = None) -> dict:
    """A deliberate JSON error: exactly Pilbox's three fields, a one-line reason, no traceback."""
    assert r.status == status, (r.status, r.body[:300])
    body = r.json
    assert set(body) == {"status_code", "error_code", "error"}, body
    assert body["status_code"] == status, body
    assert body["error"] and "\n" not in body["error"] and "Traceback" not in body["error"], body
    if code is not None:
        assert body["error_code"] == code, body
    return body


# --- the proxy -------------------------------------------------------------------------

@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self):
        assert self.headers["Content-Type"] == "application/json", self.headers["Content-Type"]
        return json.loads(self.body)

    @property
    def image(self) -> Image.Image:
        assert self.status == 200, (self.status, self.body[:300])
        return decode(self.body)


class Proxy:
    """`python -m imgproxy` on a free loopback port, stopped by its PID."""

    def __init__(self, *flags: str, log_path: Path | None = None, env: dict[str, str] | None = None):
        self.env = env or {}  # on top of this process's environment
        self.port = free_port()
        self.flags = [f"--port={self.port}", "--address=127.0.0.1", *flags]
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.ready = False

    def start(self, timeout: float = 30.0) -> "Proxy":
        return self.launch().wait_ready(timeout)

    def launch(self) -> "Proxy":
        """Start the process without waiting for it to listen (see `wait_ready`)."""
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imgproxy", *self.flags],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        return self

    def wait_ready(self, timeout: float = 30.0) -> "Proxy":
        deadline = time.monotonic() + timeout
        retries = 3
        while not self.ready and time.monotonic() < deadline:
            if self.process.poll() is not None:
                if retries and "Address already in use" in self.log():
                    # free_port() only found a port free: with tests running in parallel,
                    # another process may have bound it since. Try another one.
                    retries -= 1
                    self.port = free_port()
                    self.flags[0] = f"--port={self.port}"
                    self.launch()
                    continue
                raise RuntimeError(f"imgproxy exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    self.ready = True
            except OSError:
                time.sleep(0.05)
        if self.ready:
            return self
        self.stop()
        raise RuntimeError("imgproxy did not start listening in time")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""

    def terminate(self) -> None:
        """Ask for a graceful stop without waiting for it (see `stop`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)

    def get(self, query: str = "", path: str = "/", headers: dict[str, str] | None = None,
            timeout: float = 30.0) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            target = f"{path}?{query}" if query else path
            conn.request("GET", target, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()


def children(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for kid in children(todo.pop()):
            found.append(kid)
            todo.append(kid)
    return found


def workers_of(proxy: Proxy) -> list[int]:
    """The image workers of a running proxy: server -> multiprocessing fork server -> workers."""
    for kid in children(proxy.process.pid):
        try:
            if b"forkserver" in open(f"/proc/{kid}/cmdline", "rb").read():
                return sorted(children(kid))
        except OSError:
            pass
    return []


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def serve_gated(origin: Origin, path: str, body: bytes, gate: threading.Event, free: int = 0,
                content_type: str = "image/jpeg") -> str:
    """Like `origin.serve`, but every fetch after the first `free` ones waits until `gate`
    is set (30 s at most) before it is answered: a fetch that stays in flight exactly as
    long as the test needs, where a fixed delay would have to guess (and be paid by every
    later fetch too). Set the gate in a `finally`."""
    def handler(h: BaseHTTPRequestHandler) -> None:
        if origin.hits[path] > free:
            gate.wait(30)
        try:
            h.send_response(200)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        except OSError:  # the fetching node was killed meanwhile
            pass

    origin.routes[path] = handler
    return origin.url(path)


def serve_in_one_write(origin: Origin, path: str, body: bytes, content_type: str = "image/jpeg",
                       headers: dict[str, str] | None = None) -> str:
    """Like `origin.serve`, but the whole reply goes out in one write.

    BaseHTTPRequestHandler flushes the headers, then writes the body separately;
    with Nagle's algorithm on the origin and delayed ACKs at curl that second
    write waits ~40 ms on every fetch. Tests making thousands of requests use
    this to stay fast; what the proxy receives is the same.
    """
    head = "".join(f"{k}: {v}\r\n" for k, v in
                   {"Content-Type": content_type, **(headers or {})}.items())
    reply = (f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body

    def handler(h: BaseHTTPRequestHandler) -> None:
        try:
            h.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass

    origin.routes[path] = handler
    return origin.url(path)


# --- NGINX in front: the README's config, run for real -------------------------------------

README = (ROOT / "README.rst").read_text()


def readme_block(marker: str) -> str:
    """The README's literal block whose first line is `marker`, dedented."""
    lines = README.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == marker]
    assert len(starts) == 1, f"README.rst needs exactly one {marker!r} line"
    start = starts[0]
    indent = len(lines[start]) - len(lines[start].lstrip())
    before = [line for line in lines[:start] if line.strip()]
    assert indent > 0 and before[-1].rstrip().endswith("::"), f"{marker!r} is not in a literal block"
    block = []
    for line in lines[start:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    return "\n".join(block).rstrip() + "\n"


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old!r} once in the README's NGINX config"
    return text.replace(old, new)


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    assert found, "nginx is not installed (.ci/run installs Debian's nginx-light)"
    return found


@dataclass
class Nginx:
    """NGINX in the foreground on a loopback port, in front of `proxies`; stopped by its PID."""
    process: subprocess.Popen
    port: int
    tmp: Path
    proxies: tuple["Proxy", ...] = ()

    @property
    def proxy(self) -> "Proxy":
        (only,) = self.proxies
        return only

    def get(self, query: str = "", path: str = "/", accept: str | None = None,
            headers: dict[str, str] | None = None) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            h = dict(headers or {})
            if accept is not None:
                h["Accept"] = accept
            conn.request("GET", f"{path}?{query}" if query else path, headers=h)
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def error_log(self) -> str:
        log = self.tmp / "error.log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: the master waits for its workers
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_nginx(tmp: Path, http_body: str, port: int, proxies: Sequence[Proxy] = ()) -> Nginx:
    """NGINX with `http_body` (which must listen on 127.0.0.1:`port`) inside its `http` block;
    everything it writes stays under `tmp`. Returns once it listens."""
    # As root the workers would drop to "nobody", who cannot enter pytest's
    # private temporary directories: keep them as the current user.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temps = "".join(f"    {kind}_temp_path {tmp / kind};\n"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} notice;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log {tmp / 'access.log'};\n{temps}\n{http_body}}}\n")
    process = subprocess.Popen(
        [nginx_binary(), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nginx = Nginx(process, port, tmp, tuple(proxies))
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}: {nginx.error_log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return nginx
        except OSError:
            if time.monotonic() > deadline:
                nginx.stop()
                raise RuntimeError(f"nginx did not listen in time: {nginx.error_log()}") from None
            time.sleep(0.05)


# --- redis-server ----------------------------------------------------------------------------

def start_redis(folder) -> tuple[subprocess.Popen, int]:
    """A real redis-server of the test's own on a free loopback port (stop it with stop_redis)."""
    import shutil
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (.ci/run installs it; apt-get install redis-server)"
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)


def stop_redis(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


# --- the job API: an upload receiver, and signed requests ---------------------------------------

class Receiver:
    """A Tornado upload receiver on loopback: form POSTs and PUTs, with scripted statuses."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, str, str]] = {}  # name -> (body, content type, field)
        self.times: dict[str, list[float]] = {}
        self.script: dict[str, list[int]] = {}  # path -> statuses to answer first
        self.bodies: dict[str, list[bytes]] = {}  # path -> raw POST bodies that were not forms
        receiver = self

        class Upload(tornado.web.RequestHandler):
            def _status(self) -> int | None:
                path = self.request.path
                receiver.times.setdefault(path, []).append(time.monotonic())
                queued = receiver.script.get(path)
                return queued.pop(0) if queued else None

            def post(self, _):
                status = self._status()
                if status:
                    self.set_status(status)
                    return
                if not self.request.files:
                    receiver.bodies.setdefault(self.request.path, []).append(self.request.body)
                for name, files in self.request.files.items():
                    for f in files:
                        receiver.files[f["filename"]] = (f["body"], f["content_type"], name)

            def put(self, name):
                status = self._status()
                if status:
                    self.set_status(status)
                    return
                receiver.files[name] = (self.request.body, self.request.headers.get("Content-Type"), "PUT")

        self.port = free_port()
        self.loop = None
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(asyncio.new_event_loop())
            self.loop = tornado.ioloop.IOLoop.current()
            app = tornado.web.Application([(r"/(?:upload\.html|put|hook)/?(.*)", Upload)])
            server = tornado.httpserver.HTTPServer(app)
            server.listen(self.port, "127.0.0.1")
            ready.set()
            self.loop.start()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.loop.add_callback(self.loop.stop)


def job_post(proxy, job: dict | bytes, key: str, headers: dict | None = None):
    import http.client
    body = job if isinstance(job, bytes) else json.dumps(job).encode()
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request("POST", "/jobs", body=body, headers={"X-Signature": job_signature(key, body),
                                                          "Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), json.loads(r.read() or b"null")
    finally:
        conn.close()


def job_status(proxy, job_id: str, key: str):
    path = f"/jobs/{job_id}"
    return proxy.get(path=path, headers={"X-Signature": job_signature(key, path)})


def job_wait(proxy, job_id: str, key: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = job_status(proxy, job_id, key).json
        if doc["status"] in ("done", "failed"):
            return doc
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {doc['status']}: {doc}")


# --- S3: moto's standalone server ----------------------------------------------------

BUCKET = "imgproxy-test"
REGION = "us-east-1"


class Moto:
    """moto's standalone server in a process of its own, with an IAM user allowed s3:*."""

    def __init__(self, folder):
        import boto3  # noqa: F401 - the test extra has both: a missing one fails loudly
        import moto  # noqa: F401
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(folder, "moto.log"), "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **_FAKE_ENV})
        try:
            self._set_up()
        except BaseException:
            self.stop()  # a failed set-up leaves no server behind
            raise

    def _set_up(self):
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and self.process.poll() is None, "moto did not start"
                time.sleep(0.05)
        # Set up while the server still lets anyone in, then turn authentication on for
        # every request from here on (INITIAL_NO_AUTH_ACTION_COUNT=0, through moto's API).
        iam = self.client("iam", *_FAKE_CREDENTIALS)
        iam.create_user(UserName="imgproxy")
        iam.put_user_policy(UserName="imgproxy", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="imgproxy")["AccessKey"]
        self.credentials = key["AccessKeyId"], key["SecretAccessKey"]
        urllib.request.urlopen(urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
            headers={"Content-Type": "text/plain"}), timeout=5).close()
        self.client("s3", *self.credentials).create_bucket(Bucket=BUCKET)

    def client(self, service, key_id, secret):
        import boto3
        return boto3.session.Session().client(service, endpoint_url=self.endpoint, region_name=REGION,
                                              aws_access_key_id=key_id, aws_secret_access_key=secret)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.log.close()


# Never anything real: no credentials from the environment, no instance metadata lookups.
_FAKE_CREDENTIALS = ("AKIAFAKEFAKEFAKEFAKE", "fake-secret")
_FAKE_ENV = {"AWS_ACCESS_KEY_ID": _FAKE_CREDENTIALS[0], "AWS_SECRET_ACCESS_KEY": _FAKE_CREDENTIALS[1],
             "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
             "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
