"""Rotate (right angles, any angle, expand, EXIF auto) and region through process()."""

from __future__ import annotations

import math

import pytest
from PIL import Image
from support import H, W, block_at, blocks, encoded, make_plan, near, opened, process, run

from imgproxy.errors import Code, ProxyError
from imgproxy.imaging import operations
from imgproxy.plan import Region, Resize, Rotate

PNG = encoded(blocks(), "PNG")
BACKGROUND = (10, 20, 30, 255)  # not one of the block colours


def _corners(img):
    w, h = img.size
    return [block_at(img, x, y) for x, y in ((10, 10), (w - 11, 10), (w - 11, h - 11), (10, h - 11))]


# Corners clockwise from top-left: which block sits in each after turning clockwise.
@pytest.mark.parametrize("degrees, size, corners", [
    (0, (W, H), [(0, 0), (2, 0), (2, 2), (0, 2)]),
    (90, (H, W), [(0, 2), (0, 0), (2, 0), (2, 2)]),
    (180, (W, H), [(2, 2), (0, 2), (0, 0), (2, 0)]),
    (270, (H, W), [(2, 0), (2, 2), (0, 2), (0, 0)]),
])
@pytest.mark.parametrize("expand", [False, True])
def test_right_angles_turn_clockwise_exactly(degrees, size, corners, expand):
    _, img = run(PNG, Rotate(degrees, expand))
    assert img.size == size
    assert _corners(img) == corners
    assert img.tobytes() == blocks().rotate(-degrees, expand=True).tobytes()  # lossless


