"""Path URLs, presets, sizes, presets-only and several origins, over real HTTP on loopback."""

from __future__ import annotations

import pytest
from support import Origin, decode, encode, quadrants

from imgproxy.signature import sign, sign_path

KEY = "path-secret"
PHOTO = encode(quadrants((640, 428)), "JPEG", quality=95)
SMALL = encode(quadrants((100, 80)), "PNG")


@pytest.fixture(scope="module")
def origins():
    master, second, third = Origin().start(), Origin().start(), Origin().start()
    master.serve("/images/photos/cat.jpg", PHOTO)
    master.serve("/images/photos/small.png", SMALL, content_type="image/png")
    second.serve("/images/fresh/new.jpg", PHOTO)  # uploaded, not yet synced to the master
    third.serve("/images/fresh/new.jpg", PHOTO, delay=1.0)
    for o in (second, third):
        o.serve("/images/broken/x.jpg", b"", status=503)
    yield master, second, third
    for o in (master, second, third):
        o.stop()


def server_flags(origins) -> tuple[str, ...]:
    bases = ",".join(f"http://127.0.0.1:{o.port}/images/" for o in origins)
    presets = "s220:w=220&h=220&mode=crop;m100:w=100&mode=clip&fmt=png;default:q=80"
    return (f"--origins={bases}", f"--presets={presets}", "--source_cache_bytes=50000000", "--allowed_hosts=")


def locked_flags(origins) -> tuple[str, ...]:
    base = f"http://127.0.0.1:{origins[0].port}/images/"
    return (f"--origins={base}", "--presets=s220:w=220&h=220&mode=crop", "--sizes=64x64,64x64!",
            "--presets_only", f"--client_key={KEY}", "--allowed_hosts=")


@pytest.fixture(scope="module", autouse=True)
def _proxies_side_by_side(shared_proxy, origins):
    # Only this module's origins are in their flags: no other module shares them.
    shared_proxy.warm(server_flags(origins), locked_flags(origins))


@pytest.fixture(scope="module")
def server(shared_proxy, origins):
    return shared_proxy(*server_flags(origins))


def size_of(r) -> tuple[int, int]:
    assert r.status == 200, (r.status, r.body[:200])
    return decode(r.body).size


@pytest.mark.parametrize("path, size", [
    ("/220x220/photos/cat.jpg", (220, 147)),  # fits inside, keeps 640:428
    ("/220x220!/photos/cat.jpg", (220, 220)),  # crops to exactly the box
    ("/0x100/photos/cat.jpg", (149, 100)),  # width follows
    ("/300x0/photos/cat.jpg", (300, 200)),
    ("/1000x1000/photos/cat.jpg", (640, 428)),  # never enlarges
    ("/1000x500!/photos/cat.jpg", (640, 320)),  # the box's shape, shrunk to fit the source
    ("/s220/photos/cat.jpg", (220, 220)),
    ("/m100/photos/cat.jpg", (99, 66)),  # the query API's clip, as Pilbox rounds it
    ("/100x100/0x0/320x214/photos/cat.jpg", (100, 67)),  # the top-left quadrant, then fitted
])
def test_sizes_presets_and_rectangles(server, path, size):
    assert size_of(server.get(path=path)) == size


def test_rectangle_cuts_before_resizing(server):
    img = decode(server.get(path="/50x50!/320x0/640x214/photos/cat.jpg").body).convert("RGB")
    assert img.size == (50, 50)
    r, g, b = img.getpixel((25, 25))
    assert g > 200 and r < 60 and b < 60  # the green top-right quadrant alone


@pytest.mark.parametrize("path, status", [
    ("/100x100/10x10/10x50/photos/cat.jpg", 400),  # empty
    ("/100x100/50x50/10x10/photos/cat.jpg", 400),  # inverted
    ("/100x100/0x0/700x100/photos/cat.jpg", 400),  # outside the source
    ("/0x0/photos/cat.jpg", 400),
    ("/nopreset/photos/cat.jpg", 404),
    ("/220x220/photos/none.jpg", 404),
])
def test_bad_paths(server, path, status):
    r = server.get(path=path)
    assert r.status == status and r.json["status_code"] == status


def test_query_options_follow_and_geometry_comes_from_the_path(server):
    r = server.get("fmt=webp&q=50", path="/220x220/photos/cat.jpg")
    assert r.headers["Content-Type"] == "image/webp" and decode(r.body).size == (220, 147)
    assert server.get("q=0", path="/220x220/photos/cat.jpg").json["error_code"] == 7
    for query in ("w=900", "op=noop", "mode=scale", "url=http%3A%2F%2Fexample.com%2Fa.jpg"):
        assert server.get(query, path="/220x220/photos/cat.jpg").status == 400, query


def test_default_preset_applies_under_each_request(server):
    low = server.get(path="/220x220!/photos/cat.jpg")  # default: q=80
    high = server.get("q=95", path="/220x220!/photos/cat.jpg")
    explicit = server.get("q=80", path="/220x220!/photos/cat.jpg")
    assert low.body == explicit.body and len(high.body) > len(low.body)


