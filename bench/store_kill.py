"""Kill the server during uploads and variant generation; then check that nothing half-written
is ever served and that every upload exists whole or not at all.

One store in a temporary folder (`--store_dir`, SQLite records and job queue, `--workers=2`,
`--job_lease_seconds` short) and, --iterations times: start `python -m imgproxy`, POST one
photo (raw body, `?title=kill-<n>-<mode>`), synchronously or with `?async=1`, and SIGKILL the
server (its PID, then each process of its tree by PID) at a random moment: in a fifth of the
iterations while the body is still being sent (part of it sent, the rest held back), else
0 to 1.2x the photo's measured upload-and-variants time after the request. The next
iteration's start is the restart: it also finds the jobs of killed async uploads (their lease
runs out) and may itself be killed while making them.

After the loop, one last start, and the checks:

- every record's original (`GET /images/<id>/original`) equals, byte for byte, the photo sent
  under its title; no title has two records; every upload answered 201/202 has its record;
- every variant of every record (`GET /images/<id>/<variant>`) answers 200 and decodes fully
  (Pillow `load()`) at the record's size;
- every file under store_dir whose name does not start with a dot decodes fully; dot files
  (FileStore's temporary files) are counted, and asked for through the server (must be 404);
- folders with no record (an original stored, its record never written) are counted;
- every async upload left pending by a kill is ready after the restart (within a time limit),
  while a synchronous upload killed during its variants stays pending (nothing queued it).

    cd /work/main && .venv/bin/python bench/store_kill.py [--iterations 30] [--lease 3]
        [--seed N] [--photos A.jpg,B.jpg] [--time-cap 900] [--repo DIR]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

from bench import common  # noqa: E402
from bench.store_upload import CORPUS, TOKEN  # noqa: E402

# The largest photo (baseline, EXIF), a progressive one, and one with an ICC profile.
DEFAULT_PHOTOS = "Kleiber_by_Lukas_Baubkus.jpg,Dragonfly_by_Bolly.jpg,ColorfulCups_by_Dmitri_Popov.jpg"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Attempt:
    n: int
    photo: str
    mode: str           # sync / async
    phase: str          # body (killed while the body was sent) / after (at a random delay)
    delay: float        # seconds from the request's start to the kill
    status: int | None = None  # the reply, if one came before the kill
    image_id: str | None = None
    state_after_restart: str | None = None  # the record's state when the next server started

    @property
    def title(self) -> str:
        return f"kill-{self.n}-{self.mode}"


class Server:
    def __init__(self, tmp: Path, lease: float, repo: Path, n: int):
        self.port = common.free_port()
        cmd = [sys.executable, "-m", "imgproxy", f"--port={self.port}", "--address=127.0.0.1", "--workers=2",
               f"--store_dir={tmp / 'store'}", f"--store_token={TOKEN}", f"--store_db={tmp / 'store.sqlite3'}",
               f"--job_db={tmp / 'jobs.sqlite3'}", f"--job_lease_seconds={lease}", "--job_retry_seconds=0.2"]
        self.proc = common.start(cmd, common.CACHE / "logs" / "store-kill" / f"{n:03d}.log", cwd=repo.resolve())
        common.wait_for_port(self.port, self.proc)

    def kill(self) -> None:
        """SIGKILL the server, then every process of its tree, each by its PID."""
        tree = [(pid, common.start_time(pid)) for pid in common.process_tree(self.proc.pid)]
        self.proc.kill()
        self.proc.wait(10)
        for pid, started in tree[1:]:
            if started and common.start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def request(self, method: str, path: str, body: bytes | None = None, timeout: float = 60) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=AUTH)
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def json(self, path: str) -> tuple[int, dict]:
        status, body = self.request("GET", path)
        return status, (json.loads(body) if body.startswith(b"{") else {})


def post_whole(port: int, path: str, body: bytes, attempt: Attempt) -> None:
    """The upload in a thread; its reply (if any comes before the kill) goes into `attempt`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, headers={**AUTH, "Content-Type": "application/octet-stream"})
        reply = conn.getresponse()
        doc = json.loads(reply.read() or b"{}")
        attempt.status, attempt.image_id = reply.status, doc.get("id")
    except (OSError, http.client.HTTPException, ValueError):
        pass
    finally:
        conn.close()


