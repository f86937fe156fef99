"""The upload store through the real server, on both backends: the filesystem, and a real
S3-compatible server on loopback (moto, authentication enforced). Records in SQLite, and
in Redis for two nodes sharing one S3 store."""

from __future__ import annotations

import http.client
import io
import itertools
import json
import os
import re
import struct
import time
import uuid
from dataclasses import dataclass

import pytest
from PIL import Image, ImageCms
from support import _FAKE_ENV, BUCKET, REGION, Moto, Proxy, Response, close_to, start_redis, stop_redis

from imgproxy.signature import sign_path

TOKEN = "store-token-for-tests"
MAX_UPLOAD = 300_000
_prefixes = itertools.count()


# --- images ------------------------------------------------------------------------------

def swapped_profile() -> bytes:
    """sRGB with its red and blue primaries exchanged: pixels that say red are blue in sRGB."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    count = struct.unpack(">I", icc[128:132])[0]
    entries = {bytes(icc[132 + 12 * i:136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = entries[b"rXYZ"], entries[b"bXYZ"]
    icc[red + 4:red + 12], icc[blue + 4:blue + 12] = icc[blue + 4:blue + 12], icc[red + 4:red + 12]
    return bytes(icc)


def camera_jpeg(size=(400, 300)) -> bytes:
    """A red photo stored sideways (orientation 6: shown 300x400), with GPS, a comment, XMP-like
    text and a colour profile that turns its red into blue."""
    img = Image.new("RGB", size, (220, 20, 20))
    img.paste((20, 220, 20), (0, 0, size[0] // 4, size[1] // 4))  # a green corner: top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestCamera"
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)})
    out = io.BytesIO()
    img.save(out, "JPEG", quality=92, exif=exif.tobytes(), icc_profile=swapped_profile(),
             comment=b"secret comment")
    return out.getvalue()


def png(size=(50, 40), colour=(0, 0, 255, 255)) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", size, colour).save(out, "PNG")
    return out.getvalue()


def decoded(body: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(body))
    img.load()
    return img


# --- talking to the server ----------------------------------------------------------------

def call(proxy: Proxy, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None, token: str | None = TOKEN) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=60)
    try:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        conn.close()


def upload(proxy: Proxy, body: bytes, query: str = "", **headers) -> Response:
    return call(proxy, "POST", "/images" + query, body, headers)


def form(fields: dict[str, str], image: bytes, filename="photo.jpg") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
                 f'Content-Type: application/octet-stream\r\n\r\n'.encode() + image + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wait_ready(proxy: Proxy, image_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = call(proxy, "GET", f"/images/{image_id}").json
        if doc["state"] != "pending" or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


# --- servers ------------------------------------------------------------------------------

@dataclass
class Backend:
    name: str
    flags: tuple[str, ...]
    env: dict[str, str]
    moto: Moto | None = None
    prefix: str = ""

    def keys(self, image_id: str) -> list[str]:
        """What the backend holds for an image, read behind the server's back."""
        if self.moto is None:
            folder = os.path.join(self.flags_dict["store_dir"], image_id[:2], image_id)
            return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        s3 = self.moto.client("s3", *self.moto.credentials)
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{self.prefix}/{image_id[:2]}/{image_id}/")
        return sorted(o["Key"].rpartition("/")[2] for o in listed.get("Contents", []))

    @property
    def flags_dict(self) -> dict[str, str]:
        return dict(f[2:].split("=", 1) for f in self.flags)


def s3_backend(moto: Moto) -> Backend:
    prefix = f"store{next(_prefixes)}"
    key_id, secret = moto.credentials
    env = {**_FAKE_ENV, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
    flags = (f"--store_url=s3://{BUCKET}/{prefix}", f"--store_s3_endpoint={moto.endpoint}",
             f"--store_s3_region={REGION}")
    return Backend("s3", flags, env, moto, prefix)


def files_backend(tmp_path_factory) -> Backend:
    return Backend("files", (f"--store_dir={tmp_path_factory.mktemp('store')}",), {})


@pytest.fixture(scope="module", params=["files", "s3"])
def backend(request, tmp_path_factory):
    if request.param == "files":
        return files_backend(tmp_path_factory)
    return s3_backend(request.getfixturevalue("moto"))


def start(tmp_path_factory, backend: Backend, *flags: str, db: str | None = None) -> Proxy:
    folder = tmp_path_factory.mktemp("server")
    # a job queue of its own: a shared one would let another test's server take this one's tasks
    proxy = Proxy("--workers=1", f"--store_token={TOKEN}", f"--store_db={db or folder / 'store.sqlite3'}",
                  f"--job_db={folder / 'jobs.sqlite3'}",
                  f"--max_upload_bytes={MAX_UPLOAD}", "--job_retry_seconds=0.1", *backend.flags, *flags,
                  log_path=folder / "imgproxy.log", env=backend.env)
    return proxy.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend):
    proxy = start(tmp_path_factory, backend, "--source_cache_bytes=20000000")
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def photo_bytes():
    return camera_jpeg()  # the profile has a creation time: the bytes differ from call to call


