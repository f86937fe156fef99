"""The README's "Try it" works as written on a machine with no network, and a refused
loopback origin says which option allows it."""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote

from support import ROOT, decode, free_port


def try_it_lines() -> list[str]:
    text = (ROOT / "README.rst").read_text()
    block = re.search(r"\nTry it,.*?::\n\n(.*?)\n\n\S", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def wait_for_port(port: int, processes: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for p in processes:
            assert p.poll() is None, f"{p.args} exited with {p.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_try_it_works_offline(tmp_path):
    lines = try_it_lines()
    assert len(lines) == 4 and lines[1].endswith("&") and lines[2].endswith("&")
    origin_port, proxy_port = free_port(), free_port()
    python = str((ROOT / ".venv" / "bin" / "python"))
    python = python if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable

    def adapt(line: str) -> str:
        line = line.replace("/tmp/imgs", str(tmp_path / "imgs")).replace("8000", str(origin_port))
        line = line.replace("8888", str(proxy_port)).replace(".venv/bin/python", python)
        return line.replace(".venv/bin/imgproxy", f"{python} -m imgproxy --port={proxy_port}")

    subprocess.run(adapt(lines[0]), shell=True, check=True, cwd=tmp_path, timeout=60)
    started = []
    try:
        for line in lines[1:3]:
            started.append(subprocess.Popen(shlex.split(adapt(line).rstrip("& ")), cwd=ROOT,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_port(origin_port, started)
        wait_for_port(proxy_port, started)
        subprocess.run(adapt(lines[3]), shell=True, check=True, cwd=tmp_path, timeout=60)
        img = decode((tmp_path / "out.jpg").read_bytes())
        assert img.format == "JPEG" and img.size == (300, 300)
    finally:
        for p in started:
            p.send_signal(signal.SIGTERM)
        for p in started:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_refused_loopback_origin_names_the_option(shared_proxy, origin):
    p = shared_proxy("--allowed_hosts=")  # no allowed hosts: loopback is internal (test_hostile's OPEN)
    url = origin.serve("/internal.jpg", b"whatever")
    r = p.get(f"url={quote(url, safe='')}&w=10")
    assert r.status == 403 and r.json["error_code"] == 103
    assert "allowed_hosts" in r.json["error"] and f"127.0.0.1:{origin.port}" in r.json["error"]
