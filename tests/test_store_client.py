"""The Python helpers (imgproxy.store.client) against a real server: their width and height
are the served bytes' size, their tags are escaped and offer 2x only when it is one, and
they sign exactly the sizes that need it."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from html.parser import HTMLParser

import pytest
from PIL import Image
from support import decode, encode, quadrants, readme_block

from imgproxy.store.client import StoreClient, StoreError, doubled, slug

TOKEN = "store-token"
KEY = "k"
TITLE = """Ça <"&'> red bicycle"""

# 20 sizes: fits, crops (!), one side (W x 0, 0 x H), larger than the images (never enlarged)
SIZES = ["240x160", "160x240", "75x75!", "100x100", "100x100!", "300x0", "0x300", "1x1", "1x1!", "50x50!",
         "640x428", "800x800", "1000x1000!", "333x0", "0x99", "123x45!", "45x123!", "399x599", "200x50", "17x0"]


def store_flags(tmp, *extra: str) -> tuple[str, ...]:
    return (f"--store_dir={tmp / 'store'}", f"--store_token={TOKEN}", f"--store_db={tmp / 'store.sqlite3'}",
            f"--job_db={tmp / 'jobs.sqlite3'}", *extra)


def base(proxy) -> str:
    return f"http://127.0.0.1:{proxy.port}"


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def served_size(url: str) -> tuple[int, int]:
    status, body = fetch(url)
    assert status == 200, (url, body[:200])
    return decode(body).size


