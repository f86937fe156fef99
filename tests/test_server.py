"""End to end: the real server against a real local origin."""

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import ROOT, assert_error, encode, free_port, q, quadrants

from imgproxy.signature import sign


@pytest.fixture(scope="module")
def photo(origin):
    data = encode(quadrants(), "JPEG", quality=90)
    return data, origin.serve("/photo.jpg", data, headers={
        "Cache-Control": "public, max-age=3600",
        "Expires": "Thu, 01 Dec 2044 16:00:00 GMT",
        "Last-Modified": "Wed, 21 Oct 2015 07:28:00 GMT",
        "X-Secret": "origin-internal",
    })


@pytest.fixture(scope="module")
def other_port():
    return free_port()  # nothing listens there: not the origin's


@pytest.fixture(scope="module", autouse=True)
def _proxies_side_by_side(shared_proxy, origin, other_port):
    shared_proxy.warm(SLOW_FETCHES, SIGNED, implicit_base(origin), allowed_port(other_port))


SLOW_FETCHES = ("--timeout=0.5",)
SIGNED = ("--client_key=abcdef", "--client_name=web")


def implicit_base(origin):
    """The implicit base URL and only the origin's port allowed, in one proxy: the
    implicit base test fetches from that port, the allowed port test from nowhere else."""
    return (f"--implicit_base_url=http://127.0.0.1:{origin.port}/", *allowed_port(origin.port))


def allowed_port(port):
    return (f"--allowed_hosts=127.0.0.1:{port}",)


def test_noop_returns_the_source_bytes_unchanged(proxy, origin, photo):
    data, _ = photo
    url = origin.serve("/octet.jpg", data, content_type="application/octet-stream")
    r = proxy.get(q(url, op="noop"))
    assert r.status == 200 and r.body == data
    assert r.headers["Content-Type"] == "image/jpeg"  # names the bytes, not the origin's label


def test_resize_answers_the_decoded_size(proxy, photo):
    r = proxy.get(q(photo[1], w=320, h=200))
    img = r.image
    assert (img.format, img.size, img.mode) == ("JPEG", (320, 200), "RGB")
    assert r.headers["Content-Type"] == "image/jpeg"
    assert int(r.headers["Content-Length"]) == len(r.body)


