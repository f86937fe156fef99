"""Delivery end to end: health, metrics, info, HTTP caching, format negotiation, result cache."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from support import Origin, decode, encode, free_port, q, quadrants, start_redis, stop_redis, wait_for, workers_of

from imgproxy.signature import sign

JPEG = encode(quadrants(), "JPEG")


def metrics(proxy) -> dict:
    r = proxy.get(path="/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- operations endpoints ------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def _proxies_side_by_side(shared_proxy):
    shared_proxy.warm((), BUSY_ALLOWED, SIGNED, CUSTOM_CACHE_CONTROL)


# One worker that may stay busy; the same flags as test_pool's SHORT_QUEUE, so that one
# proxy serves both (the queue's length does not matter here).
BUSY_ALLOWED = ("--workers=1", "--max_queue=1", "--process_timeout=60")
SIGNED = ("--client_key=k1",)
# One proxy for both: the cache-control test asks without Accept (so gets JPEG, as
# without format=auto), the format test does not look at Cache-Control.
CUSTOM_CACHE_CONTROL = ("--cache_control=public, max-age=31536000, immutable", "--error_cache_control=no-store",
                        "--format=auto")
AUTO_FORMAT = CUSTOM_CACHE_CONTROL


def test_health(proxy):
    r = proxy.get(path="/health")
    body = r.json
    assert r.status == 200 and body["status"] == "ok"
    assert body["workers"]["alive"] == body["workers"]["total"] == 1
    assert body["queue"] == 0 and body["version"]
    assert set(body["libraries"]) == {"pillow", "libjpeg", "libwebp", "libavif"}
    assert body["libraries"]["pillow"]


def test_health_answers_while_every_worker_is_busy(shared_proxy, origin):
    p = shared_proxy(*BUSY_ALLOWED)
    noise = encode(Image.effect_noise((1500, 1500), 64).convert("RGB"), "PNG")
    url = origin.serve("/busy.png", noise, content_type="image/png")
    with ThreadPoolExecutor(2) as ex:
        busy = ex.submit(p.get, q(url, "w=5000&h=5000&mode=scale&fmt=jpeg&q=50"))
        assert wait_for(lambda: p.get(path="/health").json["workers"]["busy"] == 1)
        started = time.monotonic()
        r = p.get(path="/health")
        assert r.status == 200 and r.json["workers"]["busy"] == 1
        assert time.monotonic() - started < 1.0
        assert busy.result().status == 200


def test_metrics_count_requests_stages_bytes_and_restarts(start_proxy, origin):
    p = start_proxy("--workers=1")
    url = origin.serve("/m.jpg", JPEG)
    assert p.get(q(url, "w=40")).status == 200
    assert p.get(q(url, "w=abc")).status == 400
    m = metrics(p)
    assert sample(m, "imgproxy_requests_total", status="200", op="resize") == 1
    assert sample(m, "imgproxy_requests_total", status="400", op="resize") == 1
    # the op label only ever holds validated operation names, as a set
    assert p.get(q(url, "op=rotate,resize,rotate&deg=90&w=10")).status == 200
    assert p.get(q(url, "op=made-up-by-a-stranger")).status == 400
    m = metrics(p)
    assert sample(m, "imgproxy_requests_total", status="200", op="resize,rotate") == 1
    assert sample(m, "imgproxy_requests_total", status="400", op="-") == 1
    assert not [k for k in m if dict(k[1]).get("op", "").startswith("made-up")]
    for stage in ("fetch", "queue", "process", "total"):
        assert sample(m, "imgproxy_request_seconds_count", stage=stage) >= 1, stage
    assert sample(m, "imgproxy_fetched_bytes_total") == 2 * len(JPEG)  # two fetches; the bad op never fetched
    assert sample(m, "imgproxy_sent_bytes_total") > 0
    assert sample(m, "imgproxy_pool_workers", state="total") == 1
    assert sample(m, "imgproxy_pool_queue_length") == 0
    assert sample(m, "imgproxy_worker_restarts_total") == 0
    # a worker killed from outside shows up as a restart
    os.kill(workers_of(p)[0], signal.SIGKILL)
    assert wait_for(lambda: sample(metrics(p), "imgproxy_worker_restarts_total") == 1, 3.0)


def test_info(proxy, origin):
    src = Image.open(io_bytes(JPEG))
    exif = Image.Exif()
    exif[0x0112] = 6
    jpeg = encode(src, "JPEG", exif=exif.tobytes(), icc_profile=b"\0" * 128)
    url = origin.serve("/info.jpg", jpeg)
    r = proxy.get(f"url={quote(url, safe='')}", path="/info")
    assert r.status == 200
    assert r.json == {"url": url, "format": "JPEG", "width": 640, "height": 428, "mode": "RGB",
                      "frames": 1, "alpha": False, "exif_orientation": 6, "icc_profile": True,
                      "bytes": len(jpeg)}
    png = origin.serve("/info.png", encode(quadrants((30, 20), "RGBA"), "PNG"), content_type="image/png")
    body = proxy.get(f"url={quote(png, safe='')}", path="/info").json
    assert (body["format"], body["alpha"], body["frames"], body["exif_orientation"]) == ("PNG", True, 1, 0)
    r = proxy.get(f"url={quote(origin.serve('/info.txt', b'hello'), safe='')}", path="/info")
    assert r.status == 415 and r.json["error_code"] == 201


def test_info_follows_signing_and_host_rules(shared_proxy, origin):
    p = shared_proxy(*SIGNED)
    query = f"url={quote(origin.serve('/signed-info.jpg', JPEG), safe='')}"
    assert p.get(query, path="/info").status == 403
    assert p.get(sign("k1", query), path="/info").json["width"] == 640
    other = f"url={quote('http://example.invalid/a.jpg', safe='')}"
    r = p.get(sign("k1", other), path="/info")
    assert r.status == 403 and r.json["error_code"] == 103


def io_bytes(data: bytes):
    import io
    return io.BytesIO(data)


# --- HTTP caching --------------------------------------------------------------------

def test_strong_etag_independent_of_parameter_order(proxy, origin):
    url = quote(origin.serve("/etag.jpg", JPEG), safe="")
    a = proxy.get(f"url={url}&w=40&h=30&mode=crop")
    b = proxy.get(f"mode=crop&h=30&url={url}&w=40")
    c = proxy.get(f"url={url}&w=41&h=30&mode=crop")
    assert a.headers["ETag"] == b.headers["ETag"] != c.headers["ETag"]
    assert a.headers["ETag"].startswith('"') and not a.headers["ETag"].startswith("W/")
    r = proxy.get(f"url={url}&w=40&h=30", headers={"If-None-Match": a.headers["ETag"]})
    assert r.status == 304 and r.body == b"" and r.headers["ETag"] == a.headers["ETag"]
    assert proxy.get(f"url={url}&w=40&h=30", headers={"If-None-Match": '"other"'}).status == 200


def test_etag_changes_with_the_source(proxy, origin):
    first = proxy.get(q(origin.serve("/changing.jpg", JPEG), "w=40"))
    second = proxy.get(q(origin.serve("/changing.jpg", encode(quadrants(), "JPEG", quality=50)), "w=40"))
    assert first.headers["ETag"] != second.headers["ETag"]


def test_origin_304_is_our_304_without_decoding(proxy, origin):
    p = proxy  # its process count is compared before and after, not from zero
    state = {"conditional": 0}

    def versioned(h):
        if h.headers.get("If-None-Match") == '"v1"':
            state["conditional"] += 1
            h.send_response(304)
            h.send_header("ETag", '"v1"')
            h.end_headers()
            return
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("ETag", '"v1"')
        h.send_header("Content-Length", str(len(JPEG)))
        h.end_headers()
        h.wfile.write(JPEG)

    origin.routes["/versioned.jpg"] = versioned
    first = p.get(q(origin.url("/versioned.jpg"), "w=40"))
    assert first.status == 200
    processed = sample(metrics(p), "imgproxy_request_seconds_count", stage="process")
    again = p.get(q(origin.url("/versioned.jpg"), "w=40"), headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and again.headers["ETag"] == first.headers["ETag"]
    assert state["conditional"] == 1
    assert sample(metrics(p), "imgproxy_request_seconds_count", stage="process") == processed


def test_cache_control_policy(proxy, shared_proxy, origin):
    url = origin.serve("/cc.jpg", JPEG, headers={"Cache-Control": "public, max-age=3600"})
    default = proxy
    assert default.get(q(url, "w=40")).headers["Cache-Control"] == "public, max-age=3600"
    bad = default.get(q(url, "w=abc"))
    assert bad.status == 400 and bad.headers["Cache-Control"] == "public, max-age=60"
    missing = default.get(q(origin.url("/missing.jpg"), "w=40"))
    assert missing.status == 404 and missing.headers["Cache-Control"] == "public, max-age=60"
    custom = shared_proxy(*CUSTOM_CACHE_CONTROL)
    assert custom.get(q(url, "w=40")).headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert custom.get(q(url, "w=abc")).headers["Cache-Control"] == "no-store"


# --- format negotiation ----------------------------------------------------------------

@pytest.mark.parametrize("accept, fmt", [
    ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "AVIF"),
    ("image/webp,*/*", "WEBP"),
    ("image/avif;q=0,image/webp", "WEBP"),
    ("image/png,image/*;q=0.8,*/*;q=0.5", "JPEG"),
    (None, "JPEG"),
])
def test_fmt_auto_follows_accept_and_always_varies(proxy, origin, accept, fmt):
    url = origin.serve("/auto.jpg", JPEG)
    r = proxy.get(q(url, "w=64&h=48&fmt=auto"), headers={"Accept": accept} if accept else {})
    img = r.image
    assert (img.format, img.size) == (fmt, (64, 48))
    assert r.headers["Content-Type"] == Image.MIME[fmt]
    assert r.headers["Vary"] == "Accept"  # fallbacks included
    px = img.convert("RGB").getpixel((5, 5))
    assert px[0] > 200 and px[1] < 60 and px[2] < 60  # the red quadrant survived the codec


def test_fmt_auto_keeps_alpha_for_old_browsers(proxy, origin):
    src = quadrants((64, 64), "RGBA")
    src.putpixel((0, 0), (0, 0, 0, 0))
    url = origin.serve("/alpha.webp", encode(src, "WEBP", lossless=True), content_type="image/webp")
    img = proxy.get(q(url, "op=noop&fmt=auto".replace("op=noop&", "w=64&")), headers={"Accept": "*/*"}).image
    assert img.format == "PNG" and img.mode == "RGBA" and img.getpixel((0, 0))[3] == 0
    assert proxy.get(q(url, "w=64&fmt=auto"), headers={"Accept": "image/webp"}).image.format == "WEBP"


def test_errors_of_negotiated_requests_vary_too(proxy, origin):
    r = proxy.get(q(origin.url("/nothing-here.jpg"), "w=10&fmt=auto"), headers={"Accept": "image/webp"})
    assert r.status == 404 and r.headers["Vary"] == "Accept"


def test_format_auto_as_server_default(shared_proxy, origin):
    p = shared_proxy(*AUTO_FORMAT)
    r = p.get(q(origin.serve("/default-auto.jpg", JPEG), "w=40"), headers={"Accept": "image/webp"})
    assert r.image.format == "WEBP" and r.headers["Vary"] == "Accept"


def test_avif_and_webp_sources_decode(proxy, origin):
    for fmt in ("AVIF", "WEBP"):
        url = origin.serve(f"/src.{fmt.lower()}", encode(quadrants(), fmt), content_type=f"image/{fmt.lower()}")
        img = proxy.get(q(url, "w=64&h=48&fmt=png")).image
        assert img.size == (64, 48) and img.getpixel((60, 44))[:2] == pytest.approx((255, 255), abs=40)


# --- the result cache ------------------------------------------------------------------

@pytest.fixture
def own_origin():
    o = Origin().start()
    yield o
    o.stop()


@pytest.fixture(scope="module")
def file_cached(shared_proxy, tmp_path_factory):
    """One proxy with a file cache for the tests below that can share it (their own URLs)."""
    cache = tmp_path_factory.mktemp("file-cache")
    return shared_proxy(f"--cache_dir={cache}"), cache


def cache_counts(p) -> tuple[float, float]:
    m = metrics(p)
    return (sample(m, "imgproxy_cache_requests_total", result="hit"),
            sample(m, "imgproxy_cache_requests_total", result="miss"))


def test_file_cache_hit_needs_no_origin(file_cached, own_origin):
    p, _ = file_cached
    hits, misses = cache_counts(p)
    url = own_origin.serve("/cached.jpg", JPEG)
    first = p.get(q(url, "w=40"))
    own_origin.stop()
    hit = p.get(q(url, "w=40"))
    assert hit.status == 200 and hit.body == first.body and hit.headers["ETag"] == first.headers["ETag"]
    assert p.get(q(url, "w=40"), headers={"If-None-Match": first.headers["ETag"]}).status == 304
    assert cache_counts(p) == (hits + 2, misses + 1)


def test_file_cache_evicts_least_recently_used_by_size(start_proxy, origin, tmp_path):
    cache = tmp_path / "lru"
    p = start_proxy(f"--cache_dir={cache}", "--cache_max_bytes=60000")
    noise = Image.effect_noise((400, 400), 80).convert("RGB")
    urls = [origin.serve(f"/lru-{i}.jpg", encode(noise.rotate(90 * i), "JPEG")) for i in range(3)]
    sizes = []
    for u in urls[:2]:
        sizes.append(len(p.get(q(u, "w=120&h=120&fmt=png")).body))
    assert sum(sizes) + 1000 < 60000 < sum(sizes) * 1.5  # room for two entries, not three
    p.get(q(urls[0], "w=120&h=120&fmt=png"))  # 0 is now more recent than 1
    p.get(q(urls[2], "w=120&h=120&fmt=png"))  # evicts 1
    hits = dict(origin.hits)
    p.get(q(urls[0], "w=120&h=120&fmt=png"))
    assert origin.hits["/lru-0.jpg"] == hits["/lru-0.jpg"]  # still cached
    p.get(q(urls[1], "w=120&h=120&fmt=png"))
    assert origin.hits["/lru-1.jpg"] == hits["/lru-1.jpg"] + 1  # was evicted
    total = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    assert total <= 60000


def test_corrupt_cache_entry_is_ignored_and_rewritten(file_cached, origin):
    p, cache = file_cached
    files = lambda: {f for f in cache.rglob("*") if f.is_file()}  # noqa: E731
    earlier = files()
    url = origin.serve("/corrupt.jpg", JPEG)
    good = p.get(q(url, "w=40")).body
    (entry,) = files() - earlier
    entry.write_bytes(entry.read_bytes()[:-100])  # truncated, as a crash mid-write would without atomic writes
    before = origin.hits["/corrupt.jpg"]
    again = p.get(q(url, "w=40"))
    assert again.status == 200 and decode(again.body).size == decode(good).size
    assert origin.hits["/corrupt.jpg"] == before + 1
    assert entry.read_bytes().endswith(again.body)  # rewritten whole
    assert not [f for f in cache.rglob(".*") if f.is_file()]  # no temporary files left


@pytest.mark.parametrize("cache_flag", [None, "dir"])
def test_identical_requests_in_flight_are_computed_once(proxy, file_cached, origin, cache_flag):
    p = file_cached[0] if cache_flag else proxy
    path = f"/coalesce-{cache_flag}.jpg"
    url = origin.serve(path, JPEG, delay=1.0)
    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda _: p.get(q(url, "w=33")), range(6)))
    assert [r.status for r in results] == [200] * 6
    assert len({r.body for r in results}) == 1
    assert origin.hits[path] == 1


# --- Redis ------------------------------------------------------------------------------

@pytest.fixture
def redis_server(tmp_path):
    proc, port = start_redis(tmp_path)
    yield proc, port
    stop_redis(proc)


def test_redis_cache_hit_ttl_and_entry_cap(start_proxy, own_origin, redis_server):
    import redis
    proc, port = redis_server
    p = start_proxy(f"--cache_url=redis://127.0.0.1:{port}/0", "--cache_ttl=300",
                    "--cache_max_entry_bytes=200000")
    small = own_origin.serve("/r-small.jpg", JPEG)
    big = own_origin.serve("/r-big.png", encode(Image.effect_noise((600, 600), 90).convert("RGB"), "PNG"),
                           content_type="image/png")
    first = p.get(q(small, "w=40"))
    assert len(p.get(q(big, "w=600&fmt=png")).body) > 200000
    client = redis.Redis(port=port)
    keys = client.keys("imgproxy:*")
    assert len(keys) == 1  # the big result was over the per-entry cap
    assert 0 < client.ttl(keys[0]) <= 300
    own_origin.stop()
    hit = p.get(q(small, "w=40"))
    assert hit.status == 200 and hit.body == first.body


def test_redis_outage_is_tolerated_and_counted(start_proxy, origin, redis_server):
    proc, port = redis_server
    p = start_proxy(f"--cache_url=redis://127.0.0.1:{port}/0")
    url = origin.serve("/r-down.jpg", JPEG)
    assert p.get(q(url, "w=40")).status == 200
    proc.kill()
    proc.wait(10)
    started = time.monotonic()
    r = p.get(q(url, "w=41"))
    assert r.status == 200 and r.image.size[0] == 41
    assert time.monotonic() - started < 5
    m = metrics(p)
    assert sample(m, "imgproxy_cache_requests_total", result="error") >= 1


def test_health_is_503_when_no_worker_is_alive():
    """The real application over real HTTP, with a pool none of whose workers is alive."""
    import asyncio
    import json

    from tornado.httpclient import AsyncHTTPClient
    from tornado.httpserver import HTTPServer

    from imgproxy.config import Settings
    from imgproxy.metrics import Metrics
    from imgproxy.pool import Pool
    from imgproxy.server.app import Application
    from imgproxy.server.services import make_services

    async def scenario():
        settings = Settings()
        pool = Pool(size=1, max_queue=1, task_timeout=1.0)  # never started: no worker alive
        app = Application(settings, make_services(settings, pool, Metrics(pool.stats)))
        server = HTTPServer(app)
        port = free_port()
        server.listen(port, "127.0.0.1")
        try:
            r = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/health", raise_error=False)
            return r.code, json.loads(r.body)
        finally:
            server.stop()

    code, body = asyncio.run(scenario())
    assert code == 503 and body["status"] == "unavailable"
    assert body["workers"] == {"alive": 0, "total": 1, "busy": 0}