@pytest.fixture(scope="module")
def photo(server, photo_bytes):
    """One camera photo, uploaded once per backend."""
    r = upload(server, photo_bytes, "?title=Red%20bicycle", **{"Content-Type": "image/png"})
    assert r.status == 201, r.body
    return r


# --- uploads -------------------------------------------------------------------------------

def test_an_upload_answers_201_with_the_document(photo, photo_bytes, server):
    doc = photo.json
    assert photo.headers["Location"] == f"/images/{doc['id']}"
    assert len(doc["id"]) >= 22 and doc["id"].isalnum()
    # as displayed: orientation 6 turns the stored 400x300 upright; the client's Content-Type lied
    assert (doc["width"], doc["height"], doc["format"], doc["state"]) == (300, 400, "jpeg", "ready")
    assert doc["bytes"] == len(photo_bytes) and doc["title"] == "Red bicycle"
    assert doc["url"] == f"/images/{doc['id']}/original" and doc["created"].endswith("Z")
    assert {n: (v["width"], v["height"], v["format"]) for n, v in doc["variants"].items()} == {
        "thumbnail": (112, 150, "webp"), "medium": (300, 400, "webp"), "large": (300, 400, "jpeg")}
    assert call(server, "GET", f"/images/{doc['id']}", token=None).json == doc