def turned_jpeg() -> bytes:
    """600x400 pixels that EXIF orientation 6 shows as 400x600."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(quadrants((600, 400)), "JPEG", exif=exif.tobytes())


def tag_attributes(tag: str) -> dict[str, str]:
    found: list[dict] = []

    class Parser(HTMLParser):
        def handle_starttag(self, name, attrs):
            assert name == "img"
            found.append(dict(attrs))

    Parser().feed(tag)
    assert len(found) == 1, tag
    return found[0]


# --- an open server: any size, no key --------------------------------------------------

@pytest.fixture(scope="module")
def flag_sets(shared_proxy, tmp_path_factory):
    """The module's three servers' flags, launched side by side (a start takes seconds)."""
    sets = {
        "open": store_flags(tmp_path_factory.mktemp("store-client")),
        "signing": store_flags(tmp_path_factory.mktemp("store-client-signed"), f"--client_key={KEY}",
                               "--store_sizes=240x160", "--store_serve_original=false"),
        "reads": store_flags(tmp_path_factory.mktemp("store-client-reads"), f"--client_key={KEY}",
                             "--store_signed_reads"),
    }
    shared_proxy.warm(*sets.values())
    return sets


@pytest.fixture(scope="module")
def server(shared_proxy, flag_sets):
    return shared_proxy(*flag_sets["open"])


@pytest.fixture(scope="module")
def client(server):
    return StoreClient(base(server), token=TOKEN)


@pytest.fixture(scope="module")
def images(client, tmp_path_factory):
    """name -> (id, displayed size), uploaded once: as bytes, from a path, with and without title."""
    path = tmp_path_factory.mktemp("uploads") / "odd.png"
    path.write_bytes(encode(quadrants((997, 661)), "PNG"))
    uploads = {
        "wide": (encode(quadrants()), TITLE, (640, 428)),
        "turned": (turned_jpeg(), "Turned", (400, 600)),
        "small": (encode(quadrants((50, 40)), "PNG"), None, (50, 40)),
        "odd": (path, "odd one", (997, 661)),
    }
    found = {}
    for name, (data, title, size) in uploads.items():
        doc = client.upload(data, title=title)
        assert doc["state"] == "ready" and (doc["width"], doc["height"]) == size
        assert doc["title"] == title
        found[name] = doc["id"]
    return found


@pytest.mark.parametrize("size", SIZES)
def test_dimensions_are_the_served_images_size(client, images, size):
    for name, image_id in images.items():
        expected = client.scaled_dimensions(image_id, size)
        assert served_size(client.scaled_imageurl(image_id, size)) == expected, (name, size)


def test_an_svg_is_served_at_the_predicted_size_as_png(client):
    svg = (b'<svg xmlns="http://www.w3.org/2000/svg" width="300" height="200">'
           b'<rect width="300" height="200" fill="#d01010"/></svg>')
    image_id = client.upload(svg, title="logo")["id"]
    for size in ("100x100", "90x90!", "0x50", "600x600"):
        url = client.scaled_imageurl(image_id, size)
        assert url.endswith(f"/{size}/logo.png")
        assert served_size(url) == client.scaled_dimensions(image_id, size), size


def test_sizes_never_enlarge(client, images):
    assert client.scaled_dimensions(images["small"], "800x800") == (50, 40)
    assert client.scaled_dimensions(images["small"], "300x0") == (50, 40)
    assert client.scaled_dimensions(images["small"], "100x100!") == (40, 40)  # a crop keeps its shape
    assert client.scaled_dimensions(images["turned"], "240x160") == (107, 160)  # displayed, upright


def test_urls_name_the_file_after_the_title(client, images):
    url = client.scaled_imageurl(images["wide"], "75x75!")
    assert url == f"{client.base_url}/images/{images['wide']}/75x75!/ca-red-bicycle.jpg"
    assert client.scaled_imageurl(images["odd"], "240x160").endswith("/240x160/odd-one.png")
    assert client.scaled_imageurl(images["small"], "20x20").endswith(f"/{images['small']}/20x20")  # no title
    assert slug("  Ünïcode — and <tags>! ") == "unicode-and-tags"


def test_imageurl_is_the_original(client, images):
    url = client.imageurl(images["turned"])
    assert url.endswith(f"/images/{images['turned']}/original/turned.jpg")
    status, body = fetch(url)
    assert status == 200 and body == turned_jpeg()


@pytest.mark.parametrize("name, size, has_2x", [
    ("wide", "240x160", True),      # 480x320 fits in 640x428
    ("wide", "300x300", True),      # a fit needs only its deciding side: 428 >= 600? no, 640 >= 600
    ("wide", "400x300", False),     # 800x600: larger both ways
    ("wide", "75x75!", True),       # 150x150! crop
    ("wide", "320x220!", False),    # 640x440!: 428 high is too short for a crop
    ("small", "20x20!", True),      # 40x40! from 50x40
    ("small", "30x30!", False),
    ("small", "25x0", True),
    ("turned", "0x300", True),      # displayed 400x600: its height is 600
    ("turned", "300x0", False),     # 600 wide would be enlarged
])
def test_tag(client, images, name, size, has_2x):
    image_id = images[name]
    tag = client.scaled_tag(image_id, size)
    attrs = tag_attributes(tag)
    width, height = client.scaled_dimensions(image_id, size)
    assert attrs["src"] == client.scaled_imageurl(image_id, size)
    assert (attrs["width"], attrs["height"]) == (str(width), str(height))
    assert attrs["alt"] == (client.info(image_id)["title"] or "")
    assert ("srcset" in attrs) == has_2x
    if has_2x:
        url, density = attrs["srcset"].rsplit(" ", 1)
        assert density == "2x" and url == client.scaled_imageurl(image_id, doubled(size))
        w2, h2 = served_size(url)  # really twice the 1x, to the pixel the rounding allows
        assert abs(w2 - 2 * width) <= 1 and abs(h2 - 2 * height) <= 1, (w2, h2, width, height)


def test_tag_escapes_everything(client, images):
    tag = client.scaled_tag(images["wide"], "240x160")
    assert 'alt="Ça &lt;&quot;&amp;&#x27;&gt; red bicycle"' in tag
    assert tag.count("<") == 1 and tag.count(">") == 1
    tag = client.scaled_tag(images["wide"], "240x160", alt='"><script>', class_="a&b")
    assert tag_attributes(tag)["alt"] == '"><script>' and tag_attributes(tag)["class"] == "a&b"
    assert "<script>" not in tag


def test_unknown_ids_and_sizes_are_value_errors(client, images):
    for bad in ("0x0", "240", "240x160!!", "-1x5", "240X160"):
        with pytest.raises(ValueError):
            client.scaled_dimensions(images["wide"], bad)
        with pytest.raises(ValueError):
            client.scaled_imageurl(images["wide"], bad)
    with pytest.raises(ValueError):
        client.info("../../etc/passwd")


def test_info_is_cached_until_deleted(client, server):
    image_id = client.upload(encode(quadrants((64, 48))))["id"]
    other = StoreClient(base(server), token=TOKEN)
    assert other.info(image_id)["width"] == 64
    client.delete(image_id)  # by another client: `other` still has it in its cache
    assert other.scaled_dimensions(image_id, "32x32") == (32, 24)
    with pytest.raises(StoreError) as e:
        client.info(image_id)  # the deleting client dropped it
    assert e.value.status == 404 and "No such image" in e.value.reason
    other.forget(image_id)
    with pytest.raises(StoreError):
        other.info(image_id)


def test_cache_is_bounded(server, images):
    small = StoreClient(base(server), cache_size=2)
    for image_id in images.values():
        small.info(image_id)
    assert list(small._cache) == list(images.values())[-2:]


def test_background_upload_is_pending_then_ready(client):
    doc = client.upload(encode(quadrants((300, 200))), title="later", background=True)
    assert doc["state"] == "pending"
    assert client.scaled_dimensions(doc["id"], "150x150") == (150, 100)  # known before the variants
    deadline = time.monotonic() + 20
    while client.info(doc["id"])["state"] == "pending" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.info(doc["id"])["state"] == "ready"


def test_server_errors_carry_status_and_reason(server):
    with pytest.raises(StoreError) as e:
        StoreClient(base(server), token="wrong").upload(encode(quadrants((8, 8))))
    assert e.value.status == 401 and "token" in e.value.reason
    with pytest.raises(StoreError) as e:
        StoreClient(base(server), token=TOKEN).upload(b"not an image")
    assert 400 <= e.value.status < 500 and e.value.error_code is not None and e.value.reason
    with pytest.raises(ValueError):
        StoreClient(base(server)).upload(b"x")  # no token: not even sent


# --- a server with a key and a list of sizes, originals not served ----------------------

@pytest.fixture(scope="module")
def signing_server(shared_proxy, flag_sets):
    return shared_proxy(*flag_sets["signing"])


@pytest.fixture(scope="module")
def signed_image(signing_server):
    return StoreClient(base(signing_server), token=TOKEN).upload(encode(quadrants()), title="Signed")["id"]


def test_a_key_signs_sizes_outside_the_list(signing_server, signed_image):
    keyed = StoreClient(base(signing_server), client_key=KEY, sizes=["240x160"])
    url = keyed.scaled_imageurl(signed_image, "100x100")
    assert "?sig=" in url
    assert served_size(url) == keyed.scaled_dimensions(signed_image, "100x100") == (100, 67)
    assert "sig=" not in keyed.scaled_imageurl(signed_image, "240x160")  # listed: no need
    tag = tag_attributes(keyed.scaled_tag(signed_image, "240x160"))
    assert "sig=" in tag["srcset"]
    assert served_size(tag["srcset"].split()[0]) == keyed.scaled_dimensions(signed_image, "480x320")


def test_without_a_key_only_listed_sizes(signing_server, signed_image):
    plain = StoreClient(base(signing_server), sizes=["240x160"])
    for helper in (plain.scaled_imageurl, plain.scaled_tag):
        with pytest.raises(ValueError):
            helper(signed_image, "100x100")
    url = plain.scaled_imageurl(signed_image, "240x160")
    assert served_size(url) == plain.scaled_dimensions(signed_image, "240x160")
    assert "srcset" not in tag_attributes(plain.scaled_tag(signed_image, "240x160"))  # 480x320 needs a key
    assert fetch(url.replace("/240x160/", "/100x100/"))[0] == 403  # unsigned
    wrong = StoreClient(base(signing_server), client_key="not-k", sizes=["240x160"])
    assert fetch(wrong.scaled_imageurl(signed_image, "100x100"))[0] == 403


def test_imageurl_without_originals_is_the_largest_variant(signing_server, signed_image):
    plain = StoreClient(base(signing_server))
    url = plain.imageurl(signed_image)
    assert url.endswith(f"/images/{signed_image}/large/signed.jpg")
    assert served_size(url) == (640, 428)


def test_signed_reads_sign_every_read(shared_proxy, flag_sets):
    server = shared_proxy(*flag_sets["reads"])
    image_id = StoreClient(base(server), token=TOKEN).upload(encode(quadrants()), title="Read")["id"]
    with pytest.raises(StoreError) as e:
        StoreClient(base(server)).info(image_id)
    assert e.value.status == 403
    reader = StoreClient(base(server), client_key=KEY, signed_reads=True)
    assert reader.info(image_id)["width"] == 640
    assert fetch(reader.imageurl(image_id))[0] == 200
    url = reader.scaled_imageurl(image_id, "240x160")
    assert "sig=" in url and served_size(url) == reader.scaled_dimensions(image_id, "240x160")
    with pytest.raises(ValueError):
        StoreClient(base(server), signed_reads=True)  # nothing to sign with


def test_the_readme_example_runs(signing_server, tmp_path, monkeypatch):
    code = readme_block("# imgproxy: store helpers")
    for old, new in (("https://img.example.com", base(signing_server)), ("the-store-token", TOKEN),
                     ("the-client-key", KEY)):
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "red-bicycle.jpg").write_bytes(encode(quadrants((960, 640))))
    names: dict = {}
    exec(code, names)
    store, image_id = names["store"], names["image_id"]
    assert store.scaled_dimensions(image_id, "240x160") == (240, 160)
    attrs = tag_attributes(store.scaled_tag(image_id, "240x160"))
    assert attrs["src"].endswith("/240x160/a-red-bicycle.jpg") and attrs["alt"] == "A red bicycle"
    assert served_size(attrs["src"]) == (240, 160)
    assert served_size(attrs["srcset"].removesuffix(" 2x")) == (480, 320)