def test_45_degrees_keeps_the_size_and_fills_corners():
    _, img = run(PNG, Rotate(45, False, BACKGROUND), format="PNG")
    assert img.size == (W, H) and img.mode == "RGB"
    assert img.getpixel((0, 0)) == BACKGROUND[:3]
    assert img.getpixel((W - 1, H - 1)) == BACKGROUND[:3]
    assert block_at(img, W // 2, H // 2) == (1, 1)


def _turned(point, degrees, size, new_size):
    """Where `point` goes when an image of `size` turns clockwise (y points down)."""
    a = math.radians(degrees)
    dx, dy = point[0] - size[0] / 2, point[1] - size[1] / 2
    return (round(new_size[0] / 2 + dx * math.cos(a) - dy * math.sin(a)),
            round(new_size[1] / 2 + dx * math.sin(a) + dy * math.cos(a)))


@pytest.mark.parametrize("degrees", [30, 45, 100, 200, 315])
@pytest.mark.parametrize("expand", [False, True])
def test_any_angle_turns_clockwise(degrees, expand):
    _, img = run(PNG, Rotate(degrees, expand, BACKGROUND), format="PNG")
    for point, block in (((100, 100), (0, 0)), ((540, 100), (2, 0)),
                         ((320, 214), (1, 1)), ((100, 330), (0, 2))):
        x, y = _turned(point, degrees, (W, H), img.size)
        if 0 <= x < img.width and 0 <= y < img.height:
            assert block_at(img, x, y) == block, (point, degrees)


def test_45_degrees_with_expand_grows_to_hold_the_whole_image():
    _, img = run(PNG, Rotate(45, True, BACKGROUND), format="PNG")
    assert img.size == operations.rotated_size((W, H), 45, True)
    assert img.size == blocks().rotate(-45, expand=True).size
    assert img.getpixel((0, 0)) == BACKGROUND[:3]


def test_rotation_background_can_be_transparent():
    _, img = run(PNG, Rotate(30, True, (255, 255, 255, 0)), format="PNG")
    assert img.mode == "RGBA"
    assert img.getpixel((0, 0))[3] == 0
    assert img.getpixel((img.width // 2, img.height // 2))[3] == 255
    # As from a query, bg= is both the rotation's and the save's background.
    _, flat = run(PNG, Rotate(30, True, (0, 0, 255, 0)), format="JPEG", background=(0, 0, 255, 0))
    assert near(flat.getpixel((2, 2)), (0, 0, 255))  # JPEG: flattened onto the colour


@pytest.mark.parametrize("size", [(640, 428), (101, 37), (1, 1), (3000, 2)])
@pytest.mark.parametrize("degrees", [1, 30, 45, 89, 91, 135, 181, 200, 269, 271, 359])
def test_rotated_size_matches_pillow(size, degrees):
    for expand in (False, True):
        expected = Image.new("L", size).rotate(-degrees, expand=expand).size
        assert operations.rotated_size(size, degrees, expand) == expected


def test_rotating_greyscale_and_16_bit_sources():
    grey = Image.new("I;16", (60, 40), 40000)
    _, img = run(encoded(grey, "PNG"), Rotate(30, True, BACKGROUND), format="PNG")
    assert near(img.getpixel((img.width // 2, img.height // 2)), (156, 156, 156), 1)


# --- rotate=auto -------------------------------------------------------------------

def _jpeg_with_exif(orientation=None, raw: bytes | None = None, **tags) -> bytes:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    for tag, value in tags.items():
        exif[int(tag.lstrip("_"))] = value
    data = raw if raw is not None else exif.tobytes()
    return encoded(blocks(), "JPEG", exif=data) if data else encoded(blocks())


@pytest.mark.parametrize("orientation, degrees", [(1, 0), (3, 180), (6, 90), (8, 270)])
def test_auto_rotation_follows_exif_orientation(orientation, degrees):
    _, img = run(_jpeg_with_exif(orientation), Rotate(None))
    expected = blocks().rotate(-degrees, expand=True)
    assert img.size == expected.size
    assert _corners(img) == _corners(expected)


@pytest.mark.parametrize("data", [
    _jpeg_with_exif(None),  # EXIF without an orientation
    encoded(blocks()),  # no EXIF at all
    _jpeg_with_exif(raw=b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\xff\xff"),  # broken
    _jpeg_with_exif(raw=b"Exif\x00\x00garbage"),
    _jpeg_with_exif(2),  # mirrored: not applied
    _jpeg_with_exif(9),  # out of range
])
def test_auto_rotation_without_a_usable_orientation_changes_nothing(data):
    _, img = run(data, Rotate(None))
    assert img.size == (W, H)
    assert _corners(img) == [(0, 0), (2, 0), (2, 2), (0, 2)]


def test_auto_rotation_reads_exif_of_jpeg_only():
    exif = Image.Exif()
    exif[0x0112] = 6
    png = encoded(blocks(), "PNG", exif=exif.tobytes())
    assert opened(png).getexif().get(0x0112) == 6
    assert run(png, Rotate(None))[1].size == (W, H)


def test_auto_rotation_resets_kept_orientation_and_keeps_other_tags():
    data = _jpeg_with_exif(6, _271="TestCam")
    _, img = run(data, Rotate(None), preserve_exif=True)
    assert img.size == (H, W)
    assert img.getexif().get(0x0112) == 1
    assert img.getexif().get(271) == "TestCam"
    # Without rotate=auto the pixels stay as stored, so the tag must stay too.
    _, img = run(data, Resize(100, None), preserve_exif=True)
    assert img.getexif().get(0x0112) == 6


def test_auto_then_resize_uses_the_turned_size():
    _, img = run(_jpeg_with_exif(6), Rotate(None), Resize(200, None, "crop"))
    assert img.size == (200, int(200 / (H / W)))


# --- region ------------------------------------------------------------------------

def test_region_cuts_the_rectangle():
    _, img = run(PNG, Region(0, 0, 213, 142))
    assert img.size == (213, 142)
    assert img.getcolors() == [(213 * 142, (255, 0, 0))]
    _, img = run(PNG, Region(427, 285, 213, 143))
    assert img.getcolors() == [(213 * 143, (255, 128, 0))]


def test_region_may_be_the_whole_image():
    assert run(PNG, Region(0, 0, W, H))[1].tobytes() == blocks().tobytes()


@pytest.mark.parametrize("rect", [(600, 0, 41, 10), (0, 0, W, H + 1), (W, 0, 1, 1), (0, 428, 1, 1)])
def test_region_out_of_bounds_is_400_rectangle(rect):
    with pytest.raises(ProxyError) as e:
        process(PNG, make_plan(Region(*rect)))
    assert (e.value.status, e.value.code) == (400, Code.RECTANGLE)


def test_region_bounds_follow_earlier_operations():
    ops = (Resize(320, 214, "scale"), Region(0, 0, 320, 214))
    assert run(PNG, *ops)[1].size == (320, 214)
    with pytest.raises(ProxyError) as e:
        process(PNG, make_plan(Resize(320, 214, "scale"), Region(0, 0, 321, 10)))
    assert e.value.code == Code.RECTANGLE
    _, img = run(PNG, Rotate(90), Region(0, 0, H, W))
    assert img.size == (H, W)


def test_region_then_resize():
    _, img = run(PNG, Region(213, 142, 213, 143), Resize(100, None, "crop"), format="PNG")
    assert img.size == (100, 67)
    assert {c for _, c in img.getcolors()} == {(0, 255, 255)}
