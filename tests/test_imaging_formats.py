"""Saving: every source mode in every output format, and the save options."""

from __future__ import annotations

from io import BytesIO

import pytest
from PIL import Image, JpegImagePlugin, features
from support import blocks, encoded, limits, make_plan, near, opened, process, run

from imgproxy.delivery.negotiate import choose_format
from imgproxy.errors import Code, ProxyError
from imgproxy.imaging import encode
from imgproxy.plan import AUTO, Noop, Plan, Resize, Rotate, Save

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF")
ALL_INPUTS = limits(input_formats=FORMATS)


def halves(mode: str, left, right, size=(64, 48)) -> Image.Image:
    img = Image.new(mode, size, left)
    img.paste(Image.new(mode, (size[0] // 2, size[1]), right), (size[0] // 2, 0))
    return img


def palette(transparency=None) -> Image.Image:
    img = Image.new("P", (64, 48), 0)
    img.putpalette([255, 0, 0, 0, 0, 255])
    img.paste(1, (32, 0, 64, 48))
    if transparency is not None:
        img.info["transparency"] = transparency
    return img


# name -> (source bytes, RGBA expected on the left half, on the right half)
RED, BLUE = (200, 30, 30), (30, 30, 200)
SOURCES = {
    "RGB": (encoded(halves("RGB", RED, BLUE), "PNG"), RED + (255,), BLUE + (255,)),
    "L": (encoded(halves("L", 50, 200), "PNG"), (50, 50, 50, 255), (200, 200, 200, 255)),
    "CMYK": (encoded(halves("CMYK", (0, 255, 255, 0), (255, 255, 0, 0)), "TIFF"),
             (255, 0, 0, 255), (0, 0, 255, 255)),
    "CMYK-JPEG": (encoded(halves("CMYK", (0, 255, 255, 0), (255, 255, 0, 0)), "JPEG"),
                  (255, 0, 0, 255), (0, 0, 255, 255)),
    # 16-bit samples are scaled (/256) to 8 bits, not clipped at 255.
    "I;16": (encoded(halves("I;16", 40000, 10000), "PNG"), (156,) * 3 + (255,), (39,) * 3 + (255,)),
    "I": (encoded(halves("I", 40000, 10000), "TIFF"), (156,) * 3 + (255,), (39,) * 3 + (255,)),
    "F": (encoded(halves("F", 0.8, 0.2), "TIFF"), (204,) * 3 + (255,), (51,) * 3 + (255,)),
    "LA": (encoded(halves("LA", (100, 255), (100, 0)), "PNG"), (100, 100, 100, 255),
           (100, 100, 100, 0)),
    "RGBA": (encoded(halves("RGBA", RED + (255,), BLUE + (0,)), "PNG"), RED + (255,), BLUE + (0,)),
    "P": (encoded(palette(), "PNG"), (255, 0, 0, 255), (0, 0, 255, 255)),
    "P-transparent": (encoded(palette(1), "GIF"), (255, 0, 0, 255), (0, 0, 255, 0)),
    # A PNG palette with an alpha table (Pillow: bytes, one alpha per entry).
    "P-alpha-table": (encoded(palette(b"\xff\x40"), "PNG"), (255, 0, 0, 255), (0, 0, 255, 64)),
    "1": (encoded(halves("1", 0, 1), "PNG"), (0, 0, 0, 255), (255, 255, 255, 255)),
}
# The mode each output has when decoded again (the operation keeps the source's mode).
MODES = {  # JPEG, PNG, GIF, WEBP, TIFF
    "RGB": ("RGB", "RGB", "P", "RGB", "RGB"),
    "L": ("L", "L", "P", "RGB", "L"),
    "CMYK": ("CMYK", "RGB", "P", "RGB", "CMYK"),
    "CMYK-JPEG": ("CMYK", "RGB", "P", "RGB", "CMYK"),
    "I;16": ("L", "I;16", "P", "RGB", "I;16"),
    "I": ("L", "L", "P", "RGB", "I"),
    "F": ("L", "L", "P", "RGB", "F"),
    "LA": ("RGB", "LA", "P", "RGBA", "RGBA"),
    "RGBA": ("RGB", "RGBA", "P", "RGBA", "RGBA"),
    "P": ("RGB", "P", "P", "RGB", "P"),
    "P-transparent": ("RGB", "P", "P", "RGBA", "RGBA"),
    "P-alpha-table": ("RGB", "P", "P", "RGBA", "RGBA"),
    "1": ("L", "1", "L", "RGB", "1"),
}
def _as_rgba(img: Image.Image, x: int, y: int):
    if img.mode in ("I;16", "I", "F"):  # compare wide samples in 8-bit terms
        value = round(img.getpixel((x, y)) / (256 if img.mode != "F" else 1 / 255))
        return (value,) * 3 + (255,)
    return img.convert("RGBA").getpixel((x, y))


def _same(actual, expected, fmt, tolerance):
    r, g, b, a = expected
    # Formats without alpha get Pilbox's blend onto the default background, transparent
    # white: every channel mixed by alpha (test_pilbox_fidelity.py has the full model).
    blended = tuple(round(c * a / 255 + 255 * (1 - a / 255)) for c in (r, g, b))
    if fmt == "JPEG":  # the blend's colours, opaque
        expected = blended + (255,)
    elif fmt == "GIF":  # one transparent index: alpha 0 only, the rest opaque
        expected = blended + (255,) if a else (r, g, b, 0)
    elif fmt == "TIFF":  # the blend as it is: alpha a*a/255
        expected = blended + (round(a * a / 255),)
    if expected[3] == 0:  # fully transparent: the colour does not matter
        return actual[3] == 0
    return near(actual, expected, tolerance)


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("index, fmt", list(enumerate(FORMATS)))
def test_every_source_mode_saves_in_every_format(source, index, fmt):
    data, left, right = SOURCES[source]
    rendered, img = run(data, Rotate(180), format=fmt, limits=ALL_INPUTS)  # halves swap
    assert rendered.format == fmt and rendered.content_type == encode.CONTENT_TYPES[fmt]
    assert img.size == (64, 48)
    assert img.mode == MODES[source][index]
    tolerance = 14 if fmt in ("JPEG", "WEBP") else 2
    assert _same(_as_rgba(img, 48, 24), left, fmt, tolerance)
    assert _same(_as_rgba(img, 16, 24), right, fmt, tolerance)


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_source_mode_resizes_into_every_format(source, fmt):
    data, left, _ = SOURCES[source]
    _, img = run(data, Resize(32, 24, "fill", background=(0, 255, 0, 255)), format=fmt,
                 limits=ALL_INPUTS, background=(0, 255, 0, 255))
    assert img.size == (32, 24)
    tolerance = 14 if fmt in ("JPEG", "WEBP") else 4
    assert _same(_as_rgba(img, 4, 12), left, fmt, tolerance)


AVIF_MODES = {"L": "L", "I;16": "L", "I": "L", "F": "L", "LA": "RGBA", "RGBA": "RGBA",
              "P-transparent": "RGBA", "P-alpha-table": "RGBA"}


@pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_source_mode_saves_as_avif(source):
    data, left, right = SOURCES[source]
    rendered, img = run(data, Rotate(180), format="AVIF", limits=ALL_INPUTS)
    assert rendered.content_type == "image/avif" and img.size == (64, 48)
    assert img.mode == AVIF_MODES.get(source, "RGB")
    assert _same(_as_rgba(img, 48, 24), left, "AVIF", 14)
    assert _same(_as_rgba(img, 16, 24), right, "AVIF", 14)


def test_16_bit_greyscale_is_scaled_not_clipped():
    data = encoded(halves("I;16", 65535, 256), "PNG")
    _, img = run(data, Rotate(0), format="JPEG")
    assert img.mode == "L" and img.getpixel((8, 8)) == 255 and img.getpixel((56, 8)) == 1


def test_gif_keeps_only_alpha_0_transparent():
    src = halves("RGBA", (255, 0, 0, 200), (0, 0, 255, 50))
    _, img = run(encoded(src, "PNG"), Rotate(0), format="GIF")
    rgba = img.convert("RGBA")
    assert near(rgba.getpixel((8, 8)), (255, 55, 55, 255), 2)  # blended onto white, opaque
    assert near(rgba.getpixel((56, 8)), (205, 205, 255, 255), 2)
    src = halves("RGBA", (255, 0, 0, 255), (0, 0, 255, 0))
    rgba = run(encoded(src, "PNG"), Rotate(0), format="GIF")[1].convert("RGBA")
    assert rgba.getpixel((8, 8)) == (255, 0, 0, 255) and rgba.getpixel((56, 8))[3] == 0


def test_gif_of_a_photo_has_at_most_256_colours():
    _, img = run(encoded(Image.radial_gradient("L").convert("RGB").resize((200, 200))), Rotate(0),
                 format="GIF")
    assert img.mode == "P" and len(img.getcolors(1000)) <= 256


# --- the default format ------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_no_format_keeps_the_source_format(fmt):
    rendered, _ = run(encoded(blocks(), fmt), Resize(64, 64), limits=ALL_INPUTS)
    assert rendered.format == fmt and rendered.content_type == encode.CONTENT_TYPES[fmt]


def _mpo() -> bytes:
    first, second = blocks((320, 214)), blocks((320, 214)).rotate(180)
    return encoded(first, "MPO", save_all=True, append_images=[second])


def test_mpo_source_is_served_as_jpeg():
    data = _mpo()
    assert Image.open(BytesIO(data), formats=["JPEG"]).format == "MPO"
    rendered, img = run(data, Resize(100, None))
    assert rendered.format == "JPEG" and rendered.content_type == "image/jpeg"
    assert img.format == "JPEG" and getattr(img, "n_frames", 1) == 1
    noop = process(data, make_plan(Noop()))
    assert noop.body == data and noop.content_type == "image/jpeg"


def test_a_format_pillow_cannot_write_is_415_image_save():
    with pytest.raises(ProxyError) as e:
        encode.output_format(Save(), "MPEG")
    assert (e.value.status, e.value.code) == (415, Code.IMAGE_SAVE)
    assert encode.output_format(Save(), "MPO") == "JPEG"
    assert encode.output_format(Save("PNG"), "JPEG") == "PNG"


@pytest.mark.parametrize("accept, expected", [
    ("image/avif,image/webp,*/*", "AVIF" if features.check("avif") else "WEBP"),
    ("image/webp,*/*", "WEBP"),
    ("*/*", "PNG"),  # nothing modern accepted: the source's own format
])
def test_auto_format_takes_the_best_the_client_accepts(accept, expected):
    plan, varies = choose_format(Plan((Resize(64, 64),), Save(AUTO)), accept)
    assert varies
    rendered, img = run(encoded(blocks(), "PNG"), *plan.operations, format=plan.save.format)
    assert rendered.format == img.format == expected
    assert rendered.content_type == encode.CONTENT_TYPES[expected]


def test_auto_format_without_modern_formats_serves_an_mpo_as_jpeg():
    assert run(_mpo(), Resize(64, 64), format=AUTO)[0].format == "JPEG"


# --- quality, subsampling, progressive, optimize -----------------------------------

PHOTO = Image.radial_gradient("L").resize((300, 200)).convert("RGB")


def test_quality_changes_jpeg_and_webp_size():
    src = encoded(PHOTO, "PNG")
    for fmt in ("JPEG", "WEBP"):
        low = process(src, make_plan(Rotate(0), format=fmt, quality=10)).body
        high = process(src, make_plan(Rotate(0), format=fmt, quality=95)).body
        assert len(low) < len(high)


def test_quality_keep_reuses_the_source_tables():
    src = encoded(blocks(), quality=30)
    source_tables = opened(src).quantization
    _, kept = run(src, Resize(300, 200), quality="keep")
    assert kept.quantization == source_tables
    _, default = run(src, Resize(300, 200))
    assert default.quantization != source_tables
    _, q90 = run(src, Resize(300, 200), quality=90)
    assert default.quantization == q90.quantization


def test_each_format_has_its_own_default_quality():
    src = encoded(PHOTO, "PNG")
    defaults = (("JPEG", 70), ("WEBP", 40), ("AVIF", 30))
    for fmt, quality in defaults[:2]:
        default = process(src, make_plan(Rotate(0), format=fmt, default_qualities=defaults))
        explicit = process(src, make_plan(Rotate(0), format=fmt, quality=quality))
        assert default.body == explicit.body
    given = process(src, make_plan(Rotate(0), format="WEBP", quality=90,
                                   default_qualities=defaults))
    assert given.body == process(src, make_plan(Rotate(0), format="WEBP", quality=90)).body


def test_quality_keep_falls_back_to_the_formats_default():
    src = encoded(PHOTO)  # a JPEG: its tables only fit JPEG output
    defaults = (("JPEG", 70), ("WEBP", 40))
    keep = process(src, make_plan(Rotate(0), format="WEBP", quality="keep",
                                  default_qualities=defaults))
    assert keep.body == process(src, make_plan(Rotate(0), format="WEBP", quality=40)).body


def test_quality_keep_falls_back_to_default_without_a_jpeg_source():
    src = encoded(blocks(), "PNG")
    keep = process(src, make_plan(Resize(300, 200), format="JPEG", quality="keep")).body
    q90 = process(src, make_plan(Resize(300, 200), format="JPEG", quality=90)).body
    assert keep == q90
    keep = process(src, make_plan(Resize(300, 200), format="WEBP", quality="keep")).body
    assert keep == process(src, make_plan(Resize(300, 200), format="WEBP", quality=90)).body


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_jpeg_keeps_the_source_chroma_subsampling(subsampling):
    src = encoded(blocks(), subsampling=subsampling)
    for quality in (90, "keep"):
        _, img = run(src, Resize(200, 100), quality=quality)
        assert JpegImagePlugin.get_sampling(img) == subsampling


def test_progressive_is_visible_in_the_output():
    src = encoded(blocks())
    _, plain = run(src, Resize(200, 100))
    _, progressive = run(src, Resize(200, 100), progressive=True)
    assert not plain.info.get("progressive") and not plain.info.get("progression")
    assert progressive.info.get("progressive") or progressive.info.get("progression")


def test_optimize_makes_jpeg_and_png_no_larger():
    for fmt in ("JPEG", "PNG"):
        src = encoded(PHOTO, fmt)
        plain = process(src, make_plan(Rotate(0))).body
        optimized = process(src, make_plan(Rotate(0), optimize=True)).body
        assert optimized != plain and len(optimized) <= len(plain)
        assert opened(optimized).tobytes() == opened(plain).tobytes()  # only the coding differs


# --- metadata ----------------------------------------------------------------------

def _with_exif(fmt: str) -> bytes:
    exif = Image.Exif()
    exif[271] = "TestCam"
    return encoded(blocks((64, 48)), fmt, exif=exif.tobytes())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_is_kept_only_when_asked(fmt):
    src = _with_exif("JPEG")
    _, kept = run(src, Rotate(0), format=fmt, preserve_exif=True)
    assert kept.getexif().get(271) == "TestCam"
    _, dropped = run(src, Rotate(0), format=fmt)
    assert 271 not in dropped.getexif()


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_exif_is_dropped_for_other_formats(fmt):
    _, img = run(_with_exif("JPEG"), Rotate(0), format=fmt, preserve_exif=True)
    assert 271 not in img.getexif()


def test_exif_of_a_png_source_can_be_kept():
    _, img = run(_with_exif("PNG"), Rotate(0), format="JPEG", preserve_exif=True)
    assert img.getexif().get(271) == "TestCam"


def test_colour_profile_is_kept_only_for_the_same_colour_space():
    profile = opened(encoded(blocks((8, 8)), "JPEG")).info.get("icc_profile") or b"fake-icc"
    rgb = encoded(blocks((64, 48)), "JPEG", icc_profile=profile)
    _, img = run(rgb, Resize(32, 24), format="PNG")
    assert img.info.get("icc_profile") == profile
    cmyk = encoded(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG", icc_profile=profile)
    _, img = run(cmyk, Resize(32, 24), format="PNG")  # now RGB: a CMYK profile would lie
    assert img.mode == "RGB" and "icc_profile" not in img.info
    _, img = run(cmyk, Resize(32, 24), format="JPEG")
    assert img.mode == "CMYK" and img.info.get("icc_profile") == profile


def test_gif_animation_metadata_does_not_ride_along():
    frames = [Image.new("P", (32, 32), i) for i in range(3)]
    for f in frames:
        f.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    src = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    _, img = run(src, Resize(16, 16))
    assert getattr(img, "n_frames", 1) == 1 and "loop" not in img.info
