"""Resize through process(): every mode's exact size, derived sides, positions, filters."""

from __future__ import annotations

import pytest
from PIL import Image
from support import BLOCKS, H, W, block_at, blocks, encoded, near, run

from imgproxy.imaging import operations
from imgproxy.plan import POSITIONS, Resize

JPEG = encoded(blocks())
PNG = encoded(blocks(), "PNG")
WHITE = (255, 255, 255)


@pytest.mark.parametrize("mode, retain, size", [
    ("crop", 75, (500, 400)),
    ("clip", 75, (500, 334)),
    ("fill", 75, (500, 400)),
    ("scale", 75, (500, 400)),
    ("adapt", 75, (500, 400)),
    ("adapt", 99, (500, 400)),
])
def test_mode_output_size_is_exact(mode, retain, size):
    rendered, img = run(JPEG, Resize(500, 400, mode, retain=retain))
    assert (rendered.width, rendered.height) == size
    assert rendered.format == "JPEG" and rendered.content_type == "image/jpeg"
    assert img.mode == "RGB"


def test_crop_cuts_the_sides_and_keeps_full_height():
    _, img = run(JPEG, Resize(500, 400, "crop"))
    # The window is 535 wide in the middle of 640: all three rows, the outer columns cut.
    assert block_at(img, 5, 5) == (0, 0)
    assert block_at(img, 250, 200) == (1, 1)
    assert block_at(img, 494, 394) == (2, 2)


def test_clip_keeps_everything_and_never_enlarges():
    _, img = run(JPEG, Resize(500, 400, "clip"))
    assert block_at(img, 3, 3) == (0, 0) and block_at(img, 496, 330) == (2, 2)
    _, img = run(JPEG, Resize(2000, 1000, "clip"))
    assert img.size == (W, H)


def test_fill_centres_on_a_background_band():
    _, img = run(JPEG, Resize(500, 400, "fill"))
    # 500x334 centred in 500x400: 33 rows of background above, 33 below.
    assert near(img.getpixel((250, 10)), WHITE) and near(img.getpixel((250, 390)), WHITE)
    assert block_at(img, 5, 40) == (0, 0) and block_at(img, 494, 360) == (2, 2)


def test_fill_uses_the_background_colour_and_alpha():
    _, img = run(PNG, Resize(500, 400, "fill", background=(0, 0, 255, 255)), format="PNG")
    assert img.mode == "RGB" and img.getpixel((250, 10)) == (0, 0, 255)
    _, img = run(PNG, Resize(500, 400, "fill", background=(255, 255, 255, 0)), format="PNG")
    assert img.mode == "RGBA"
    assert img.getpixel((250, 10))[3] == 0 and img.getpixel((250, 200))[3] == 255


def test_fill_pastes_a_transparent_source_through_its_alpha():
    src = Image.new("RGBA", (100, 50), (255, 0, 0, 255))
    src.paste((0, 0, 0, 0), (50, 0, 100, 50))
    _, img = run(encoded(src, "PNG"), Resize(100, 100, "fill", background=(0, 255, 0, 255)),
                 format="PNG")
    assert img.getpixel((25, 50)) == (255, 0, 0)
    assert img.getpixel((75, 50)) == (0, 255, 0)  # transparent source shows the background
    assert img.getpixel((50, 5)) == (0, 255, 0)


def test_scale_stretches_to_the_box():
    _, img = run(JPEG, Resize(100, 400, "scale"))
    assert img.size == (100, 400)
    assert block_at(img, 2, 2) == (0, 0) and block_at(img, 97, 397) == (2, 2)


def test_adapt_crops_or_fills_by_what_cropping_retains():
    # 640x428 into 500x400 keeps 83.6% when cropped.
    _, cropped = run(JPEG, Resize(500, 400, "adapt", retain=75))
    _, filled = run(JPEG, Resize(500, 400, "adapt", retain=99))
    assert block_at(cropped, 250, 5) == (1, 0)
    assert near(filled.getpixel((250, 5)), WHITE)
    assert operations.effective_mode(Resize(500, 400, "adapt", retain=83), (W, H)) == "crop"
    assert operations.effective_mode(Resize(500, 400, "adapt", retain=84), (W, H)) == "fill"


@pytest.mark.parametrize("width, height, size", [
    (320, None, (320, 214)),
    (None, 214, (320, 214)),
    (100, None, (100, 66)),  # 66.875 truncated
    (None, 100, (149, 100)),  # 149.53 truncated
    (1280, None, (1280, 856)),
])
@pytest.mark.parametrize("mode", ["crop", "fill", "scale", "adapt"])
def test_one_side_follows_the_aspect_ratio(width, height, size, mode):
    _, img = run(JPEG, Resize(width, height, mode))
    assert img.size == size


def test_one_side_with_clip_never_enlarges():
    assert run(JPEG, Resize(320, None, "clip"))[1].size == (320, 214)
    assert run(JPEG, Resize(1280, None, "clip"))[1].size == (W, H)


# Tall box: the window spans the full height, so the column shows the x position.
# Wide box: the window spans the full width, so the row shows the y position.
@pytest.mark.parametrize("name", sorted(POSITIONS))
def test_named_positions_pick_the_expected_blocks(name):
    px, py = POSITIONS[name]
    column = round(px * 2)
    row = round(py * 2)
    _, tall = run(PNG, Resize(100, 400, "crop", position=POSITIONS[name]))
    assert [block_at(tall, 50, y) for y in (50, 200, 350)] == [(column, r) for r in range(3)]
    _, wide = run(PNG, Resize(400, 100, "crop", position=POSITIONS[name]))
    assert [block_at(wide, x, 50) for x in (50, 200, 350)] == [(c, row) for c in range(3)]


