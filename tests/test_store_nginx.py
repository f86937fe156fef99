"""The README's NGINX locations for the upload store, run for real in front of imgproxy.

The ``# imgproxy: store locations`` block is read out of README.rst and put into
the Deployment server block beside ``location /``, as the README says; only the
addresses, the cache directory and ``root`` (the test's store_dir) are replaced.
Stored files must be answered by NGINX alone (the server stopped), a size not
stored yet must reach the server once, and everything else under /images must
reach the server. NGINX is required: a missing binary fails the test.
"""

from __future__ import annotations

import http.client
import random
import re
from pathlib import Path

import pytest
from PIL import Image
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

from imgproxy.signature import sign_path

TOKEN = "store-token-for-nginx"
KEY = "client-key-for-nginx"
IMMUTABLE = "public, max-age=31536000, immutable"
SAFETY = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'"}
SERVER_ETAG = re.compile(r'"[0-9a-f]{32}"\Z')  # the server's: a hash of the blob's key
NGINX_ETAG = re.compile(r'"[0-9a-f]+-[0-9a-f]+"\Z')  # NGINX's own: the file's mtime and size
STORE_ROOT = "root /var/lib/imgproxy/store;"
SIZES = "[0-9]{1,5}x[0-9]{1,5}!?"


# --- the config, from the README ------------------------------------------------------------

def nginx_http(tmp: Path, port: int, upstream_port: int, store_dir: Path, edits=()) -> str:
    """The Deployment http and server blocks with the store locations beside `location /`;
    `edits` are (old, new) changes to the store block that the README tells users to make."""
    http_block = replace_once(readme_block("# imgproxy: http block"),
                              "/var/cache/nginx/images", str(tmp / "cache"))
    store = replace_once(readme_block("# imgproxy: store locations"), STORE_ROOT, f"root {store_dir};")
    for old, new in edits:
        store = replace_once(store, old, new)
    server = readme_block("# imgproxy: server block")
    server = replace_once(server, "server 127.0.0.1:8888;", f"server 127.0.0.1:{upstream_port};")
    server = replace_once(server, "listen 80;", f"listen 127.0.0.1:{port};")
    indented = "".join(f"    {line}\n" if line else "\n" for line in store.splitlines())
    server = replace_once(server, "    location / {", f"{indented}\n    location / {{")
    return f"{http_block}\n{server}"