@pytest.mark.parametrize("path", [
    "/100x100/../secret.png", "/100x100/photos/%2e%2e/secret.png", "/100x100/photos%2f..%2fsecret.png",
    "/100x100//evil.example/x.jpg", "/100x100/photos/./cat.jpg", "/100x100/photos\\cat.jpg",
    "/100x100/photos/%00cat.jpg", "/100x100/photos/cat.jpg/", "/s220/%2E%2E/%2E%2E/etc/passwd",
])
def test_traversal_is_refused_and_origins_see_only_their_roots(server, origins, path):
    assert server.get(path=path).status == 400
    for o in origins:
        assert all(p.startswith("/images/") for p in o.hits), o.hits


def test_master_404_falls_back_to_a_secondary(server, origins):
    master, second, third = origins
    assert size_of(server.get(path="/220x220/fresh/new.jpg")) == (220, 147)
    assert master.hits.get("/images/fresh/new.jpg") == 1 and second.hits.get("/images/fresh/new.jpg") == 1


def test_every_origin_404_is_404_and_5xx_is_502(server):
    assert server.get(path="/220x220/missing/everywhere.jpg").status == 404
    r = server.get(path="/220x220/broken/x.jpg")
    assert r.status == 502 and r.json["error_code"] == 301


def test_ten_presets_of_one_source_fetch_it_once(server, origins):
    master = origins[0]
    master.serve("/images/once/photo.jpg", PHOTO)
    for path in ("220x220", "220x220!", "100x100", "0x50", "s220", "m100", "300x0", "64x64!", "10x10", "20x20"):
        assert server.get(path=f"/{path}/once/photo.jpg").status == 200
    assert master.hits["/images/once/photo.jpg"] == 1


def test_query_api_paths_use_the_same_origins(server, origins):
    r = server.get("url=/fresh/new.jpg&w=50&h=50")
    assert size_of(r) == (50, 50)
    assert server.get("url=/../secret.png&w=50").status == 400
    assert server.get("url=/photos/cat.jpg&preset=s220").status == 200
    assert size_of(server.get("url=/photos/cat.jpg&preset=s220")) == (220, 220)
    assert server.get("url=/photos/cat.jpg&preset=nope").status == 400


# --- sizes, signatures and presets_only ------------------------------------------------

@pytest.fixture(scope="module")
def locked(shared_proxy, origins):
    return shared_proxy(*locked_flags(origins))


def test_sizes_list_and_signed_requests(locked):
    assert locked.get(path="/64x64/photos/cat.jpg").status == 200
    assert locked.get(path="/64x64!/photos/cat.jpg").status == 200
    r = locked.get(path="/221x220/photos/cat.jpg")
    assert r.status == 403 and "221x220" in r.json["error"] and "\n" not in r.json["error"]
    signed = sign_path(KEY, "/221x220/photos/cat.jpg")
    path, _, query = signed.partition("?")
    assert decode(locked.get(query, path=path).body).size == (221, 148)
    signed = sign_path(KEY, "/221x220/photos/cat.jpg", "fmt=png")
    path, _, query = signed.partition("?")
    assert decode(locked.get(query, path=path).body).format == "PNG"
    assert locked.get(query.replace("png", "gif"), path=path).status == 403  # the query is signed too
    assert locked.get("sig=" + "0" * 40, path="/221x220/photos/cat.jpg").status == 403


def test_presets_only_refuses_raw_options_on_every_route(locked):
    """Regression: a presets-only mode must not let raw options through beside a preset."""
    assert locked.get("fmt=webp", path="/s220/photos/cat.jpg").status == 200
    for query in ("q=99", "pos=face", "filter=nearest", "bg=000"):
        r = locked.get(query, path="/s220/photos/cat.jpg")
        assert r.status == 403 and r.json["error_code"] == 10, query
    assert locked.get("url=/photos/cat.jpg&preset=s220&fmt=png").status == 200
    for query in ("url=/photos/cat.jpg&w=10", "url=/photos/cat.jpg&preset=s220&w=900",
                  "url=/photos/cat.jpg&preset=s220&q=99", "url=/photos/cat.jpg&op=noop"):
        assert locked.get(query).status == 403, query
    assert locked.get("url=/photos/cat.jpg", path="/info").status == 403
    signed = sign(KEY, "url=/photos/cat.jpg&w=10&q=99")
    assert decode(locked.get(signed).body).size[0] == 10
    assert locked.get(sign(KEY, "url=/photos/cat.jpg"), path="/info").status == 200


def test_bad_preset_stops_start_up(tmp_path):
    import subprocess
    import sys

    from support import ROOT
    r = subprocess.run([sys.executable, "-m", "imgproxy", "--presets=bad:w=0", "--port=18999"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "preset 'bad'" in r.stderr and r.stderr.count("\n") == 1
