"""What load balancers and operators rely on: HEAD, /health's state, start-up checks, the log."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import quote

from support import ROOT, Proxy, encode, free_port, quadrants

JPEG = encode(quadrants(), "JPEG")


def head(proxy, target: str, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)
    try:
        conn.request("HEAD", target, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def test_head_answers_like_get_without_a_body(proxy, origin):
    query = f"url={quote(origin.serve('/head.jpg', JPEG), safe='')}&w=40"
    got = proxy.get(query)
    status, headers, body = head(proxy, f"/?{query}")
    assert status == 200 and body == b""
    assert headers["Content-Type"] == "image/jpeg" and headers["ETag"] == got.headers["ETag"]
    assert int(headers["Content-Length"]) == len(got.body)
    status, headers, body = head(proxy, "/health")
    assert status == 200 and body == b"" and headers["Content-Type"] == "application/json"
    assert head(proxy, f"/?{query}", {"If-None-Match": got.headers["ETag"]})[0] == 304
    assert head(proxy, "/nowhere")[0] == 404


def test_health_never_answers_304(proxy):
    first = proxy.get(path="/health")
    assert "ETag" not in first.headers
    again = proxy.get(path="/health", headers={"If-None-Match": "*"})
    assert again.status == 200 and again.json["status"] == "ok"


def test_docker_healthcheck_command_works(proxy, start_proxy):
    """The Dockerfile's HEALTHCHECK, run as the image would (Python only, no curl)."""
    text = (ROOT / "Dockerfile").read_text()
    command = json.loads(re.search(r"HEALTHCHECK .*?CMD (\[[^\n]*\])\n", text, re.S).group(1))
    command = [sys.executable if c == "python" else c.replace(":8888/", f":{proxy.port}/") for c in command]
    assert subprocess.run(command, capture_output=True, timeout=30).returncode == 0
    stopped = start_proxy("--workers=1", "--process_timeout=5")
    port = stopped.port
    stopped.stop()
    command = [c.replace(f":{proxy.port}/", f":{port}/") for c in command]
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0


def test_memory_limit_below_an_idle_worker_is_refused_at_start(tmp_path):
    r = subprocess.run([sys.executable, "-m", "imgproxy", f"--port={free_port()}", "--workers=1",
                        f"--worker_memory_limit={64 << 20}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("imgproxy: worker_memory_limit=") and "at least" in lines[-1]
    assert "Traceback" not in r.stderr


def test_health_reports_a_pool_whose_tasks_keep_failing(start_proxy, origin):
    """Workers that run out of memory on every image: /health must not say ok."""
    big = encode(quadrants((4000, 4000)), "PNG")
    url = quote(origin.serve("/hungry.png", big, content_type="image/png"), safe="")
    # 432 MB of output pixels alone: more than a 700 MiB worker has left, whatever OpenCV maps.
    p = start_proxy("--workers=1", f"--worker_memory_limit={700 << 20}", "--max_output_pixels=144000000")
    assert p.get(path="/health").json["status"] == "ok"
    statuses = {p.get(f"url={url}&w=12000&h=12000&mode=scale&fmt=png").status for _ in range(3)}
    assert statuses == {502}
    r = p.get(path="/health")
    assert r.status == 503 and r.json["status"] == "failing"
    small = quote(origin.serve("/small.jpg", JPEG), safe="")
    assert p.get(f"url={small}&w=10").status == 200
    assert p.get(path="/health").json["status"] == "ok"


def test_a_burst_right_after_start_is_served(origin, tmp_path):
    url = quote(origin.serve("/burst.jpg", encode(quadrants((1600, 1200)), "JPEG")), safe="")
    p = Proxy("--workers=2", "--allowed_hosts=127.0.0.1", log_path=tmp_path / "log").start()
    try:
        statuses = []
        threads = [threading.Thread(target=lambda i=i: statuses.append(p.get(f"url={url}&w={50 + i}").status))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 8
    finally:
        p.stop()


def test_error_replies_leave_no_warning_in_the_log(tmp_path):
    p = Proxy("--workers=1", "--allowed_hosts=127.0.0.1", log_path=tmp_path / "log").start()
    try:
        assert p.get("url=http://127.0.0.1:1/x.jpg&w=10").status == 502
        assert p.get("w=10").status == 400
        assert p.get(path="/health").status == 200
    finally:
        p.stop()
    log = p.log()
    assert "listening on http://127.0.0.1:" in log
    assert "RuntimeWarning" not in log and "never awaited" not in log


def test_an_ipv6_listen_address_is_logged_in_brackets(tmp_path):
    port = free_port()
    log = tmp_path / "log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "imgproxy", f"--port={port}", "--address=::1",
                                    "--workers=1"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "listening" not in log.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.05)
        assert f"listening on http://[::1]:{port} " in log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)


def test_info_requests_are_counted_in_metrics(proxy, origin):
    from prometheus_client.parser import text_string_to_metric_families

    def info_counts() -> dict[str, float]:
        counts = {"200": 0.0, "400": 0.0}
        for family in text_string_to_metric_families(proxy.get(path="/metrics").body.decode()):
            for sample in family.samples:
                if sample.name == "imgproxy_requests_total" and sample.labels["op"] == "info":
                    counts[sample.labels["status"]] = sample.value
        return counts

    before = info_counts()  # the shared proxy: other tests may have asked it for /info
    url = quote(origin.serve("/counted.jpg", JPEG), safe="")
    assert proxy.get(f"url={url}", path="/info").status == 200
    assert proxy.get("url=", path="/info").status == 400
    after = info_counts()
    assert after["200"] == before["200"] + 1 and after["400"] == before["400"] + 1