def post_part(port: int, path: str, body: bytes, fraction: float) -> socket.socket:
    """Headers for the whole body, then only `fraction` of it: the server waits for the rest."""
    sock = socket.create_connection(("127.0.0.1", port))
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[:int(len(body) * fraction)])
    return sock


def decodes(data: bytes) -> tuple[bool, str]:
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return True, f"{img.format} {img.width}x{img.height}"
    except Exception as e:  # noqa: BLE001 - any failure to decode is what we count
        return False, f"{type(e).__name__}: {e}"


def calibrate(server: Server, bodies: dict[str, bytes]) -> dict[str, float]:
    """Seconds a synchronous upload with its variants takes, per photo (the kill window)."""
    found = {}
    for name, body in bodies.items():
        t0 = time.perf_counter()
        status, _ = server.request("POST", "/images?title=calibrate", body)
        found[name] = time.perf_counter() - t0
        if status != 201:
            raise RuntimeError(f"calibration upload of {name}: {status}")
    return found


def one_iteration(server: Server, attempt: Attempt, body: bytes, rng: random.Random) -> None:
    path = f"/images?title={attempt.title}" + ("&async=1" if attempt.mode == "async" else "")
    t0 = time.perf_counter()
    if attempt.phase == "body":
        sock = post_part(server.port, path, body, rng.uniform(0.0, 0.95))
        time.sleep(attempt.delay)
        server.kill()
        sock.close()
        return
    thread = threading.Thread(target=post_whole, args=(server.port, path, body, attempt), daemon=True)
    thread.start()
    time.sleep(max(0.0, attempt.delay - (time.perf_counter() - t0)))
    server.kill()
    thread.join(10)


def after_restart(server: Server, attempts: list[Attempt]) -> None:
    """What the restarted server holds of the last upload: its record's state (by title), if any."""
    if not attempts:
        return
    last = attempts[-1]
    _, page = server.json("/images?limit=1000")
    found = [s["id"] for s in page.get("images", []) if s["title"] == last.title]
    if found:
        last.image_id = last.image_id or found[0]
        _, rec = server.json(f"/images/{found[0]}")
        last.state_after_restart = rec.get("state")
    print(f"      after the restart: {last.state_after_restart or 'no record'}")


def walk(store: Path) -> tuple[list[Path], list[Path]]:
    blobs, temps = [], []
    for folder, _, names in os.walk(store):
        for name in names:
            (temps if name.startswith(".") else blobs).append(Path(folder) / name)
    return blobs, temps


