"""The README's NGINX config, run for real in front of imgproxy on loopback.

Both blocks are read out of README.rst (each starts with a ``# imgproxy: ...``
marker line), so the documentation and what is tested cannot drift apart. Only
the addresses and the cache directory are replaced. NGINX is required: .ci/run
installs Debian's nginx-light, and a missing binary fails the test.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from support import (
    Nginx,
    Response,
    decode,
    encode,
    free_port,
    nginx_binary,
    quadrants,
    readme_block,
    replace_once,
    start_nginx,
    wait_for,
)

JPEG = encode(quadrants((240, 160)), "JPEG")

# Accept headers and the class NGINX's maps must put them in. The browser ones
# are what current Chrome, Firefox, Safari and an older WebP-only Chrome send.
ACCEPTS = {
    "avif": [
        "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
        "image/avif,image/webp,*/*",
        "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,"
        "image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
        "image/avif;q=0.5, image/webp;q=0",
    ],
    "webp": [
        "image/webp,image/apng,image/*,*/*;q=0.8",
        "image/avif;q=0, image/webp",
        "IMAGE/WEBP;Q=0.9",
    ],
    "other": [
        "*/*",
        "image/png,image/*;q=0.8,*/*;q=0.5",
        None,  # no Accept header at all
        "image/avif;q=0.0,image/webp; q=0",
        "image/avifx,image/webp2",
    ],
}
CONTENT_TYPES = {"avif": "image/avif", "webp": "image/webp", "other": "image/jpeg"}
PILLOW_FORMATS = {"avif": "AVIF", "webp": "WEBP", "other": "JPEG"}


# --- the config, from the README, and NGINX in front of imgproxy ------------------------

def nginx_http(tmp: Path, port: int, upstream_port: int) -> str:
    http_block = replace_once(readme_block("# imgproxy: http block"),
                              "/var/cache/nginx/images", str(tmp / "cache"))
    server_block = readme_block("# imgproxy: server block")
    server_block = replace_once(server_block, "server 127.0.0.1:8888;", f"server 127.0.0.1:{upstream_port};")
    server_block = replace_once(server_block, "listen 80;", f"listen 127.0.0.1:{port};")
    return f"{http_block}\n{server_block}"


@pytest.fixture(scope="module")
def start_front(start_proxy, tmp_path_factory):
    """Start imgproxy with `flags` and the README's NGINX in front of it."""
    nginx_binary()  # no NGINX is a failure, not a skip
    fronts: list[Nginx] = []

    def start(*flags: str) -> Nginx:
        proxy = start_proxy(*flags)
        tmp = tmp_path_factory.mktemp("nginx")
        port = free_port()
        front = start_nginx(tmp, nginx_http(tmp, port, proxy.port), port, [proxy])
        fronts.append(front)
        return front

    yield start
    for front in fronts:
        front.stop()


@pytest.fixture(scope="module")
def front(start_front):
    """Long-lived successes; errors keep imgproxy's default max-age=60."""
    return start_front("--cache_control=public, max-age=3600")


@pytest.fixture(scope="module")
def short_front(start_front):
    """Everything expires after a second, to watch NGINX revalidate and refetch."""
    return start_front("--cache_control=public, max-age=1", "--error_cache_control=public, max-age=1")


def image_query(origin, path: str, body: bytes = JPEG, etag: str | None = None, extra: str = "") -> str:
    url = origin.serve(path, body, headers={"ETag": etag} if etag else None)
    return f"url={quote(url, safe='')}&w=60&h=60&fmt=auto{extra}"


def cache_status(r: Response) -> str | None:
    return r.headers.get("X-Cache-Status")


def sleep_past_expiry(received_at: float, max_age: int) -> None:
    """Sleep until NGINX (whole-second clock) treats an entry stored by then as expired."""
    time.sleep(max(0.0, int(received_at) + max_age + 1.05 - time.time()))


# --- one cache entry per negotiated format ---------------------------------------------

def test_one_entry_per_negotiated_format(front, origin):
    path = "/nginx/classes.jpg"
    query = image_query(origin, path, etag='"classes-v1"')
    bodies = {}
    for cls, accepts in ACCEPTS.items():
        for n, accept in enumerate(accepts):
            r = front.get(query, accept=accept)
            assert r.status == 200, (cls, accept, r.status, r.body[:200])
            # the first header of a class fills the entry, every other one shares it
            assert cache_status(r) == ("MISS" if n == 0 else "HIT"), (cls, accept, cache_status(r))
            assert r.headers["Content-Type"] == CONTENT_TYPES[cls], (cls, accept)
            assert r.headers["Vary"] == "Accept"  # still there for CDNs and browsers
            assert decode(r.body).format == PILLOW_FORMATS[cls]
            assert decode(r.body).size == (60, 60)
            if n == 0:
                bodies[cls] = r.body
            assert r.body == bodies[cls]
    # one render, and so one fetch, per class; nothing per distinct header
    assert origin.hits[path] == 3
    assert len(set(bodies.values())) == 3