def test_variants_are_upright_srgb_and_without_metadata(photo, server):
    doc = photo.json
    for name, meta in doc["variants"].items():
        r = call(server, "GET", meta["url"], token=None)
        assert r.status == 200 and r.headers["Content-Type"] == f"image/{meta['format']}"
        img = decoded(r.body)
        assert img.size == (meta["width"], meta["height"]) and len(r.body) == meta["bytes"]
        assert not img.getexif() and "icc_profile" not in img.info, name
        for marker in (b"Exif", b"GPS", b"TestCamera", b"secret comment", b"http://ns.adobe.com/xap"):
            assert marker not in r.body, (name, marker)
        rgb = img.convert("RGB")
        # the profile's red is sRGB's blue; the green corner, top left as stored, is top right upright
        assert close_to(rgb.getpixel((img.width // 2, img.height - 2)), (20, 20, 220), 60), name
        assert close_to(rgb.getpixel((img.width - 3, 2)), (20, 220, 20), 60), name


def test_the_original_is_kept_byte_for_byte(photo, photo_bytes, server):
    r = call(server, "GET", photo.json["url"], token=None)
    assert r.status == 200 and r.body == photo_bytes and r.headers["Content-Type"] == "image/jpeg"


def test_a_form_upload_with_a_title(server):
    body, content_type = form({"title": "A <b>blue</b> square"}, png())
    r = upload(server, body, **{"Content-Type": content_type})
    assert r.status == 201, r.body
    doc = r.json
    assert (doc["title"], doc["format"], doc["width"], doc["height"]) == ("A <b>blue</b> square", "png", 50, 40)
    # never enlarged: every variant of a 50x40 image is 50x40
    assert {(v["width"], v["height"]) for v in doc["variants"].values()} == {(50, 40)}
    assert decoded(call(server, "GET", doc["variants"]["large"]["url"]).body).format == "PNG"


@pytest.mark.parametrize("body, status", [(b"", 400), (b"not an image at all", 415)])
def test_what_is_not_an_image_is_refused(server, body, status):
    r = upload(server, body)
    assert r.status == status and r.json["status_code"] == status


def test_a_form_without_the_image_field_is_400(server):
    body, content_type = form({"title": "x"}, b"")
    r = upload(server, body.replace(b'name="image"', b'name="picture"'), **{"Content-Type": content_type})
    assert r.status == 400 and "image" in r.json["error"]


def test_pixel_caps_apply_before_decoding(server):
    img = Image.new("L", (9000, 9000))  # 81 MP, above the 50 MP default, a few kB of PNG
    out = io.BytesIO()
    img.save(out, "PNG", optimize=True)
    assert len(out.getvalue()) < MAX_UPLOAD
    r = upload(server, out.getvalue())
    assert r.status == 413 and r.json["error_code"] == 203


def test_an_upload_over_the_limit_is_413(server):
    r = upload(server, b"\xff" * (MAX_UPLOAD + 70_000))
    assert r.status == 413 and r.json["error_code"] == 701


def test_a_chunked_upload_over_the_limit_is_413(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", "/images")
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"\xff" * 65536
        for _ in range((MAX_UPLOAD + 70_000) // len(chunk) + 1):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        r = conn.getresponse()
        assert r.status == 413 and json.loads(r.read())["error_code"] == 701
    finally:
        conn.close()


@pytest.mark.parametrize("token", [None, "wrong"])
def test_writes_need_the_token(server, photo, token):
    r = call(server, "POST", "/images", png(), token=token)
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert call(server, "DELETE", f"/images/{photo.json['id']}", token=token).status == 401
    assert call(server, "GET", "/images", token=token).status == 401  # browsing too
    assert call(server, "GET", f"/images/{photo.json['id']}", token=None).status == 200


def test_a_broken_image_keeps_its_original_and_says_failed(server):
    data = camera_jpeg()
    scan = data.index(b"\xff\xda")  # the header reads; the pixels after half the scan do not
    truncated = data[: scan + (len(data) - scan) // 2]
    r = upload(server, truncated)
    assert r.status == 201, r.body
    doc = r.json
    assert doc["state"] == "failed" and doc["error"]
    assert call(server, "GET", f"/images/{doc['id']}/original").body == truncated


def test_async_uploads_are_made_in_the_background(server):
    r = upload(server, camera_jpeg((640, 480)), "?async=1")
    assert r.status == 202, r.body
    doc = r.json
    assert doc["state"] == "pending" and doc["statusURL"] == f"/images/{doc['id']}"
    assert doc["variants"]["thumbnail"]["bytes"] is None
    done = wait_ready(server, doc["id"])
    assert done["state"] == "ready" and done["variants"]["thumbnail"]["bytes"] > 0
    thumb = call(server, "GET", done["variants"]["thumbnail"]["url"])
    assert decoded(thumb.body).size == (112, 150)


# --- sizes and renderings ---------------------------------------------------------------------

@pytest.mark.parametrize("size, expected", [("240x160", (120, 160)), ("75x75!", (75, 75)), ("300x0", (300, 400)),
                                            ("0x100", (75, 100)), ("1000x1000", (300, 400)),
                                            ("1000x50!", (300, 15))])
def test_sizes_fit_crop_and_never_enlarge(server, photo, size, expected):
    r = call(server, "GET", f"/images/{photo.json['id']}/{size}", token=None)
    assert r.status == 200, r.body
    img = decoded(r.body)
    assert img.size == expected and img.format == "JPEG" and not img.getexif()


def test_an_exact_size_of_a_small_image_is_its_largest_centred_crop(server):
    image_id = upload(server, png((50, 40))).json["id"]
    assert decoded(call(server, "GET", f"/images/{image_id}/75x75!").body).size == (40, 40)
    assert decoded(call(server, "GET", f"/images/{image_id}/240x160").body).size == (50, 40)


def test_a_file_name_segment_serves_the_same_bytes(server, photo):
    base = f"/images/{photo.json['id']}"
    for name in ("thumbnail", "240x160", "original"):
        plain = call(server, "GET", f"{base}/{name}")
        named = call(server, "GET", f"{base}/{name}/red-bicycle.jpg")
        assert plain.status == named.status == 200 and plain.body == named.body


def test_served_images_are_immutable_with_etags_and_head(server, photo):
    path = f"/images/{photo.json['id']}/240x160"
    r = call(server, "GET", path)
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    etag = r.headers["ETag"]
    again = call(server, "GET", path, headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b"" and again.headers["ETag"] == etag
    other = call(server, "GET", path, headers={"If-None-Match": '"another-version"'})
    assert other.status == 200 and other.body == r.body  # only the client's own ETag is a 304
    head = call(server, "HEAD", path)
    assert head.status == 200 and head.body == b"" and head.headers["Content-Type"] == "image/jpeg"
    assert call(server, "GET", path).body == r.body  # stored: the same bytes every time


def test_the_query_api_works_on_stored_images(server, photo):
    base = f"/images/{photo.json['id']}"
    r = call(server, "GET", f"{base}?w=30&h=20&mode=fill&fmt=webp&exif=1")
    assert r.status == 200 and r.headers["Content-Type"] == "image/webp"
    img = decoded(r.body)
    assert img.size == (30, 20) and not img.getexif() and b"GPS" not in r.body  # private, whatever exif= says
    bad = call(server, "GET", f"{base}?w=30&mode=bogus")
    assert bad.status == 400 and bad.json["error_code"] == 5  # the query API's own error
    assert call(server, "GET", f"{base}?url=http://127.0.0.1/x.jpg&w=10").status == 400


def test_unknown_variants_and_ids_are_404(server, photo):
    image_id = photo.json["id"]
    assert call(server, "GET", f"/images/{image_id}/nosuchvariant").status == 404
    assert call(server, "GET", "/images/" + "A" * 22).status == 404
    assert call(server, "GET", "/images/" + "A" * 22 + "/thumbnail").status == 404
    assert call(server, "GET", "/images/../../etc/passwd").status == 404
    assert call(server, "GET", f"/images/{image_id}/0x0").status == 404


# --- delete and browse ---------------------------------------------------------------------------

def test_delete_removes_everything(server, backend):
    image_id = upload(server, camera_jpeg()).json["id"]
    urls = [f"/images/{image_id}{s}" for s in ("", "/original", "/thumbnail", "/240x160", "?w=20&h=20")]
    assert all(call(server, "GET", u).status == 200 for u in urls)
    assert "240x160.jpg" in backend.keys(image_id) and "original.jpg" in backend.keys(image_id)
    r = call(server, "DELETE", f"/images/{image_id}")
    assert r.status == 204 and r.body == b""
    assert [call(server, "GET", u).status for u in urls] == [404] * len(urls)
    assert call(server, "DELETE", f"/images/{image_id}").status == 404
    assert backend.keys(image_id) == []


def test_browsing_in_upload_order(tmp_path_factory):
    # Browsing reads the records alone (SQLite here, Redis in the two-node test below):
    # the blob backend takes no part, so one backend will do.
    proxy = start(tmp_path_factory, files_backend(tmp_path_factory))  # an empty store of its own
    try:
        assert call(proxy, "GET", "/images/random").status == 404
        ids = [upload(proxy, png((10 + i, 10)), f"?title=n{i}").json["id"] for i in range(5)]
        page = call(proxy, "GET", "/images?limit=2").json
        assert [i["id"] for i in page["images"]] == ids[:2] and page["next"] == ids[1]
        assert page["images"][0] == {"id": ids[0], "width": 10, "height": 10, "format": "png", "title": "n0",
                                     "created": page["images"][0]["created"]}
        page = call(proxy, "GET", f"/images?after={ids[1]}&limit=3").json
        assert [i["id"] for i in page["images"]] == ids[2:] and page["next"] is None
        assert call(proxy, "GET", f"/images/{ids[2]}/next").json == {"id": ids[3]}
        assert call(proxy, "GET", f"/images/{ids[2]}/previous").json == {"id": ids[1]}
        assert call(proxy, "GET", f"/images/{ids[4]}/next").status == 404
        assert call(proxy, "GET", f"/images/{ids[0]}/previous").status == 404
        assert {call(proxy, "GET", "/images/random").json["id"] for _ in range(30)} <= set(ids)
        call(proxy, "DELETE", f"/images/{ids[3]}")
        assert call(proxy, "GET", f"/images/{ids[2]}/next").json == {"id": ids[4]}
        assert call(proxy, "GET", "/images?limit=0").status == 400
        assert call(proxy, "GET", "/images?after=" + "B" * 22).status == 404
    finally:
        proxy.stop()


# --- settings --------------------------------------------------------------------------------

def test_restricted_sizes_signatures_and_public_browsing(tmp_path_factory):
    backend = files_backend(tmp_path_factory)
    proxy = start(tmp_path_factory, backend, "--client_key=k1", "--store_sizes=240x160,75x75!",
                  "--store_public_browsing", "--format=auto")
    try:
        image_id = upload(proxy, camera_jpeg()).json["id"]
        base = f"/images/{image_id}"
        # format = auto: sizes are negotiated (and stored once per format)
        webp = call(proxy, "GET", f"{base}/240x160", headers={"Accept": "image/webp,*/*"}, token=None)
        jpeg = call(proxy, "GET", f"{base}/240x160", headers={"Accept": "image/jpeg"}, token=None)
        assert (webp.headers["Content-Type"], jpeg.headers["Content-Type"]) == ("image/webp", "image/jpeg")
        assert webp.headers["Vary"] == "Accept" and webp.headers["ETag"] != jpeg.headers["ETag"]
        assert decoded(webp.body).size == decoded(jpeg.body).size == (120, 160)
        # a variant has one format: no negotiation
        assert call(proxy, "GET", f"{base}/large", headers={"Accept": "image/webp"}).headers["Content-Type"] == \
            "image/jpeg"
        assert call(proxy, "GET", f"{base}/thumbnail", token=None).status == 200  # variants are named
        refused = call(proxy, "GET", f"{base}/100x100", token=None)
        assert refused.status == 403 and "240x160" in refused.json["error"]
        signed = sign_path("k1", f"{base}/100x100")
        assert decoded(call(proxy, "GET", signed, token=None).body).size == (75, 100)
        assert call(proxy, "GET", f"{base}/100x100?sig=00", token=None).status == 403
        # the query API is signed over the path, so a signature binds the ID
        assert call(proxy, "GET", f"{base}?w=20&h=20", token=None).status == 403
        query = "w=20&h=20"
        ok = call(proxy, "GET", sign_path("k1", base, query), token=None)
        assert decoded(ok.body).size == (20, 20)
        other = upload(proxy, png()).json["id"]
        stolen = sign_path("k1", base, query).partition("?")[2]
        assert call(proxy, "GET", f"/images/{other}?{stolen}").status == 403
        assert call(proxy, "GET", "/images", token=None).status == 200  # public browsing
        assert call(proxy, "GET", "/images/random", token=None).status == 200
    finally:
        proxy.stop()


def test_signed_reads(tmp_path_factory):
    backend = files_backend(tmp_path_factory)
    proxy = start(tmp_path_factory, backend, "--client_key=k1", "--store_signed_reads",
                  "--max_upload_bytes=3000000")
    try:
        noise = Image.frombytes("RGB", (1000, 800), os.urandom(1000 * 800 * 3))
        out = io.BytesIO()
        noise.save(out, "PNG")
        assert 2_000_000 < len(out.getvalue()) < 3_000_000  # over the 1 MiB other routes take
        assert upload(proxy, out.getvalue()).status == 201
        path = upload(proxy, png()).headers["Location"]
        for suffix in ("", "/original", "/thumbnail", "/20x20"):
            assert call(proxy, "GET", path + suffix, token=None).status == 403, suffix
            signed = sign_path("k1", path + suffix)
            assert call(proxy, "GET", signed, token=None).status == 200, suffix
    finally:
        proxy.stop()


def test_records_survive_a_restart(tmp_path_factory):
    # What a restart could lose is the records (S3 blobs read by a server that did not write
    # them: the two-node test below)
    backend = files_backend(tmp_path_factory)
    db = tmp_path_factory.mktemp("db") / "store.sqlite3"
    proxy = start(tmp_path_factory, backend, db=str(db))
    image_id = upload(proxy, png()).json["id"]
    proxy.stop()
    proxy = start(tmp_path_factory, backend, db=str(db))
    try:
        assert call(proxy, "GET", f"/images/{image_id}").json["state"] == "ready"
        assert decoded(call(proxy, "GET", f"/images/{image_id}/thumbnail").body).size == (50, 40)
    finally:
        proxy.stop()


def test_two_nodes_share_an_s3_store_and_redis_records(tmp_path_factory, moto):
    redis, port = start_redis(tmp_path_factory.mktemp("redis"))
    backend = s3_backend(moto)
    meta = f"--store_meta_url=redis://127.0.0.1:{port}/0"
    nodes = [start(tmp_path_factory, backend, meta), start(tmp_path_factory, backend, meta)]
    try:
        first = upload(nodes[0], camera_jpeg()).json
        second = upload(nodes[1], png()).json
        assert call(nodes[1], "GET", f"/images/{first['id']}").json == first
        assert call(nodes[0], "GET", f"/images/{first['id']}/next").json == {"id": second["id"]}
        assert call(nodes[1], "GET", first["variants"]["thumbnail"]["url"]).status == 200
        listed = call(nodes[1], "GET", "/images").json
        assert [i["id"] for i in listed["images"]] == [first["id"], second["id"]]
        assert call(nodes[0], "DELETE", f"/images/{second['id']}").status == 204
        assert call(nodes[1], "GET", f"/images/{second['id']}").status == 404
        assert backend.keys(second["id"]) == []
    finally:
        for node in nodes:
            node.stop()
        stop_redis(redis)


def test_a_wrong_s3_secret_fails_uploads_not_the_server(tmp_path_factory, moto):
    backend = s3_backend(moto)
    backend.env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    proxy = start(tmp_path_factory, backend)
    try:
        r = upload(proxy, png())
        assert r.status >= 500 and r.json["error"]
        assert call(proxy, "GET", "/health").status == 200
    finally:
        proxy.stop()


SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="200">'
       b'<rect width="300" height="200" fill="#d01010"/><rect width="75" height="50" fill="#10d010"/></svg>')


def test_an_svg_is_drawn_safely_for_its_variants(server):
    r = upload(server, SVG, "?title=logo")
    assert r.status == 201, r.body
    doc = r.json
    assert (doc["format"], doc["width"], doc["height"], doc["state"]) == ("svg", 300, 200, "ready")
    expected = {"thumbnail": (150, 100, "webp"), "medium": (300, 200, "webp"), "large": (300, 200, "png")}
    assert {n: (v["width"], v["height"], v["format"]) for n, v in doc["variants"].items()} == expected
    for name, (width, height, fmt) in expected.items():
        img = decoded(call(server, "GET", doc["variants"][name]["url"]).body)
        assert img.size == (width, height) and img.format == fmt.upper()
        assert close_to(img.convert("RGB").getpixel((width - 5, height - 5)), (208, 16, 16))
        assert close_to(img.convert("RGB").getpixel((3, 3)), (16, 208, 16))
    size = call(server, "GET", f"/images/{doc['id']}/60x60!")
    assert decoded(size.body).size == (60, 60) and size.headers["Content-Type"] == "image/png"
    original = call(server, "GET", doc["url"])
    assert original.body == SVG and original.headers["Content-Type"] == "image/svg+xml"
    assert original.headers["Content-Security-Policy"] == "default-src 'none'"  # never a live document


def test_an_svg_that_is_not_safe_to_draw_is_refused(server):
    unsafe = SVG.replace(b"</svg>", b"<script>alert(1)</script></svg>")
    r = upload(server, unsafe)
    assert r.status == 422 and r.json["error_code"] == 205


def smallest_memory_limit(tmp_path_factory) -> int:
    """The lowest worker_memory_limit start-up accepts, as its refusal of 1 byte says."""
    probe = Proxy("--workers=1", "--worker_memory_limit=1", log_path=tmp_path_factory.mktemp("probe") / "log")
    with pytest.raises(RuntimeError) as refused:
        probe.start()
    return int(re.search(r"use at least ([0-9]+)", str(refused.value)).group(1))


def test_variants_that_keep_failing_leave_the_original_and_say_failed(tmp_path_factory):
    """A variant whose worker runs out of memory (502, a passing failure) goes to the queue and
    is tried again, job_max_attempts times in all; then the state is failed, and the original stays."""
    backend = files_backend(tmp_path_factory)
    limit = smallest_memory_limit(tmp_path_factory)  # an idle worker and 128 MiB more
    proxy = start(tmp_path_factory, backend, f"--worker_memory_limit={limit}", "--job_max_attempts=2",
                  "--max_upload_bytes=5000000", "--job_lease_seconds=1")
    try:
        big = io.BytesIO()  # 48 MP: 144 MB of pixels to decode, a few kB of header to read first
        Image.new("RGB", (8000, 6000), (128, 64, 32)).save(big, "TIFF", compression="tiff_deflate")
        r = upload(proxy, big.getvalue())
        assert r.status == 202, r.body  # the original is stored; its variants are queued again
        doc = r.json
        assert doc["state"] == "pending" and doc["statusURL"] == f"/images/{doc['id']}"
        done = wait_ready(proxy, doc["id"], timeout=60)
        assert done["state"] == "failed" and "more memory" in done["error"], proxy.log()
        assert call(proxy, "GET", done["url"]).body == big.getvalue()
    finally:
        proxy.stop()


def test_a_server_killed_while_making_variants_finishes_them_after_a_restart(tmp_path_factory):
    """A synchronous upload queues its variants before making them: killed half-way, the next
    run of the queue makes them (the bench kills at random moments: bench/store_kill.py)."""
    import signal
    import threading

    folder = tmp_path_factory.mktemp("killed")
    backend = Backend("files", (f"--store_dir={folder / 'blobs'}",), {})
    flags = (f"--job_db={folder / 'jobs.sqlite3'}", "--job_lease_seconds=1", "--max_upload_bytes=5000000")
    proxy = start(tmp_path_factory, backend, *flags, db=str(folder / "store.sqlite3"))
    big = io.BytesIO()  # seconds to decode (no reduced-size decoding for WebP), a moment to identify
    Image.new("RGB", (6000, 4000), (30, 90, 200)).save(big, "WEBP", lossless=True)
    threading.Thread(target=lambda: call_quietly(proxy, big.getvalue()), daemon=True).start()
    deadline = time.monotonic() + 30
    listed = []
    while not listed and time.monotonic() < deadline:
        listed = call(proxy, "GET", "/images").json["images"]
        time.sleep(0.01)
    assert listed, "the upload never got a record"
    image_id = listed[0]["id"]
    assert call(proxy, "GET", f"/images/{image_id}").json["state"] == "pending"
    proxy.process.send_signal(signal.SIGKILL)  # no graceful stop: the variants are never finished here
    proxy.process.wait(10)
    proxy = start(tmp_path_factory, backend, *flags, db=str(folder / "store.sqlite3"))
    try:
        done = wait_ready(proxy, image_id, timeout=60)
        assert done["state"] == "ready", proxy.log()
        assert decoded(call(proxy, "GET", done["variants"]["thumbnail"]["url"]).body).size == (150, 100)
    finally:
        proxy.stop()


def call_quietly(proxy: Proxy, body: bytes) -> None:
    try:
        upload(proxy, body)
    except OSError:  # the server is killed under it
        pass


def metric(proxy: Proxy, name: str) -> float:
    text = call(proxy, "GET", "/metrics").body.decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_originals_are_loaded_like_any_source(server, photo):
    """Through the render service's loader: counted as fetched, kept in the cache of originals."""
    base = f"/images/{photo.json['id']}"
    fetched, hits = metric(server, "imgproxy_fetched_bytes_total"), metric(
        server, 'imgproxy_source_cache_requests_total{result="hit"}')
    for size in ("31x31", "32x32", "33x33!"):
        assert call(server, "GET", f"{base}/{size}").status == 200
    assert metric(server, "imgproxy_fetched_bytes_total") - fetched == 3 * photo.json["bytes"]
    assert metric(server, 'imgproxy_source_cache_requests_total{result="hit"}') - hits >= 2


def test_store_requests_are_counted(server, photo):
    ok = 'imgproxy_requests_total{op="store",status="200"}'
    missing = 'imgproxy_requests_total{op="store",status="404"}'
    before = metric(server, ok), metric(server, missing)
    call(server, "GET", f"/images/{photo.json['id']}/thumbnail")
    call(server, "GET", "/images/" + "Z" * 22)
    assert (metric(server, ok) - before[0], metric(server, missing) - before[1]) == (1, 1)


def test_store_references_are_the_store_s_own(server, photo):
    """Only the store makes store: references: the query API refuses one as a source URL."""
    image_id = photo.json["id"]
    ref = f"store:{image_id[:2]}/{image_id}/original.jpg"
    r = call(server, "GET", f"/?url={ref}&w=10", token=None)
    assert r.status == 400 and r.json["error_code"] == 8