@pytest.mark.parametrize("position, column, row", [
    ((0.15, 0.85), 0, 2),
    ((0.85, 0.15), 2, 0),
])
def test_ratio_positions_pick_the_expected_blocks(position, column, row):
    _, tall = run(PNG, Resize(100, 400, "crop", position=position))
    assert block_at(tall, 50, 200) == (column, 1)
    _, wide = run(PNG, Resize(400, 100, "crop", position=position))
    assert block_at(wide, 200, 50) == (1, row)


@pytest.mark.parametrize("px", [0.0, 0.1, 0.37, 0.5, 1.0])
def test_ratio_position_places_the_window_exactly(px):
    # A horizontal ramp: the value at the output's left edge tells where the window starts.
    ramp = Image.linear_gradient("L").rotate(90).resize((512, 256))  # value ~ x / 2
    _, img = run(encoded(ramp, "PNG"), Resize(64, 256, "crop", position=(px, 0.5),
                                              filter="nearest"))
    left = (512 - 64) * px
    assert near(img.getpixel((0, 128)), left * 255 / 511, 2)


@pytest.mark.parametrize("filter_", ["nearest", "bilinear", "bicubic", "antialias"])
@pytest.mark.parametrize("mode", ["crop", "clip", "fill", "scale"])
def test_every_filter_gives_the_exact_size(filter_, mode):
    expected = (150, 100) if mode == "clip" else (160, 100)
    assert run(PNG, Resize(160, 100, mode, filter=filter_))[1].size == expected


def test_nearest_keeps_only_source_colours_and_others_blend():
    colours = {c for c in BLOCKS.values()}
    nearest = run(PNG, Resize(123, 77, "scale", filter="nearest"), format="PNG")[1]
    assert {c for _, c in nearest.getcolors(10_000)} <= colours
    for filter_ in ("bilinear", "bicubic", "antialias"):
        smooth = run(PNG, Resize(123, 77, "scale", filter=filter_), format="PNG")[1]
        assert not {c for _, c in smooth.getcolors(10_000)} <= colours
    bilinear = run(PNG, Resize(123, 77, "scale", filter="bilinear"), format="PNG")[1]
    bicubic = run(PNG, Resize(123, 77, "scale", filter="bicubic"), format="PNG")[1]
    assert bilinear.tobytes() != bicubic.tobytes()


@pytest.mark.parametrize("mode, size", [
    ("crop", (7, 4)), ("clip", (6, 4)), ("scale", (7, 4)), ("adapt", (7, 4)), ("fill", (7, 4)),
])
@pytest.mark.parametrize("filter_", ["nearest", "bilinear", "bicubic", "antialias"])
def test_16_bit_sources_shrink_a_lot(mode, size, filter_):
    data = encoded(Image.new("I;16", (W, H), 40000), "PNG")
    _, img = run(data, Resize(7, 4, mode, filter=filter_), format="PNG")
    assert img.size == size
    if mode == "fill":  # on a see-through RGBA canvas, scaled to 8 bits
        assert img.mode == "RGBA" and img.getpixel((3, 2)) == (156, 156, 156, 255)
    else:
        assert img.mode == "I;16" and img.getpixel((3, 2)) == 40000


def _red_blue_palette(transparent: bool = False) -> bytes:
    img = Image.new("P", (64, 64), 0)
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])  # 0 red, 1 green (unused), 2 blue
    img.paste(2, (32, 0, 64, 64))
    return encoded(img, "PNG", **({"transparency": 2} if transparent else {}))


def test_palette_is_resized_in_rgb_not_by_index():
    _, img = run(_red_blue_palette(), Resize(17, 17, "scale", filter="bilinear"), format="PNG")
    assert img.mode == "RGB"
    pixels = [img.getpixel((x, 8)) for x in range(17)]
    assert all(g < 40 for _, g, _ in pixels)  # averaging indices 0 and 2 would give green
    assert any(r > 60 and b > 60 for r, _, b in pixels)  # a real red-blue blend


def test_palette_with_transparency_becomes_rgba_when_resampled():
    _, img = run(_red_blue_palette(True), Resize(17, 17, "scale", filter="antialias"),
                 format="PNG")
    assert img.mode == "RGBA"
    assert img.getpixel((1, 8)) == (255, 0, 0, 255) and img.getpixel((16, 8))[3] == 0


def test_palette_with_nearest_stays_a_palette():
    _, img = run(_red_blue_palette(True), Resize(16, 16, "scale", filter="nearest"),
                 format="PNG")
    assert img.mode == "P" and img.info.get("transparency") is not None


@pytest.mark.parametrize("box, size, expected", [
    ((500, 400), (640, 428), (500, 334)),
    ((700, 400), (640, 428), (598, 400)),
    ((600, 500), (640, 428), (600, 401)),
    ((1000, 1000), (640, 428), (640, 428)),
    ((10, 10), (1000, 1), (10, 1)),
    ((10, 10), (1, 1000), (1, 10)),
])
def test_clip_size_matches_pillow_thumbnail(box, size, expected):
    assert operations.clip_size(box, size) == expected
    img = Image.new("L", size)
    img.thumbnail(box)
    assert img.size == expected


def test_crop_window_is_the_largest_with_the_box_ratio():
    assert operations.crop_window((500, 400), (640, 428), (0.5, 0.5)) == (52.5, 0, 587.5, 428)
    assert operations.crop_window((100, 400), (640, 428), (0, 0)) == (0, 0, 107, 428)
    assert operations.crop_window((400, 100), (640, 428), (1, 1)) == (0, 268, 640, 428)
