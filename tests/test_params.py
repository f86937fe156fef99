"""Query parsing and validation: every Pilbox error code, in Pilbox's order."""

import pickle

import pytest

from imgproxy import security
from imgproxy.config import Settings, load
from imgproxy.errors import ProxyError
from imgproxy.options import values
from imgproxy.options.build import build_plan
from imgproxy.options.query import parse_query
from imgproxy.plan import Noop, Region, Resize, Rotate
from imgproxy.render import imaging_settings

URL = "http://example.com/a.jpg"


def source_and_plan(query: str, settings: Settings | None = None):
    """What the image handler does with a query: its first checks, then the plan."""
    s = settings or Settings()
    args = parse_query(query)
    _, url, options = security.check_image_request(args, query, s)
    return url, build_plan(options, s)


def plan(query: str, settings: Settings | None = None):
    return source_and_plan(query, settings)[1]


def error(query: str, settings: Settings | None = None) -> tuple[int, int]:
    with pytest.raises(ProxyError) as e:
        plan(query, settings)
    assert "\n" not in e.value.reason
    return e.value.status, e.value.code


@pytest.mark.parametrize("query, code", [
    (f"url={URL}&w=10&bg=ggg", 1),
    (f"url={URL}&w=10&bg=12345", 1),
    (f"url={URL}&w=abc", 2),
    (f"url={URL}&w=0", 2),
    (f"url={URL}&w=-5", 2),
    (f"url={URL}&w=1.5", 2),
    (f"url={URL}&w=%2B5", 2),
    (f"url={URL}&w=1_0", 2),
    (f"url={URL}&w=15001", 2),
    (f"url={URL}&h=15001", 2),
    (f"url={URL}", 2),
    (f"url={URL}&w=10&filter=sharp", 3),
    (f"url={URL}&w=10&fmt=bmp", 4),
    (f"url={URL}&w=10&mode=stretch", 5),
    (f"url={URL}&w=10&pos=middle", 6),
    (f"url={URL}&w=10&pos=1.5,0", 6),
    (f"url={URL}&w=10&q=0", 7),
    (f"url={URL}&w=10&q=100", 7),
    (f"url={URL}&w=10&q=high", 7),
    ("url=", 8),
    ("w=10", 8),
    ("url=ftp://example.com/a.jpg&w=10", 8),
    ("url=file:///etc/passwd&w=10", 8),
    ("url=/a.jpg&w=10", 8),
    (f"url={URL}&op=rotate", 9),
    (f"url={URL}&op=rotate&deg=360", 9),
    (f"url={URL}&op=rotate&deg=-90", 9),
    (f"url={URL}&op=rotate&deg=ninety", 9),
    (f"url={URL}&op=rotate&deg=90&expand=yes", 9),
    (f"url={URL}&op=crop", 10),
    (f"url={URL}&op=", 10),
    (f"url={URL}&op=resize,", 10),
    (f"url={URL}&op=region", 11),
    (f"url={URL}&op=region&rect=1,2,3", 11),
    (f"url={URL}&op=region&rect=-1,0,10,10", 11),
    (f"url={URL}&op=region&rect=0,0,0,10", 11),
    (f"url={URL}&w=10&opt=yes", 12),
    (f"url={URL}&w=10&prog=yes", 13),
    (f"url={URL}&w=10&retain=0", 14),
    (f"url={URL}&w=10&retain=100", 14),
    (f"url={URL}&w=10&exif=yes", 15),
])
def test_every_error_code(query, code):
    assert error(query) == (400, code)


def test_order_op_before_url_before_dimensions():
    assert error("op=bad&w=abc") == (400, 10)  # op first, even with no url
    assert error("url=ftp://x/y&w=abc") == (400, 8)  # url before w/h
    assert error(f"url={URL}&w=abc&mode=bad&bg=zz") == (400, 2)  # w/h before options
    assert error(f"url={URL}&op=rotate,region&deg=abc&rect=x") == (400, 9)  # deg before rect
    # options in Pilbox's order: mode, filter, format, position, bg, opt, q, exif, prog, retain
    assert error(f"url={URL}&w=1&mode=x&filter=x&fmt=x") == (400, 5)
    assert error(f"url={URL}&w=1&filter=x&fmt=x&pos=x") == (400, 3)
    assert error(f"url={URL}&w=1&fmt=x&pos=x&bg=x") == (400, 4)
    assert error(f"url={URL}&w=1&pos=x&bg=x") == (400, 6)
    assert error(f"url={URL}&w=1&bg=x&opt=x") == (400, 1)
    assert error(f"url={URL}&w=1&opt=x&q=x") == (400, 12)
    assert error(f"url={URL}&w=1&q=x&exif=x") == (400, 7)
    assert error(f"url={URL}&w=1&exif=x&prog=x") == (400, 15)
    assert error(f"url={URL}&w=1&prog=x&retain=x") == (400, 13)


