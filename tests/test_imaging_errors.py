"""Bad input and limits: every failure of process() is a ProxyError with the right code."""

from __future__ import annotations

import pytest
from PIL import Image
from support import H, W, blocks, encoded, limits, make_plan, png_claiming, process, run

from imgproxy.errors import Code, ProxyError
from imgproxy.plan import Noop, Region, Resize, Rotate

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF")
JPEG = encoded(blocks())


def _fails(data: bytes, *ops, limits=limits(), **save) -> ProxyError:
    with pytest.raises(ProxyError) as e:
        process(data, make_plan(*ops, limits=limits, **save))
    return e.value


# --- not an image / not accepted -----------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"hello world", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n",
                                  b"<svg xmlns='http://www.w3.org/2000/svg'/>", bytes(range(256))])
@pytest.mark.parametrize("op", [Resize(10, 10), Noop()])
def test_not_an_image_is_415_image_format(data, op):
    e = _fails(data, op)
    assert (e.status, e.code) == (415, Code.IMAGE_FORMAT)


@pytest.mark.parametrize("fmt", ["BMP", "PPM", "ICO", "PCX", "TGA"])
@pytest.mark.parametrize("op", [Resize(10, 10), Noop()])
def test_formats_not_accepted_are_415_image_format(fmt, op):
    e = _fails(encoded(blocks((32, 32)), fmt), op)
    assert (e.status, e.code) == (415, Code.IMAGE_FORMAT)


def test_only_the_plans_input_formats_are_accepted():
    png = encoded(blocks(), "PNG")
    e = _fails(png, Resize(10, 10), limits=limits(input_formats=("JPEG",)))
    assert (e.status, e.code) == (415, Code.IMAGE_FORMAT)
    assert run(png, Resize(10, 10), limits=limits(input_formats=("PNG",)))[1].size == (10, 10)


# --- noop -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_noop_returns_the_bytes_unchanged(fmt):
    data = encoded(blocks(), fmt)
    rendered = process(data, make_plan(Noop()))
    assert rendered.body == data
    assert rendered.format == fmt and rendered.content_type == f"image/{fmt.lower()}"
    assert (rendered.width, rendered.height) == (W, H)


def test_noop_wins_over_other_operations_and_save_options():
    rendered = process(JPEG, make_plan(Resize(10, 10), Noop(), format="PNG", quality=5))
    assert rendered.body == JPEG and rendered.content_type == "image/jpeg"


def test_noop_does_not_decode_pixels():
    truncated = JPEG[: len(JPEG) // 2]
    assert process(truncated, make_plan(Noop())).body == truncated
    # Nor does it apply the decode pixel cap: nothing is decoded.
    assert process(JPEG, make_plan(Noop(), limits=limits(max_source_pixels=10))).body == JPEG


# --- broken data ----------------------------------------------------------------------

def test_truncated_jpeg_is_422_image_broken():
    e = _fails(JPEG[: len(JPEG) // 2], Resize(100, 100))
    assert (e.status, e.code) == (422, Code.IMAGE_BROKEN)


def test_png_without_its_pixels_is_422_image_broken():
    e = _fails(png_claiming(100, 100), Resize(10, 10))
    assert (e.status, e.code) == (422, Code.IMAGE_BROKEN)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_or_corrupt_data_never_escapes_as_a_raw_exception(fmt):
    data = encoded(blocks((96, 64)), fmt)
    damaged = [data[:n] for n in range(8, len(data), max(1, len(data) // 40))]
    for at in range(10, len(data), max(1, len(data) // 40)):
        damaged.append(data[:at] + bytes(b ^ 0x5A for b in data[at:at + 16]) + data[at + 16:])
    for bad in damaged:
        try:
            process(bad, make_plan(Resize(40, 40)))
        except ProxyError as e:
            assert (e.status, e.code) in ((415, Code.IMAGE_FORMAT), (422, Code.IMAGE_BROKEN))


# --- pixel limits -----------------------------------------------------------------------

def test_source_pixel_cap_is_checked_from_the_header():
    assert run(JPEG, Resize(10, 10), limits=limits(max_source_pixels=W * H))[1].size == (10, 10)
    e = _fails(JPEG, Resize(10, 10), limits=limits(max_source_pixels=W * H - 1))
    assert (e.status, e.code) == (413, Code.IMAGE_TOO_LARGE)
    # A huge header with no pixel data behind it: refused before any decoding.
    e = _fails(png_claiming(30_000, 30_000), Resize(10, 10))
    assert (e.status, e.code) == (413, Code.IMAGE_TOO_LARGE)


@pytest.mark.parametrize("side", [10_000, 14_000])  # Pillow's warning range, its error range
def test_pillow_decompression_bomb_checks_become_413(side):
    e = _fails(png_claiming(side, side), Resize(10, 10), limits=limits(max_source_pixels=10**9))
    assert (e.status, e.code) == (413, Code.IMAGE_TOO_LARGE)


@pytest.mark.parametrize("op, pixels", [
    (Resize(500, 400, "crop"), 500 * 400),
    (Resize(500, 400, "fill"), 500 * 400),
    (Resize(500, 400, "clip"), 500 * 334),
    (Resize(2000, 1000, "clip"), W * H),  # clip never enlarges: the box is not the output
    (Resize(2000, None, "scale"), 2000 * 1337),
    (Region(10, 10, 300, 200), 300 * 200),
    (Rotate(45, True), 756 * 756),
    (Rotate(45, False), W * H),
    (Rotate(90, False), W * H),
])
def test_output_pixel_cap_applies_to_each_operation(op, pixels):
    assert run(JPEG, op, limits=limits(max_output_pixels=pixels))[0].body
    e = _fails(JPEG, op, limits=limits(max_output_pixels=pixels - 1))
    assert (e.status, e.code) == (413, Code.IMAGE_TOO_LARGE)


def test_output_cap_is_checked_for_every_step_not_only_the_last():
    e = _fails(JPEG, Resize(3000, 2000, "scale"), Resize(10, 10),
               limits=limits(max_output_pixels=1_000_000))
    assert e.code == Code.IMAGE_TOO_LARGE


def test_errors_have_one_line_reasons():
    for e in (_fails(b"nope", Resize(1, 1)), _fails(JPEG[:400], Resize(1, 1)),
              _fails(JPEG, Region(0, 0, W + 1, 1)),
              _fails(JPEG, Resize(10, 10), limits=limits(max_source_pixels=1))):
        assert e.reason and "\n" not in e.reason


def test_pillow_module_state_is_left_alone():
    before = Image.MAX_IMAGE_PIXELS
    _fails(png_claiming(10_000, 10_000), Resize(10, 10), limits=limits(max_source_pixels=10**9))
    assert Image.MAX_IMAGE_PIXELS == before