class Front:
    """One server with its own store, and the README's NGINX in front of it."""

    def __init__(self, nginx: Nginx, store_dir: Path):
        self.nginx = nginx
        self.proxy = nginx.proxy
        self.store_dir = store_dir

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, direct: bool = False) -> Response:
        port = self.proxy.port if direct else self.nginx.port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.headers, r.read())
        finally:
            conn.close()

    def get(self, path: str, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def upload(self, body: bytes) -> str:
        r = self.request("POST", "/images", body, {"Authorization": f"Bearer {TOKEN}"})
        assert r.status == 201, (r.status, r.body[:300])
        return r.json["id"]

    def folder(self, image_id: str) -> Path:
        return self.store_dir / image_id[:2] / image_id

    def server_log(self) -> str:
        return self.proxy.log_path.read_text(errors="replace")

    def reached_server(self, method: str, path: str) -> int:
        """How many `method path` requests the server has answered, once every request
        NGINX sent it before now is in its access log."""
        count = lambda: self.server_log().count("GET /health ")  # noqa: E731
        before = count()
        assert self.nginx.get(path="/health").status == 200
        assert wait_for(lambda: count() > before, 10), self.server_log()[-2000:]
        return len(re.findall(rf"imgproxy\.access: {method} {re.escape(path)} \d{{3}} ", self.server_log()))


@pytest.fixture(scope="module")
def start_front(start_proxy, tmp_path_factory):
    nginx_binary()  # no NGINX is a failure, not a skip
    fronts: list[Nginx] = []

    def start(*flags: str, edits=()) -> Front:
        tmp = tmp_path_factory.mktemp("store-nginx")
        store_dir = tmp / "store"
        proxy = start_proxy(f"--store_dir={store_dir}", f"--store_token={TOKEN}",
                            f"--store_db={tmp / 'store.sqlite3'}", f"--job_db={tmp / 'jobs.sqlite3'}",
                            "--workers=1", *flags)
        port = free_port()
        nginx = start_nginx(tmp, nginx_http(tmp, port, proxy.port, store_dir, edits), port, [proxy])
        fronts.append(nginx)
        return Front(nginx, store_dir)

    yield start
    for nginx in fronts:
        nginx.stop()


@pytest.fixture(scope="module")
def front(start_front) -> Front:
    """One server and NGINX with the README's block as it is, for the tests that neither stop
    the server nor edit the block (a start of both costs about a second of CPU)."""
    return start_front()


def assert_stored_image(r: Response, content_type: str) -> None:
    """A stored image's reply, with the server's headers, whoever sent it."""
    assert r.status == 200, (r.status, r.body[:300])
    assert r.headers["Content-Type"] == content_type
    assert r.headers["Cache-Control"] == IMMUTABLE
    for name, value in SAFETY.items():
        assert r.headers.get_all(name) == [value], name


def assert_from_disk(r: Response, content_type: str, body: bytes) -> None:
    """NGINX sent the stored file itself."""
    assert_stored_image(r, content_type)
    assert NGINX_ETAG.match(r.headers["ETag"]), r.headers["ETag"]
    assert r.headers["Last-Modified"]  # NGINX's; the server sends none
    assert r.body == body


def assert_from_server(r: Response, content_type: str) -> None:
    assert_stored_image(r, content_type)
    assert SERVER_ETAG.match(r.headers["ETag"]), r.headers["ETag"]
    assert "Last-Modified" not in r.headers


def assert_server_error(r: Response, status: int) -> None:
    """An error the server wrote (JSON), not one of NGINX's HTML pages."""
    assert r.status == status, (r.status, r.body[:300])
    assert r.headers["Content-Type"] == "application/json"
    assert r.json["status_code"] == status


JPEG = encode(quadrants((600, 400)), "JPEG", quality=90)


# --- hits from the disk, a miss to the server once, hits with the server stopped ----------------

def test_stored_files_are_sent_by_nginx_even_with_the_server_stopped(start_front):
    front = start_front()
    image_id = front.upload(JPEG)
    folder = front.folder(image_id)
    base = f"/images/{image_id}"
    assert sorted(p.name for p in folder.iterdir()) == ["large.jpg", "medium.webp", "original.jpg",
                                                        "thumbnail.webp"]

    # made on upload: the first request is already NGINX's, and never the server's
    thumbnail = front.get(f"{base}/thumbnail")
    assert_from_disk(thumbnail, "image/webp", (folder / "thumbnail.webp").read_bytes())
    original = front.get(f"{base}/original")
    assert_from_disk(original, "image/jpeg", JPEG)
    assert front.get(f"{base}/thumbnail").headers["ETag"] == thumbnail.headers["ETag"]

    # a size: the first request reaches the server, which makes and stores it; then NGINX sends it
    assert not (folder / "240x160.jpg").exists()
    miss = front.get(f"{base}/240x160")
    assert_from_server(miss, "image/jpeg")
    assert decode(miss.body).size == (240, 160)
    hit = front.get(f"{base}/240x160")
    assert_from_disk(hit, "image/jpeg", miss.body)
    assert (folder / "240x160.jpg").read_bytes() == miss.body
    # the file-name segment is ignored, as the server ignores it
    assert_from_disk(front.get(f"{base}/240x160/red-bicycle.jpg"), "image/jpeg", miss.body)
    assert_from_disk(front.get(f"{base}/thumbnail/red-bicycle.webp"), "image/webp", thumbnail.body)
    # a crop, first asked with a file name, then with its '!' percent-encoded
    crop = front.get(f"{base}/75x75!/square.jpg")
    assert_from_server(crop, "image/jpeg")
    assert_from_disk(front.get(f"{base}/75x75%21"), "image/jpeg", crop.body)

    assert front.reached_server("GET", f"{base}/240x160") == 1
    assert front.reached_server("GET", f"{base}/75x75!/square.jpg") == 1
    for path in (f"{base}/thumbnail", f"{base}/original", f"{base}/240x160/red-bicycle.jpg",
                 f"{base}/thumbnail/red-bicycle.webp", f"{base}/75x75%21"):
        assert front.reached_server("GET", path) == 0, path

    # the same bytes as the server's own answers (asked directly, not through NGINX)
    for name, r in (("thumbnail", thumbnail), ("original", original), ("240x160", hit)):
        direct = front.get(f"{base}/{name}", direct=True)
        assert direct.status == 200 and direct.body == r.body, name
        assert direct.headers["Content-Type"] == r.headers["Content-Type"], name

    # HEAD and If-None-Match are NGINX's too
    head = front.request("HEAD", f"{base}/240x160")
    assert (head.status, head.body, head.headers["Content-Length"]) == (200, b"", str(len(miss.body)))
    assert head.headers["ETag"] == hit.headers["ETag"]
    again = front.get(f"{base}/240x160", headers={"If-None-Match": hit.headers["ETag"]})
    assert (again.status, again.body) == (304, b"")
    assert again.headers["Cache-Control"] == IMMUTABLE

    # the server stops (this test's own process, by its PID): what is stored is still sent
    front.proxy.stop()
    assert front.proxy.process.poll() is not None
    assert_from_disk(front.get(f"{base}/thumbnail"), "image/webp", thumbnail.body)
    stopped = front.get(f"{base}/original")
    assert_from_disk(stopped, "image/jpeg", JPEG)
    # making the sizes read the original; its ETag (mtime and size) did not change
    assert stopped.headers["ETag"] == original.headers["ETag"]
    assert stopped.headers["Last-Modified"] == original.headers["Last-Modified"]
    assert_from_disk(front.get(f"{base}/240x160"), "image/jpeg", miss.body)
    assert_from_disk(front.get(f"{base}/240x160/red-bicycle.jpg"), "image/jpeg", miss.body)
    assert_from_disk(front.get(f"{base}/75x75%21/square.jpg"), "image/jpeg", crop.body)
    medium = front.get(f"{base}/medium")
    assert_from_disk(medium, "image/webp", (folder / "medium.webp").read_bytes())
    assert_from_disk(front.get(f"{base}/large"), "image/jpeg", (folder / "large.jpg").read_bytes())
    # nothing else is: a size never made, and the record, needed the server
    assert front.get(f"{base}/300x300").status in (502, 504)
    assert front.get(base).status in (502, 504)
    assert not (folder / "300x300.jpg").exists()


# --- writes and deletes go to the server ------------------------------------------------------

def noise_png(size=(700, 700)) -> bytes:
    """A PNG over NGINX's default 1 MB body limit (random pixels do not compress)."""
    rng = random.Random(7)
    img = Image.frombytes("RGB", size, bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3)))
    return encode(img, "PNG")


