"""imaging/svg.py in-process: sizes and pixels of what it renders, and every kind of
hostile SVG refused with its status and a one-line reason, quickly."""

from __future__ import annotations

import base64
import socket
import time
from io import BytesIO

import pytest
from PIL import Image

from imgproxy import errors
from imgproxy.errors import Code
from imgproxy.imaging import svg
from imgproxy.imaging.settings import ImagingSettings

SETTINGS = ImagingSettings(
    max_source_pixels=50_000_000, max_output_pixels=4_000_000, input_formats=("JPEG", "PNG"),
    qualities=(("JPEG", 80),), strip_gps=True)

NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
RED, BLUE, CLEAR = (255, 0, 0, 255), (0, 0, 255, 255), (0, 0, 0, 0)


def doc(body: str, size: str = 'width="40" height="20"') -> bytes:
    return f'<svg {NS} {size}>{body}</svg>'.encode()


# A red square on the left half, a blue circle on the right, transparent around it.
SIMPLE = doc('<rect width="20" height="20" fill="red"/><circle cx="30" cy="10" r="8" fill="blue"/>')


def png_uri(size=(4, 4), color="lime") -> str:
    out = BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


# --- what it renders -----------------------------------------------------------------------

def test_exact_size_rgba_and_pixels():
    img = svg.rasterize(SIMPLE, 80, 40, SETTINGS)
    assert (img.size, img.mode) == ((80, 40), "RGBA")
    assert img.getpixel((5, 5)) == RED
    assert img.getpixel((60, 20)) == BLUE  # the circle's centre, at twice the size
    assert img.getpixel((79, 0)) == CLEAR
    assert img.getpixel((60, 2)) == CLEAR  # above the circle


def test_own_size_without_width_or_height():
    assert svg.svg_size(SIMPLE, SETTINGS) == (40, 20)
    img = svg.rasterize(SIMPLE, None, None, SETTINGS)
    assert img.size == (40, 20)
    assert img.getpixel((10, 10)) == RED and img.getpixel((30, 10)) == BLUE