def test_maps_agree_with_imgproxy_for_browser_headers(front, origin):
    """Asked directly, imgproxy picks the same format for the headers browsers send."""
    query = image_query(origin, "/nginx/agree.jpg")
    for cls, accepts in ACCEPTS.items():
        for accept in accepts:
            direct = front.proxy.get(query, headers={"Accept": accept} if accept is not None else {})
            assert direct.status == 200
            assert direct.headers["Content-Type"] == CONTENT_TYPES[cls], (cls, accept)


def test_imgproxy_is_sent_the_class_not_the_header(front, origin):
    """What NGINX caches under a class is that class's format, however imgproxy reads the header.

    An unparsable q, and q-values ranking WebP first, are beyond what the maps
    read (both count as AVIF); imgproxy, asked directly, reads at least one of
    them otherwise. Through NGINX it only ever sees the class's own Accept.
    """
    query = image_query(origin, "/nginx/odd-q.jpg")
    odd = ["image/avif;q=x", "image/webp,image/avif;q=0.5"]
    direct = [front.proxy.get(query, headers={"Accept": a}).headers["Content-Type"] for a in odd]
    assert direct != ["image/avif"] * len(odd), "imgproxy reads these like the maps: pick other headers"
    for n, accept in enumerate([*odd, "image/avif,image/webp,*/*"]):
        r = front.get(query, accept=accept)
        assert (r.status, cache_status(r)) == (200, "MISS" if n == 0 else "HIT"), accept
        assert r.headers["Content-Type"] == "image/avif"
        assert decode(r.body).format == "AVIF"


def test_cache_hit_answers_conditional_requests(front, origin):
    query = image_query(origin, "/nginx/conditional.jpg")
    first = front.get(query, accept="image/webp,*/*")
    etag = first.headers["ETag"]
    r = front.get(query, accept="image/webp,*/*", headers={"If-None-Match": etag})
    assert (r.status, cache_status(r), r.body) == (304, "HIT", b"")
    assert r.headers["ETag"] == etag


# --- errors ------------------------------------------------------------------------------

def test_errors_are_cached_for_their_max_age(front, origin):
    missing = f"url={quote(origin.url('/nginx/missing.jpg'), safe='')}&w=60&fmt=auto"
    bad = f"url={quote(origin.url('/nginx/never-fetched.jpg'), safe='')}&w=abc"
    for query, status in ((missing, 404), (bad, 400)):
        first, second = front.get(query), front.get(query)
        assert (first.status, cache_status(first)) == (status, "MISS")
        assert (second.status, cache_status(second)) == (status, "HIT")
        assert second.headers["Cache-Control"] == "public, max-age=60"
        assert json.loads(second.body) == json.loads(first.body)
        assert json.loads(second.body)["status_code"] == status
    assert origin.hits["/nginx/missing.jpg"] == 1
    assert "/nginx/never-fetched.jpg" not in origin.hits


# --- expiry: revalidation of images, refetch of errors --------------------------------------

def test_expired_entries_revalidate_and_errors_expire(short_front, origin):
    image = image_query(origin, "/nginx/revalidate.jpg", etag='"reval-v1"')
    missing = f"url={quote(origin.url('/nginx/gone.jpg'), safe='')}&w=60"
    first = short_front.get(image, accept="image/avif,image/webp,*/*")
    error = short_front.get(missing)
    received = time.time()
    assert (first.status, cache_status(first)) == (200, "MISS")
    assert (error.status, cache_status(error)) == (404, "MISS")
    assert error.headers["Cache-Control"] == "public, max-age=1"

    sleep_past_expiry(received, 1)

    # NGINX asks imgproxy with If-None-Match and keeps its copy on the 304
    again = short_front.get(image, accept="image/avif,*/*")
    assert (again.status, cache_status(again)) == (200, "REVALIDATED")
    assert again.body == first.body and again.headers["ETag"] == first.headers["ETag"]
    # (imgproxy writes its access line just after the reply has gone out: wait for it)
    assert wait_for(lambda: re.search(r"GET /\?url=\S*revalidate\.jpg\S* 304 ", short_front.proxy.log()), 5.0)
    # an error has no validator: it is fetched again, not kept past its max-age
    error = short_front.get(missing)
    assert (error.status, cache_status(error)) == (404, "EXPIRED")
    assert origin.hits["/nginx/gone.jpg"] == 2


# --- the other endpoints --------------------------------------------------------------------

def test_info_and_health_are_proxied_and_metrics_kept_private(front, origin):
    url = origin.serve("/nginx/info.jpg", JPEG)
    info = front.get(f"url={quote(url, safe='')}", path="/info")
    assert info.status == 200, info.body[:200]
    assert info.json["url"] == url
    assert (info.json["width"], info.json["height"]) == (240, 160)
    assert cache_status(info) is None  # not cached

    health = front.get(path="/health")
    assert health.status == 200 and health.json["status"] == "ok"
    assert cache_status(health) is None

    # /metrics answers the 10.0.0.0/8 network only; this test talks from 127.0.0.1
    assert front.get(path="/metrics").status == 403