def test_uploads_deletes_and_records_go_to_the_server(front):
    big = noise_png()
    assert len(big) > 1024 * 1024
    image_id = front.upload(big)  # through NGINX: client_max_body_size lets it pass
    base = f"/images/{image_id}"
    folder = front.folder(image_id)

    record = front.get(base)
    assert record.status == 200 and record.json["id"] == image_id
    assert record.headers["Cache-Control"] == "no-store"
    listing = front.get("/images", headers={"Authorization": f"Bearer {TOKEN}"})
    assert listing.status == 200 and listing.json["images"][0]["id"] == image_id  # the newest first
    assert_from_server(front.get(f"{base}/120x120"), "image/png")
    assert_from_disk(front.get(f"{base}/120x120"), "image/png", (folder / "120x120.png").read_bytes())

    # methods other than GET and HEAD on a stored file: the server's answer, the file untouched
    for method in ("DELETE", "POST", "PUT"):
        r = front.request(method, f"{base}/thumbnail", b"x", {"Authorization": f"Bearer {TOKEN}"})
        assert_server_error(r, 405)
        assert front.reached_server(method, f"{base}/thumbnail") == 1
    assert (folder / "thumbnail.webp").exists()

    # a delete needs the token, then removes the files: every URL is 404 at once, from the server
    assert_server_error(front.request("DELETE", base), 401)
    assert front.request("DELETE", base, headers={"Authorization": f"Bearer {TOKEN}"}).status == 204
    assert not folder.exists()
    for name in ("thumbnail", "original", "large", "120x120", "120x120/name.png", "240x160"):
        assert_server_error(front.get(f"{base}/{name}"), 404)
    assert_server_error(front.get(base), 404)
    assert not folder.exists()  # the misses made nothing


# --- every format's Content-Type -----------------------------------------------------------------

FORMATS = {  # Pillow's name -> (file extension, Content-Type)
    "JPEG": ("jpg", "image/jpeg"), "PNG": ("png", "image/png"), "GIF": ("gif", "image/gif"),
    "WEBP": ("webp", "image/webp"), "TIFF": ("tiff", "image/tiff"), "AVIF": ("avif", "image/avif"),
}