@pytest.mark.parametrize("width, height, expected", [(100, None, (100, 50)), (None, 10, (20, 10))])
def test_one_dimension_keeps_the_aspect_ratio(width, height, expected):
    img = svg.rasterize(SIMPLE, width, height, SETTINGS)
    assert img.size == expected
    assert img.getpixel((expected[0] // 4, expected[1] // 2)) == RED
    assert img.getpixel((expected[0] * 3 // 4, expected[1] // 2)) == BLUE


def test_rendered_at_the_target_size_not_resized():
    # A one-unit line stays a crisp edge at 10x: a resized 40x20 render would blur it.
    img = svg.rasterize(doc('<rect x="10" width="1" height="20" fill="red"/>'), 400, 200, SETTINGS)
    assert img.getpixel((99, 100)) == CLEAR
    assert img.getpixel((100, 100)) == RED and img.getpixel((109, 100)) == RED
    assert img.getpixel((110, 100)) == CLEAR


def test_both_sizes_of_another_shape_centre_the_drawing():
    img = svg.rasterize(SIMPLE, 40, 40, SETTINGS)  # preserveAspectRatio's default: xMidYMid meet
    assert img.size == (40, 40)
    assert img.getpixel((5, 5)) == CLEAR and img.getpixel((5, 15)) == RED


def test_viewbox_only():
    data = doc('<rect width="50" height="100" fill="red"/><rect x="50" width="50" height="100" fill="blue"/>',
               size='viewBox="0 0 100 100"')
    assert svg.svg_size(data, SETTINGS) == (100, 100)
    img = svg.rasterize(data, 10, None, SETTINGS)
    assert img.size == (10, 10)
    assert img.getpixel((2, 5)) == RED and img.getpixel((7, 5)) == BLUE


def test_units_and_percentages():
    assert svg.svg_size(doc("", 'width="1in" height="72pt"'), SETTINGS) == (96, 96)
    assert svg.svg_size(doc("", 'width="50%" height="100%" viewBox="0 0 30 10"'), SETTINGS) == (15, 10)
    assert svg.svg_size(doc("", 'width="30" viewBox="0 0 3 1"'), SETTINGS) == (30, 10)


def test_fragments_styles_and_embedded_images_are_drawn():
    data = doc(f'''<defs><linearGradient id="g"><stop offset="0" stop-color="blue"/></linearGradient>
        <rect id="r" width="10" height="20" fill="red"/></defs>
        <style>.g {{ fill: url(#g) }}</style>
        <use xlink:href="#r"/><rect class="g" x="10" width="10" height="20"/>
        <image x="20" width="20" height="20" href="{png_uri()}"/>''')
    img = svg.rasterize(data, None, None, SETTINGS)
    assert img.getpixel((5, 10)) == RED
    assert img.getpixel((15, 10)) == BLUE
    assert img.getpixel((30, 10)) == (0, 255, 0, 255)


def test_cheap_filters_are_drawn():
    data = doc('<filter id="f"><feConvolveMatrix order="3" kernelMatrix="0 0 0 0 1 0 0 0 0"/></filter>'
               '<rect width="40" height="20" fill="red" filter="url(#f)"/>')
    assert svg.rasterize(data, None, None, SETTINGS).getpixel((20, 10)) == RED


def test_text_is_drawn_with_the_shipped_font():
    assert svg.FONT.is_file()
    for family in ("sans-serif", "serif", "Arial", "monospace"):
        data = doc(f'<text x="2" y="16" font-size="16" font-family="{family}" fill="black">Hi</text>')
        box = svg.rasterize(data, None, None, SETTINGS).getbbox()
        assert box is not None and box[2] - box[0] > 8, family


# --- what it refuses -----------------------------------------------------------------------

def refused(data: bytes, width: int | None = None, height: int | None = None) -> errors.ProxyError:
    start = time.monotonic()
    with pytest.raises(errors.ProxyError) as caught:
        svg.rasterize(data, width, height, SETTINGS)
    assert time.monotonic() - start < 2, "refusing took too long"
    e = caught.value
    assert e.reason and "\n" not in e.reason and len(e.reason) < 200
    if "canvas" not in e.reason:  # svg_size checks the same, all but the size of the render
        with pytest.raises(errors.ProxyError) as again:
            svg.svg_size(data, SETTINGS)
        assert (again.value.status, again.value.code) == (e.status, e.code)
    return e


def unsafe(data: bytes, *words: str) -> None:
    e = refused(data)
    assert (e.status, e.code) == (422, Code.IMAGE_UNSAFE), e
    for word in words:
        assert word in e.reason, e.reason


@pytest.mark.parametrize("body, words", [
    ('<image href="file:///etc/passwd" width="10" height="10"/>', ["<image href>", "file:///etc/passwd"]),
    ('<image xlink:href="/etc/hostname" width="10" height="10"/>', ["<image href>", "/etc/hostname"]),
    ('<filter id="f"><feImage href="file:///etc/passwd"/></filter>', ["<feImage href>"]),
    ('<image href="relative.png"/>', ["relative.png"]),
    ('<image href=""/>', ["only #fragment"]),
    ('<image href="data:image/svg+xml;base64,PHN2Zy8+"/>', ["data:image/svg+xml"]),
    ('<image href="data:image/png;base64,QQ"/>', ["not base64"]),
    ('<image href="data:image/png;base64,aGVsbG8="/>', ["not a readable"]),
    ('<use href="https://example.com/x.svg#a"/>', ["<use href>"]),
    ('<a href="https://example.com/"><rect width="1" height="1"/></a>', ["<a href>"]),
    ('<rect width="5" height="5" style="fill:url(http://127.0.0.1:1/x)"/>', ["<rect style>", "url("]),
    ('<rect width="5" height="5" fill="url(file:///etc/passwd)"/>', ["<rect fill>"]),
    ('<rect width="5" height="5" filter="URL( \'/tmp/x.svg#f\' )"/>', ["<rect filter>"]),
    ('<rect width="5" height="5" mask="url(x.svg#m)"/>', ["<rect mask>"]),
    ('<path d="M0 0L5 5" marker-start="url(m.svg#m)"/>', ["<path marker-start>"]),
    ('<style>@import url(#a);</style>', ["@import"]),
    ('<style>@IMPORT "http://127.0.0.1:1/x.css";</style>', ["@import"]),
    ('<style>rect { fill: url(http://127.0.0.1:1/x.png) }</style>', ["<style>"]),
    ('<style><![CDATA[rect { fill: url("file:///etc/passwd") }]]></style>', ["<style>"]),
    ('<style>rect { fill: \\75rl(http://x/) }</style>', ["escape"]),
    ('<style>@font-face { font-family: x; src: url(/usr/share/fonts/x.ttf) }</style>', ["<style>"]),
    ('<script>alert(1)</script>', ["<script>"]),
    ('<foreignObject width="10" height="10"><div xmlns="http://www.w3.org/1999/xhtml"/></foreignObject>',
     ["<foreignObject>"]),
    ('<g id="a"><use href="#a"/></g>', ["cycle"]),
    ('<filter id="f"><feMorphology radius="50"/></filter>', ["<feMorphology>"]),
    ('<filter id="f"><feConvolveMatrix order="30" kernelMatrix="1"/></filter>', ["order"]),
])
def test_references_and_active_content_are_refused(body, words):
    unsafe(doc(body), *words)


def test_no_connection_is_made_for_a_loopback_reference():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        for body in (f'<image href="http://127.0.0.1:{port}/x.png" width="5" height="5"/>',
                     f'<rect width="5" height="5" style="fill:url(http://127.0.0.1:{port}/x)"/>',
                     f'<style>@import url(http://127.0.0.1:{port}/x.css);</style>'):
            unsafe(doc(body))
        with pytest.raises(socket.timeout):
            listener.accept()


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "lol">'
                  + b"".join(b'<!ENTITY %s "%s">' % (bytes([98 + i]), (b"&%s;" % bytes([97 + i])) * 10)
                             for i in range(9))
                  + b']><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&j;</text></svg>')


@pytest.mark.parametrize("data, word", [
    (BILLION_LAUGHS, "DTD"),
    (b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&x;</text></svg>', "DTD"),
    (b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://127.0.0.1:1/svg11.dtd">'
     b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "DTD"),
])
def test_dtds_and_entities_are_refused(data, word):
    unsafe(data, word)


def test_too_many_elements():
    unsafe(doc('<rect width="1" height="1"/>' * 100_000), "10000 elements")


def test_too_deep():
    unsafe(doc("<g>" * 1000 + "</g>" * 1000), "nested")


def test_use_expanding_exponentially():
    body = '<rect id="l0" width="1" height="1"/>' + "".join(
        f'<g id="l{i}">' + f'<use href="#l{i - 1}"/>' * 10 + "</g>" for i in range(1, 9))
    unsafe(doc(body), "draw more than")


def test_embedded_image_pixels_count_against_the_source_cap():
    small = ImagingSettings(**{**{f: getattr(SETTINGS, f) for f in SETTINGS.__slots__}, "max_source_pixels": 1000})
    data = doc(f'<image href="{png_uri((40, 40))}" width="5" height="5"/>')
    with pytest.raises(errors.ProxyError) as caught:
        svg.rasterize(data, None, None, small)
    assert (caught.value.status, caught.value.code) == (422, Code.IMAGE_UNSAFE)
    assert "pixels" in caught.value.reason


def test_data_uri_size_cap():
    unsafe(doc(f'<image href="data:image/png;base64,{"A" * (svg.MAX_DATA_URI + 4)}"/>'), "data URI")


@pytest.mark.parametrize("size, width, height", [
    ('width="100000" height="100000"', None, None),
    ('width="100" height="100"', 5000, None),
    ('viewBox="0 0 1 1"', 3000, 3000),
])
def test_canvas_over_the_output_limit(size, width, height):
    e = refused(doc("", size), width, height)
    assert (e.status, e.code) == (413, Code.IMAGE_TOO_LARGE)
    assert "canvas" in e.reason


def test_huge_own_size_rendered_small_is_fine():
    assert svg.rasterize(doc('<rect width="100000" height="100000" fill="red"/>',
                             'width="100000" height="100000"'), 10, 10, SETTINGS).getpixel((5, 5)) == RED


@pytest.mark.parametrize("size", [
    'width="0" height="10"', 'width="-5" height="10"', 'width="10" height="-1e3"',
    'width="abc" height="10"', 'width="1e999" height="10"', 'viewBox="0 0 0 10"',
    'viewBox="0 0 -1 -1"', 'viewBox="0 0 10"', "", 'width="10"', 'width="50%" height="10"',
])
def test_bad_sizes(size):
    e = refused(doc("", size))
    assert (e.status, e.code) == (422, Code.IMAGE_BROKEN)


@pytest.mark.parametrize("width, height", [(0, None), (None, -1), (10, 0)])
def test_bad_target_sizes(width, height):
    with pytest.raises(errors.ProxyError) as caught:
        svg.rasterize(SIMPLE, width, height, SETTINGS)
    assert (caught.value.status, caught.value.code) == (400, Code.DIMENSIONS)


def test_byte_cap():
    data = doc("<!--" + "x" * (10 * 1024 * 1024) + "-->")
    e = refused(data)
    assert (e.status, e.code) == (413, Code.IMAGE_TOO_LARGE)
    assert "bytes" in e.reason


@pytest.mark.parametrize("data", [
    b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
    b"hello, world",
    b"",
    b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><svg/></html>',
    b'<svg width="10" height="10"/>',  # no SVG namespace: resvg would not draw it either
])
def test_not_an_svg(data):
    e = refused(data)
    assert (e.status, e.code) == (415, Code.IMAGE_FORMAT)


@pytest.mark.parametrize("data", [
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect>',
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>\xff\xfe</text></svg>',
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><x:rect/></svg>',
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">&undefined;</svg>',
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg><svg/>',
])
def test_malformed_xml(data):
    e = refused(data)
    assert (e.status, e.code) == (422, Code.IMAGE_BROKEN)
    assert "malformed XML" in e.reason