def test_resize_options_checked_only_when_resizing_but_save_options_always():
    p = plan(f"url={URL}&op=rotate&deg=90&mode=bogus&filter=bogus&pos=bogus&retain=bogus")
    assert p.operations == (Rotate(90, False, None),)
    assert error(f"url={URL}&op=rotate&deg=90&fmt=bogus") == (400, 4)
    assert error(f"url={URL}&op=noop&q=bogus") == (400, 7)


def test_too_many_and_disallowed_operations():
    s = Settings(max_operations=2)
    assert error(f"url={URL}&op=rotate,rotate,rotate&deg=90", s) == (400, 10)
    s = load(["--allowed_operations=resize"])
    assert error(f"url={URL}&op=rotate&deg=90", s) == (400, 10)
    assert plan(f"url={URL}&w=5", s).operations[0].width == 5


def test_full_plan_is_typed_and_small():
    p = plan(f"url={URL}&op=region,resize,rotate&rect=1,2,30,40&w=20&h=10&mode=fill"
             "&filter=nearest&pos=0.25,0.75&bg=80102030&retain=60&deg=45&expand=1"
             "&fmt=jpg&q=keep&opt=1&prog=1&exif=1&unknown=ignored")
    assert source_and_plan(f"url={URL}&w=1")[0] == URL
    assert p.operations == (
        Region(1, 2, 30, 40),
        Resize(20, 10, "fill", "nearest", (0.25, 0.75), 60, (0x10, 0x20, 0x30, 0x80)),
        Rotate(45, True, (0x10, 0x20, 0x30, 0x80)),
    )
    assert p.save.format == "JPEG" and p.save.quality == "keep"
    assert p.save.optimize and p.save.progressive and p.save.preserve_exif
    assert pickle.loads(pickle.dumps(p)) == p
    assert len(pickle.dumps(p)) < 1024


def test_defaults_come_from_settings():
    s = load(["--mode=clip", "--quality=70", "--background=ccc", "--position=face",
              "--format=png", "--operation=resize"])
    p = plan(f"url={URL}&w=10", s)
    assert p.operations == (Resize(10, None, "clip", "antialias", "face", 75, (204, 204, 204, 255)),)
    # Default qualities are read from the settings where the encoder uses them.
    imaging = imaging_settings(s)
    assert p.save.quality is None and p.save.format == "PNG"
    assert imaging.quality_for(p.save.quality, "JPEG") == 70
    assert imaging.quality_for(p.save.quality, "WEBP") == s.quality_webp
    assert imaging.quality_for(p.save.quality, "AVIF") == s.quality_avif
    assert imaging.quality_for(plan(f"url={URL}&w=10&q=20", s).save.quality, "WEBP") == 20  # the query wins
    assert plan(f"url={URL}&w=10", load(["--quality=keep"])).save.quality == "keep"


def test_background_forms():
    assert values.parse_background("fff") == (255, 255, 255, 255)
    assert values.parse_background("0fff") == (255, 255, 255, 0)
    assert values.parse_background("123456") == (0x12, 0x34, 0x56, 255)
    assert values.parse_background("80123456") == (0x12, 0x34, 0x56, 0x80)


def test_positions_and_auto_rotation():
    assert values.parse_position("bottom-right") == (1.0, 1.0)
    assert values.parse_position("0.0,0.75") == (0.0, 0.75)
    assert values.parse_position("face") == "face"
    assert plan(f"url={URL}&op=rotate&deg=auto").operations == (Rotate(None, False, None),)
    assert plan(f"url={URL}&op=noop").operations == (Noop(),)


@pytest.mark.parametrize("url", [
    "http://user:pw@example.com/a.jpg",
    "http://example.com\\@evil.com/a.jpg",
    "http://example.com/a b.jpg",
    "http://example.com/a.jpg\r\nX-Injected: 1",
    "http://example.com/a\x00.jpg",
    "http://example.com/a\t.jpg",
    "http:///a.jpg",
    "http://2130706433/a.jpg",
    "http://0x7f000001/a.jpg",
    "http://0177.0.0.1/a.jpg",
    "http://127.1/a.jpg",
    "http://example.com:99999/a.jpg",
    "http://example.com/" + "a" * 2048,
])
def test_hostile_urls_are_refused(url):
    from urllib.parse import quote
    assert error(f"url={quote(url, safe='')}&w=10") == (400, 8)


def test_implicit_base_url():
    s = Settings(implicit_base_url="http://images.example.com/base/")
    # A path on the origin (here implicit_base_url), joined below its path by the loader.
    assert source_and_plan("url=/cats/a.jpg&w=10", s)[0] == "/cats/a.jpg"
    assert error("url=/../secret.png&w=10", s) == (400, 8)
    assert error("url=//evil.com/a.jpg&w=10", s) == (400, 8)