def test_every_format_is_sent_with_its_type(front):
    """`large` and sizes keep the original's format: one upload per format covers every extension."""
    small = quadrants((320, 214))
    for fmt, (ext, content_type) in FORMATS.items():
        image_id = front.upload(encode(small, fmt))
        base, folder = f"/images/{image_id}", front.folder(image_id)
        assert_from_server(front.get(f"{base}/100x100"), content_type)
        for name in ("original", "large", "100x100"):
            path = folder / f"{name}.{ext}"
            assert path.exists(), (fmt, sorted(p.name for p in folder.iterdir()))
            hit = front.get(f"{base}/{name}")
            assert_from_disk(hit, content_type, path.read_bytes())
            direct = front.get(f"{base}/{name}", direct=True)
            assert direct.headers["Content-Type"] == hit.headers["Content-Type"], (fmt, name)
            assert direct.body == hit.body, (fmt, name)
            assert decode(hit.body).format == fmt


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="200">'
       b'<rect width="300" height="200" fill="#d01010"/></svg>')


def test_an_svg_original_is_sent_as_svg_under_the_csp(front):
    """An SVG original is kept as original.svg; its variants and sizes are PNGs."""
    image_id = front.upload(SVG)
    base, folder = f"/images/{image_id}", front.folder(image_id)
    assert_from_server(front.get(f"{base}/100x100"), "image/png")
    for name, ext, content_type in (("original", "svg", "image/svg+xml"), ("large", "png", "image/png"),
                                    ("100x100", "png", "image/png")):
        hit = front.get(f"{base}/{name}")
        assert_from_disk(hit, content_type, (folder / f"{name}.{ext}").read_bytes())
        direct = front.get(f"{base}/{name}", direct=True)
        assert (direct.headers["Content-Type"], direct.body) == (content_type, hit.body), name
    assert front.get(f"{base}/original").body == SVG


# --- the README's edits for store_sizes and store_serve_original ----------------------------

def test_listed_sizes_and_no_original_keep_unsigned_reads_to_what_the_server_allows(start_front):
    """With store_sizes listed in the pattern (and `original|` out), a size made for a signed
    URL is on disk but still not sent unsigned, and the original is not sent at all."""
    front = start_front("--store_sizes=240x160,75x75!", "--store_serve_original=false",
                        f"--client_key={KEY}",
                        edits=[("original|", ""), (SIZES, "240x160|75x75!")])
    image_id = front.upload(JPEG)
    base, folder = f"/images/{image_id}", front.folder(image_id)
    assert (folder / "original.jpg").exists()
    assert_server_error(front.get(f"{base}/original"), 404)

    # listed sizes: anyone, from the disk after the first
    listed = front.get(f"{base}/240x160")
    assert_from_server(listed, "image/jpeg")
    assert_from_disk(front.get(f"{base}/240x160"), "image/jpeg", listed.body)
    # a signed miss reaches the server as sent ('%21' and all), so its signature holds
    crop = front.get(sign_path(KEY, f"{base}/75x75%21/square.jpg"))
    assert_from_server(crop, "image/jpeg")
    assert_from_disk(front.get(f"{base}/75x75%21"), "image/jpeg", crop.body)

    # an unlisted size is made for a signed URL and stored...
    for path, stored in ((f"{base}/300x200", "300x200.jpg"), (f"{base}/50x50%21/x.jpg", "50x50!.jpg")):
        assert_server_error(front.get(path), 403)
        signed = front.get(sign_path(KEY, path))
        assert_from_server(signed, "image/jpeg")
        assert (folder / stored).exists()
        # ...but NGINX never sends it: unsigned it is the server's 403, signed the server's copy
        assert_server_error(front.get(path), 403)
        again = front.get(sign_path(KEY, path))
        assert_from_server(again, "image/jpeg")
        assert again.body == signed.body == (folder / stored).read_bytes()


def test_readme_block_is_what_the_edits_expect():
    """The README's list of edits names these exact strings: keep them in the block."""
    block = readme_block("# imgproxy: store locations")
    for text in ("original|", "thumbnail|medium|large", SIZES, STORE_ROOT, "location @imgproxy_store"):
        assert block.count(text) == 1, text
    readme = (Path(__file__).resolve().parent.parent / "README.rst").read_text()
    assert "``thumbnail|medium|large``" in readme and f"``{SIZES}``" in readme