def final_checks(server: Server, store: Path, attempts: list[Attempt], bodies: dict[str, bytes],
                 wait_pending: float) -> dict:
    counts: Counter = Counter()
    problems: list[str] = []
    status, page = server.json("/images?limit=1000")
    if status != 200:
        raise RuntimeError(f"GET /images: {status}")
    summaries = page["images"]
    by_title = Counter(s["title"] for s in summaries)
    counts["records"] = len(summaries)
    counts["titles with two records"] = sum(1 for t, k in by_title.items() if k > 1 and t != "calibrate")
    by_attempt = {a.title: a for a in attempts}

    # async uploads left pending: the queue must finish them
    deadline = time.monotonic() + wait_pending
    records = {}
    for s in summaries:
        while True:
            _, rec = server.json(f"/images/{s['id']}")
            a = by_attempt.get(s["title"])
            if rec.get("state") != "pending" or a is None or a.mode != "async" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        records[s["id"]] = (s["title"], rec)

    for image_id, (title, rec) in records.items():
        a = by_attempt.get(title)
        photo = a.photo if a else None
        status, original = server.request("GET", f"/images/{image_id}/original")
        if status != 200:
            problems.append(f"{image_id} ({title}): original answered {status}")
        elif photo is not None and original != bodies[photo]:
            problems.append(f"{image_id} ({title}): original differs from {photo}")
            counts["originals not byte for byte"] += 1
        elif photo is None and original not in bodies.values():
            problems.append(f"{image_id} ({title}): original is none of the photos sent")
            counts["originals not byte for byte"] += 1
        else:
            counts["originals byte for byte"] += 1
        counts[f"state {rec['state']} ({a.mode if a else 'calibration'})"] += 1
        for name, v in rec["variants"].items():
            status, data = server.request("GET", f"/images/{image_id}/{name}")
            ok, what = decodes(data) if status == 200 else (False, f"status {status}")
            size_ok = ok and what.endswith(f" {v['width']}x{v['height']}")
            counts["variants served whole" if ok and size_ok else "variants NOT served whole"] += 1
            if not (ok and size_ok):
                problems.append(f"{image_id}/{name}: {what} (record says {v['width']}x{v['height']})")
        if a is not None and a.state_after_restart == "pending":
            now = "ready after restart" if rec["state"] == "ready" else rec["state"]
            key = f"{a.mode} pending after its kill: {now}"
            counts[key] += 1

    for a in attempts:
        found = by_title.get(a.title, 0)
        outcome = ("answered " + str(a.status)) if a.status else "no answer"
        counts[f"{a.mode}/{a.phase}: {outcome}, {'stored' if found else 'not stored'}"] += 1
        if a.status in (201, 202) and not found:
            problems.append(f"{a.title}: answered {a.status} but no record")

    blobs, temps = walk(store)
    broken = 0
    for path in blobs:
        ok, what = decodes(path.read_bytes())
        if not ok:
            broken += 1
            problems.append(f"{path.relative_to(store)}: does not decode ({what})")
    counts["files under store_dir"] = len(blobs)
    counts["files that do not decode"] = broken
    counts["temporary (dot) files left"] = len(temps)
    counts["temporary files: bytes"] = sum(p.stat().st_size for p in temps)
    for path in temps:
        image_id = path.parent.name
        status, _ = server.request("GET", f"/images/{image_id}/{path.name}")
        counts[f"temporary files asked for: {status}"] += 1
        if status == 200:
            problems.append(f"{path.relative_to(store)} served (200)")
    folders = {p.parent.name for p in blobs} | {p.parent.name for p in temps}
    orphans = sorted(folders - set(records))
    counts["folders without a record"] = len(orphans)
    counts["bytes in folders without a record"] = sum(p.stat().st_size for p in blobs + temps
                                                      if p.parent.name in orphans)
    return {"counts": counts, "problems": problems}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_repo_arg(parser)
    parser.add_argument("--iterations", type=int, default=30, help="kills (30)")
    parser.add_argument("--lease", type=float, default=3.0, help="--job_lease_seconds (3)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock; printed)")
    parser.add_argument("--photos", default=DEFAULT_PHOTOS, help=f"comma-separated, in the corpus ({DEFAULT_PHOTOS})")
    parser.add_argument("--time-cap", type=float, default=900.0, help="stop the loop after this many seconds (900)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (printed)")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    bodies = {name: (CORPUS / name).read_bytes() for name in args.photos.split(",") if name}
    tmp = Path(tempfile.mkdtemp(prefix="imgproxy-store-kill-"))
    print(f"seed {seed}; store in {tmp}; photos: {', '.join(bodies)}")
    attempts: list[Attempt] = []
    server = None
    started = time.monotonic()
    try:
        server = Server(tmp, args.lease, args.repo, 0)
        window = calibrate(server, bodies)
        print("sync upload with variants, seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in window.items()))
        server.kill()
        for n in range(1, args.iterations + 1):
            if time.monotonic() - started > args.time_cap:
                print(f"time cap reached after {n - 1} iterations")
                break
            server = Server(tmp, args.lease, args.repo, n)
            after_restart(server, attempts)
            photo = rng.choice(list(bodies))
            phase = "body" if rng.random() < 0.2 else "after"
            delay = rng.uniform(0.0, 0.3) if phase == "body" else rng.uniform(0.0, 1.2 * window[photo])
            attempt = Attempt(n, photo, rng.choice(["sync", "async"]), phase, delay)
            one_iteration(server, attempt, bodies[photo], rng)
            attempts.append(attempt)
            print(f"{n:3d} {attempt.mode:<5} {phase:<5} {photo:<34} killed at {delay:5.2f}s: "
                  f"{'answered ' + str(attempt.status) if attempt.status else 'no answer'}")
        server = Server(tmp, args.lease, args.repo, args.iterations + 1)
        after_restart(server, attempts)
        result = final_checks(server, tmp / "store", attempts, bodies, wait_pending=6 * args.lease + 60)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping what was started")
        return 130
    finally:
        if server is not None:
            common.stop(server.proc)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{len(attempts)} kills in {time.monotonic() - started:.0f}s (seed {seed}, lease {args.lease:g}s):")
    for key, value in sorted(result["counts"].items()):
        print(f"  {key:<58} {value}")
    print(f"problems: {len(result['problems'])}")
    for line in result["problems"][:20]:
        print(f"  ! {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
