"""Result keys, ETags and conditional requests: named by what was decided, over real HTTP."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

import pytest
from PIL import Image
from support import IMAGING, decode, encode, quadrants

from imgproxy.config import Settings
from imgproxy.delivery.conditional import etag_matches
from imgproxy.delivery.keys import make_etag, result_key
from imgproxy.delivery.negotiate import accepted, choose_format
from imgproxy.options.build import build_plan
from imgproxy.options.query import parse_query
from imgproxy.plan import AUTO, Plan, Resize, Save

JPEG = encode(quadrants(), "JPEG")
URL = "http://127.0.0.1/a.jpg"


def key(query: str, accept: str | None = None) -> str:
    plan, _ = choose_format(build_plan(parse_query(query), Settings()), accept)
    return result_key(URL, plan, IMAGING)


# --- in process: the key is the decision, not the spelling ---------------------------------

@pytest.mark.parametrize("a, b", [
    ("w=40&h=30&mode=crop&pos=center", "h=30&w=40&pos=0.5,0.5"),
    ("w=40&fmt=jpg", "w=40&fmt=jpeg"),
    ("w=40&fmt=webp&q=90", "w=40&fmt=webp"),  # 90 is WebP's default quality
    ("w=40&bg=fff", "w=40&bg=ffffff"),
    ("w=40&opt=0&prog=0&exif=0", "w=40"),
])
def test_key_is_independent_of_spelling(a, b):
    assert key(a) == key(b)


@pytest.mark.parametrize("a, b", [
    ("w=40", "w=41"),
    ("w=40&fmt=webp", "w=40&fmt=webp&q=89"),
    ("op=rotate,resize&deg=90&w=40", "op=resize,rotate&deg=90&w=40"),
    ("w=40&fmt=auto", "w=40&fmt=png"),
])
def test_key_differs_when_the_output_would(a, b):
    assert key(a) != key(b)


def test_key_follows_the_default_quality_that_applies():
    plan = build_plan(parse_query("w=40&fmt=webp"), Settings())
    other = dataclasses.replace(IMAGING, qualities=(("JPEG", 90), ("WEBP", 70), ("AVIF", 85)))
    jpeg_only = dataclasses.replace(IMAGING, qualities=(("JPEG", 90), ("WEBP", 90), ("AVIF", 50)))
    assert result_key(URL, plan, IMAGING) != result_key(URL, plan, other)
    assert result_key(URL, plan, IMAGING) == result_key(URL, plan, jpeg_only)


@pytest.mark.parametrize("accepts", [
    ["image/avif,image/webp,*/*", "image/avif", "image/webp;q=0.9, image/avif", "IMAGE/AVIF;q=1.0"],
    ["image/webp,*/*", "image/avif;q=0,image/webp", "image/webp;q=0.5"],
    ["*/*", None, "image/png,image/avif;q=0", "image/jpeg;q=0.9"],
])
def test_accept_headers_that_choose_one_format_share_a_key(accepts):
    plan = Plan((Resize(40, 30),), Save(AUTO))
    if "AVIF" not in Image.SAVE:
        pytest.skip("this Pillow cannot write AVIF")
    keys = {key("w=40&fmt=auto", accept) for accept in accepts}
    assert len(keys) == 1
    assert choose_format(plan, accepts[0])[1] is True


def test_accept_q_values_are_honoured():
    assert accepted("image/avif;q=0.5, image/webp;q=1") == ("WEBP", "AVIF")
    assert accepted("image/avif, image/webp") == ("AVIF", "WEBP")  # equal q: AVIF is smaller
    assert accepted("image/avif;q=0, image/webp;q=0.1") == ("WEBP",)
    assert accepted("image/avif;q=bogus") == ()


def test_etag_names_the_output_format_and_quality():
    explicit = build_plan(parse_query("w=40&fmt=jpeg"), Settings())
    implied = build_plan(parse_query("w=40"), Settings())
    auto = choose_format(build_plan(parse_query("w=40&fmt=auto"), Settings()), "*/*")[0]
    tags = {make_etag(URL, p, "JPEG", IMAGING, '"v1"') for p in (explicit, implied, auto)}
    assert len(tags) == 1
    assert make_etag(URL, implied, "PNG", IMAGING, '"v1"') not in tags
    assert make_etag(URL, implied, "JPEG", IMAGING, '"v2"') not in tags


def test_if_none_match_comparison_is_weak():
    assert etag_matches('W/"abc"', '"abc"')
    assert etag_matches('"x", W/"abc"', '"abc"')
    assert etag_matches("*", '"abc"')
    assert not etag_matches('"abcd"', '"abc"')
    assert not etag_matches(None, '"abc"') and not etag_matches("", '"abc"')


# --- over HTTP -----------------------------------------------------------------------------------

def test_identical_bytes_get_one_etag_however_the_format_was_asked(proxy, origin):
    url = quote(origin.serve("/one-etag.jpg", JPEG), safe="")
    replies = [proxy.get(f"url={url}&w=40&fmt=jpeg"), proxy.get(f"url={url}&w=40"),
               proxy.get(f"url={url}&w=40&fmt=auto", headers={"Accept": "image/png,*/*"})]
    assert len({r.body for r in replies}) == 1
    assert len({r.headers["ETag"] for r in replies}) == 1


def test_a_304_only_for_the_etag_of_this_very_request(proxy, origin):
    """With origin validators remembered, another image's ETag must not earn a 304."""
    a = origin.serve("/validated-a.jpg", JPEG, headers={"ETag": '"same-origin-tag"'})
    b = origin.serve("/validated-b.jpg", JPEG, headers={"ETag": '"same-origin-tag"'})
    first = proxy.get(f"url={quote(a, safe='')}&w=40")
    assert first.status == 200
    tag = first.headers["ETag"]
    for other in (f"url={quote(b, safe='')}&w=40", f"url={quote(a, safe='')}&w=41"):
        r = proxy.get(other, headers={"If-None-Match": tag})
        assert r.status == 200 and r.headers["ETag"] != tag
        assert decode(r.body).format == "JPEG"
    again = proxy.get(f"url={quote(a, safe='')}&w=40", headers={"If-None-Match": f"W/{tag}"})
    assert again.status == 304 and again.headers["ETag"] == tag


def test_revalidation_304_keeps_the_origins_caching_headers(proxy, origin):
    headers = {"ETag": '"v7"', "Cache-Control": "public, max-age=600", "Expires": "Thu, 01 Jan 2037 00:00:00 GMT"}
    state = {"conditional": 0}

    def versioned(h):
        if h.headers.get("If-None-Match") == '"v7"':
            state["conditional"] += 1
            h.send_response(304)
            h.send_header("ETag", '"v7"')
            h.end_headers()
            return
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        for name, value in headers.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(JPEG)))
        h.end_headers()
        h.wfile.write(JPEG)

    origin.routes["/revalidated.jpg"] = versioned
    query = f"url={quote(origin.url('/revalidated.jpg'), safe='')}&w=40"
    first = proxy.get(query)
    again = proxy.get(query, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and state["conditional"] == 1
    assert again.headers["Cache-Control"] == "public, max-age=600"
    assert again.headers["Expires"] == headers["Expires"]


def test_info_needs_no_operation_to_be_allowed(start_proxy, origin):
    p = start_proxy("--allowed_operations=resize")
    r = p.get(f"url={quote(origin.serve('/info-only.jpg', JPEG), safe='')}", path="/info")
    assert r.status == 200 and r.json["format"] == "JPEG"
    assert p.get(f"url={quote(origin.url('/info-only.jpg'), safe='')}&op=rotate&deg=90").status == 400
