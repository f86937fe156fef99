"""The job API end to end: real server, real origin, real receivers, real SQLite on disk."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from support import Proxy, Receiver, decode, encode, quadrants, serve_gated
from support import job_post as post
from support import job_status as status
from support import job_wait as wait_done

from imgproxy.signature import job_signature

KEY = "job-secret"
PHOTO = encode(quadrants((640, 428)), "JPEG", quality=95)


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.stop()


def job_flags(tmp: Path, receiver: Receiver, *extra: str) -> list[str]:
    (tmp / "out").mkdir(exist_ok=True)
    return ["--workers=1", "--jobs", f"--job_key={KEY}", f"--job_db={tmp / 'jobs.sqlite3'}",
            f"--job_allowed_destinations={receiver.url('/')},file://{tmp / 'out'}/",
            f"--job_file_root={tmp / 'out'}", "--job_retry_seconds=0.2", "--allowed_hosts=127.0.0.1", *extra]


@pytest.fixture(scope="module")
def server(tmp_path_factory, receiver):
    tmp = tmp_path_factory.mktemp("jobs")
    p = Proxy(*job_flags(tmp, receiver), log_path=tmp / "log").start()
    p.tmp = tmp
    yield p
    p.stop()


def test_an_imgserve_request_works_unchanged(server, origin, receiver):
    src = origin.serve("/photos/cat.jpg", PHOTO)
    job = {"operationType": "resize", "srcURL": src,
           "dstURL": receiver.url("/upload.html") + ":{$width}-{$basename}.{$ext}",
           "args": {"width": 200, "height": 120}}
    code, headers, body = post(server, job, KEY)
    assert code == 202, body
    assert headers["Location"] == f"/jobs/{body['id']}" and body["status"] == "pending"
    assert body["dstURL"] == receiver.url("/upload.html") + ":200-cat.jpg"
    assert body["statusURL"] == f"/jobs/{body['id']}" and len(body["id"]) >= 32
    doc = wait_done(server, body["id"], KEY)
    assert doc["status"] == "done" and doc["attempts"] == 1 and doc["error"] is None
    data, content_type, field = receiver.files["200-cat.jpg"]
    img = decode(data)
    assert (img.format, img.size, content_type, field) == ("JPEG", (200, 120), "image/jpeg", "file")
    assert doc["result"] == {"width": 200, "height": 120, "bytes": len(data), "content_type": "image/jpeg"}


def test_several_outputs_from_one_download(server, origin, receiver):
    src = origin.serve("/photos/three.png", encode(quadrants((640, 428)), "PNG"), content_type="image/png")
    job = {"operationType": "resize", "srcURL": src, "outputs": [
        {"args": {"width": 100, "mode": "clip"}, "dstURL": receiver.url("/put/{$width}x{$height}.{$ext}"),
         "method": "PUT"},
        {"args": {"width": 64, "height": 64, "fmt": "webp"}, "dstURL": receiver.url("/put/sq.{$extension}"),
         "method": "PUT"},
        {"args": {"height": 50, "mode": "scale"}, "dstURL": f"file://{server.tmp / 'out'}/a/b/{{$basename}}.{{$ext}}"},
    ]}
    code, _, body = post(server, job, KEY)
    assert code == 202, body
    assert [o["dstURL"] for o in body["outputs"]] == [
        receiver.url("/put/99x66.png"), receiver.url("/put/sq.webp"), f"file://{server.tmp / 'out'}/a/b/three.png"]
    doc = wait_done(server, body["id"], KEY)
    assert doc["status"] == "done", doc
    assert decode(receiver.files["99x66.png"][0]).size == (99, 66)  # clip rounds as Pilbox does
    assert decode(receiver.files["sq.webp"][0]).format == "WEBP"
    assert decode((server.tmp / "out" / "a" / "b" / "three.png").read_bytes()).size == (74, 50)
    assert origin.hits["/photos/three.png"] == 2  # one to name the outputs exactly, one to render all three


@pytest.mark.parametrize("body, code, msg", [
    (b"{not json", 400, "request parse error"),
    (json.dumps({"operationType": "resize"}).encode(), 400, "request invalid"),
    (json.dumps({"operationType": "explode", "srcURL": "http://a/b.jpg", "dstURL": "x", "args": {}}).encode(),
     400, "request invalid"),
    (json.dumps({"operationType": "resize", "srcURL": "gopher://a/b.jpg", "dstURL": "x", "args": {}}).encode(),
     400, "request invalid"),
    (json.dumps({"operationType": "resize", "srcURL": "http://127.0.0.1/b.jpg", "dstURL": "x",
                 "args": {"width": 10, "q": 0}}).encode(), 400, "request invalid"),
])
def test_malformed_jobs_are_refused_before_anything_is_fetched(server, body, code, msg):
    status_code, _, reply = post(server, body, KEY)
    assert status_code == code and reply["msg"] == msg and reply["status_code"] == code
    assert reply["error"] and "\n" not in reply["error"]
    if msg == "request invalid":
        assert reply["code"] == reply["error_code"]


def test_signature_size_and_destination_rules(server, origin, receiver):
    job = {"operationType": "resize", "srcURL": origin.url("/photos/cat.jpg"),
           "dstURL": receiver.url("/upload.html") + ":x.jpg", "args": {"width": 10}}
    assert post(server, job, key="wrong")[0] == 403
    body = json.dumps(job).encode()
    assert post(server, body, KEY, headers={"X-Signature": job_signature(KEY, body + b" ")})[0] == 403  # replayed
    assert post(server, b"{" + b" " * 70000 + b"}", KEY)[0] == 413
    elsewhere = dict(job, dstURL="http://127.0.0.2:9/upload.html:x.jpg")
    assert post(server, elsewhere, KEY)[0] == 403
    traversal = dict(job, dstURL=f"file://{server.tmp / 'out'}/../escape.jpg")
    assert post(server, traversal, KEY)[0] == 400
    assert status(server, "0" * 32, KEY).status == 404
    assert status(server, "0" * 32, "wrong").status == 403


def test_transient_failures_retry_with_backoff_permanent_ones_fail_at_once(server, origin, receiver):
    receiver.script["/put/flaky.jpg"] = [503, 503]
    job = {"operationType": "resize", "srcURL": origin.serve("/photos/flaky.jpg", PHOTO),
           "dstURL": receiver.url("/put/flaky.jpg"), "method": "PUT", "args": {"width": 30}}
    doc = wait_done(server, post(server, job, KEY)[2]["id"], KEY)
    assert doc["status"] == "done" and doc["attempts"] == 3
    times = receiver.times["/put/flaky.jpg"]
    assert times[1] - times[0] >= 0.1 and times[2] - times[1] >= 0.2  # 0.2 s, then 0.4 s, +-50%
    receiver.script["/put/refused.jpg"] = [400]
    job["dstURL"] = receiver.url("/put/refused.jpg")
    doc = wait_done(server, post(server, job, KEY)[2]["id"], KEY)
    assert doc["status"] == "failed" and doc["attempts"] == 1 and doc["error"]["status_code"] == 502
    assert "400" in doc["error"]["error"]


def test_a_job_survives_kill_9_mid_run(tmp_path, origin, receiver):
    # The fetch that names the output (before the 202) is answered at once; the job's own
    # fetch hangs until its node is killed, and the next node's is answered at once.
    killed = threading.Event()
    src = serve_gated(origin, "/photos/slow.jpg", PHOTO, killed, free=1)
    flags = job_flags(tmp_path, receiver, "--job_lease_seconds=1")
    first = Proxy(*flags, log_path=tmp_path / "log1").start()
    job = {"operationType": "resize", "srcURL": src,
           "dstURL": f"file://{tmp_path / 'out'}/slow-{{$width}}.{{$ext}}", "args": {"width": 40, "height": 40}}
    second = None
    try:
        job_id = post(first, job, KEY)[2]["id"]
        deadline = time.monotonic() + 10
        while status(first, job_id, KEY).json["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(first.process.pid, signal.SIGKILL)  # mid-fetch: the lease is left behind
        first.process.wait(10)
        killed.set()
        assert not (tmp_path / "out" / "slow-40.jpg").exists()
        second = Proxy(*flags, log_path=tmp_path / "log2").start()
        doc = wait_done(second, job_id, KEY, timeout=30)
        assert doc["status"] == "done" and doc["attempts"] == 2
        assert decode((tmp_path / "out" / "slow-40.jpg").read_bytes()).size == (40, 40)
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["slow-40.jpg"]  # one object, no leftovers
    finally:
        killed.set()
        first.stop()
        if second is not None:
            second.stop()


def test_jobs_need_a_key(tmp_path):
    import subprocess
    import sys

    from support import ROOT
    r = subprocess.run([sys.executable, "-m", "imgproxy", "--jobs"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "job_key" in r.stderr


def test_job_routes_are_off_by_default(proxy):
    assert proxy.get(path="/jobs").status == 404


def test_placeholder_is_there_before_the_reply_and_replaced(server, origin, receiver):
    # The fetch that names the output (before the 202) is answered at once; the job's own
    # fetch waits until the placeholder has been looked at, so the result cannot beat it.
    checked = threading.Event()
    src = serve_gated(origin, "/photos/later.jpg", PHOTO, checked, free=1)
    job = {"operationType": "resize", "srcURL": src,
           "dstURL": receiver.url("/put/ph-{$width}x{$height}.{$ext}"), "method": "PUT",
           "args": {"width": 120, "height": 80, "placeholder": True}}
    try:
        code, _, body = post(server, job, KEY)
        assert code == 202
        data, content_type, _ = receiver.files["ph-120x80.jpg"]  # uploaded before the 202
    finally:
        checked.set()
    img = decode(data).convert("RGB")
    assert img.size == (120, 80) and content_type == "image/jpeg"
    assert all(abs(c - 224) <= 3 for c in img.getpixel((60, 40)))  # plain grey
    assert wait_done(server, body["id"], KEY)["status"] == "done"
    r, g, b = decode(receiver.files["ph-120x80.jpg"][0]).convert("RGB").getpixel((10, 10))
    assert r > 200 and g < 60 and b < 60  # the real picture (red top-left) replaced it


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" viewBox="0 0 200 100">'
       b'<rect width="100" height="100" fill="#f00"/><rect x="100" width="100" height="100" fill="#00f"/></svg>')


def test_rasterize_draws_an_svg_at_the_asked_size(server, origin, receiver):
    src = origin.serve("/art/logo.svg", SVG, content_type="image/svg+xml")
    job = {"operationType": "rasterize", "srcURL": src, "outputs": [
        {"args": {"width": 400}, "dstURL": receiver.url("/put/{$basename}-{$width}x{$height}.{$ext}"), "method": "PUT"},
        {"args": {"fmt": "webp"}, "dstURL": receiver.url("/put/{$basename}.{$ext}"), "method": "PUT"},
    ]}
    code, _, body = post(server, job, KEY)
    assert code == 202, body
    assert [o["dstURL"] for o in body["outputs"]] == [receiver.url("/put/logo-400x200.png"),
                                                      receiver.url("/put/logo.webp")]
    assert wait_done(server, body["id"], KEY)["status"] == "done"
    png = decode(receiver.files["logo-400x200.png"][0]).convert("RGB")
    assert png.size == (400, 200)
    assert png.getpixel((100, 100)) == (255, 0, 0) and png.getpixel((300, 100)) == (0, 0, 255)
    webp = decode(receiver.files["logo.webp"][0])
    assert webp.format == "WEBP" and webp.size == (200, 100)


def test_a_hostile_svg_fails_the_job_with_the_reason(server, origin, receiver):
    evil = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><image href="file:///etc/passwd"/></svg>'
    src = origin.serve("/art/evil.svg", evil, content_type="image/svg+xml")
    job = {"operationType": "rasterize", "srcURL": src, "dstURL": receiver.url("/put/evil.png"), "method": "PUT",
           "args": {"width": 10, "height": 10}}
    code, _, body = post(server, job, KEY)
    assert code == 202
    doc = wait_done(server, body["id"], KEY)
    assert doc["status"] == "failed" and doc["attempts"] == 1
    assert doc["error"]["status_code"] == 422 and "file:///etc/passwd" in doc["error"]["error"]
    assert "evil.png" not in receiver.files


def test_a_burst_of_jobs_leaves_a_worker_for_images(tmp_path, origin, receiver):
    """job_concurrency=1 of 2 workers: images are served while jobs still queue."""
    big = encode(quadrants((3000, 2000)), "PNG")
    origin.serve("/photos/heavy.png", big, content_type="image/png")
    p = Proxy(*job_flags(tmp_path, receiver, "--workers=2", "--job_concurrency=1"), log_path=tmp_path / "log").start()
    try:
        ids = [post(p, {"operationType": "resize", "srcURL": origin.url("/photos/heavy.png"),
                        "dstURL": f"file://{tmp_path / 'out'}/heavy-{n}.{{$ext}}",
                        "args": {"width": 2000 - n, "height": 1500, "fmt": "png"}}, KEY)[2]["id"] for n in range(8)]
        r = p.get(f"url={origin.serve('/photos/quick.jpg', PHOTO)}&w=40")
        assert r.status == 200
        pending = [status(p, i, KEY).json["status"] for i in ids]
        assert pending.count("done") < len(ids)  # the image did not wait for the burst
        assert all(wait_done(p, i, KEY, timeout=120)["status"] == "done" for i in ids)
    finally:
        p.stop()


def test_the_callback_gets_the_final_status_document(server, origin, receiver):
    """callbackURL: the job's status document is POSTed there when it ends."""
    import json as json_module
    origin.serve("/photos/called.jpg", PHOTO)
    job = {"operationType": "resize", "srcURL": origin.url("/photos/called.jpg"), "method": "PUT",
           "dstURL": receiver.url("/put/called.jpg"), "args": {"width": 30, "height": 30},
           "callbackURL": receiver.url("/hook")}
    job_id = post(server, job, KEY)[2]["id"]
    assert wait_done(server, job_id, KEY)["status"] == "done"
    deadline = time.monotonic() + 10
    while "/hook" not in receiver.bodies:
        assert time.monotonic() < deadline, "no callback"
        time.sleep(0.05)
    doc = json_module.loads(receiver.bodies["/hook"][-1])
    assert doc["id"] == job_id and doc["status"] == "done" and doc["result"]["width"] == 30


def test_a_ten_megabyte_body_is_answered_413_without_reading_it(server):
    import socket
    body_size = 10 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(body_size).encode() + b"\r\n\r\n" + b"{" * 1024)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413") and b'"error_code": 601' in reply