def test_origin_caching_headers_pass_through_and_nothing_else(proxy, photo):
    r = proxy.get(q(photo[1], w=50))
    assert r.headers["Cache-Control"] == "public, max-age=3600"
    assert r.headers["Expires"] == "Thu, 01 Dec 2044 16:00:00 GMT"
    assert r.headers["Last-Modified"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert "X-Secret" not in r.headers


def test_every_reply_carries_safety_headers(proxy, photo):
    for r in (proxy.get(q(photo[1], w=50)), proxy.get("w=abc"), proxy.get(path="/nope")):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Content-Security-Policy"] == "default-src 'none'"


def test_unknown_parameters_are_ignored(proxy, photo):
    assert proxy.get(q(photo[1], w=40, utm_source="x", cb=123)).image.size[0] == 40


@pytest.mark.parametrize("params, status, code", [
    ({"w": "0"}, 400, 2),
    ({"w": "-3"}, 400, 2),
    ({"h": "abc"}, 400, 2),
    ({}, 400, 2),
    ({"w": "10", "mode": "zoom"}, 400, 5),
    ({"w": "10", "bg": "nothex"}, 400, 1),
    ({"op": "explode"}, 400, 10),
    ({"op": "rotate", "deg": "400"}, 400, 9),
    ({"op": "region", "rect": "0,0,1"}, 400, 11),
    ({"w": "10", "q": "200"}, 400, 7),
])
def test_bad_parameters_are_json_400s(proxy, photo, params, status, code):
    assert_error(proxy.get(q(photo[1], **params)), status, code)


def test_bad_url(proxy):
    assert_error(proxy.get("w=10"), 400, 8)
    assert_error(proxy.get(q("ftp://127.0.0.1/a.jpg", w=10)), 400, 8)


def test_host_not_allowed(proxy):
    assert_error(proxy.get(q("http://example.invalid/a.jpg", w=10)), 403, 103)


def test_not_an_image_is_415(proxy, origin):
    url = origin.serve("/page.jpg", b"<html><body>hello</body></html>", content_type="image/jpeg")
    r = proxy.get(q(url, w=10))
    assert_error(r, 415, 201)
    assert b"hello" not in r.body  # the origin's body is never echoed
    assert_error(proxy.get(q(url, op="noop")), 415, 201)


@pytest.mark.parametrize("origin_status, status", [(404, 404), (410, 404), (500, 502), (403, 502)])
def test_origin_errors(proxy, origin, origin_status, status):
    url = origin.serve(f"/status-{origin_status}.jpg", b"nope", status=origin_status)
    assert_error(proxy.get(q(url, w=10)), status, 301)


def test_unreachable_origin_is_502(proxy):
    assert_error(proxy.get(q(f"http://127.0.0.1:{free_port()}/a.jpg", w=10)), 502, 301)


def test_slow_origin_is_504(shared_proxy, origin, photo):
    slow = shared_proxy(*SLOW_FETCHES)
    url = origin.serve("/slow.jpg", photo[0], delay=2.0)
    assert_error(slow.get(q(url, w=10)), 504, 301)


def test_unknown_path_is_json_404(proxy):
    assert_error(proxy.get(path="/nope"), 404, 0)


def test_signature_client_and_order(shared_proxy, photo):
    signed = shared_proxy(*SIGNED)
    query = q(photo[1], w=30, client="web")
    assert signed.get(sign("abcdef", query)).image.size[0] == 30
    assert_error(signed.get(query), 403, 101)  # unsigned
    assert_error(signed.get(sign("abcdef", query).replace("w=30", "w=31")), 403, 101)  # tampered
    assert_error(signed.get(sign("abcdef", q(photo[1], w=30, client="app"))), 403, 102)
    assert_error(signed.get(sign("abcdef", q("http://example.invalid/a.jpg", w=30, client="web"))), 403, 103)
    # op and url are checked before the signature, w/h after it (Pilbox's order)
    assert_error(signed.get("op=bogus"), 400, 10)
    assert_error(signed.get(q(photo[1], w="abc")), 403, 101)
    # unknown parameters are signed too
    assert_error(signed.get(sign("abcdef", query) .replace("client=web", "client=web&extra=1")), 403, 101)


def test_allowed_host_with_port(shared_proxy, origin, photo, other_port):
    p = shared_proxy(*implicit_base(origin))  # allows exactly the origin's port
    assert p.get(q(photo[1], w=20)).image.size[0] == 20
    other = shared_proxy(*allowed_port(other_port))
    assert_error(other.get(q(photo[1], w=20)), 403, 103)


def test_implicit_base_url(shared_proxy, origin, photo):
    p = shared_proxy(*implicit_base(origin))
    assert p.get("url=/photo.jpg&w=25").image.size[0] == 25


def test_user_agent_is_ours_and_client_headers_are_not_forwarded(proxy, origin, photo):
    url = origin.serve("/ua.jpg", photo[0])
    origin.requests.clear()
    proxy.get(q(url, w=10), headers={"Cookie": "session=secret", "Authorization": "Bearer x",
                                     "X-Forwarded-For": "1.2.3.4"})
    sent = origin.requests[-1]
    assert sent["User-Agent"].startswith("imgproxy/")
    assert not {"Cookie", "Authorization", "X-Forwarded-For"} & set(sent)


def test_one_log_line_per_request(proxy, photo):
    proxy.get(q(photo[1], w=11, marker="logline"))
    for _ in range(100):  # the line is written just after the reply is sent
        log = proxy.log()
        line = [entry for entry in log.splitlines() if "marker=logline" in entry]
        if line:
            break
        time.sleep(0.02)
    assert len(line) == 1 and re.search(r"GET \S+ 200 [0-9.]+ms [0-9]+B", line[0]), log[-500:]


def test_console_scripts_are_installed():
    for script in ("imgproxy", "imgproxy-sign", "imgproxy-resize"):
        path = shutil.which(script, path=str(Path(sys.executable).parent))
        assert path, f"{script} is not installed beside {sys.executable}"
        r = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "usage" in (r.stdout + r.stderr).lower(), script


def test_python_m_imgproxy_help():
    r = subprocess.run([sys.executable, "-m", "imgproxy", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "--allowed_hosts" in r.stdout
