"""Shrink-on-load: a JPEG is decoded at the smallest DCT scale a first resize needs."""

from __future__ import annotations

import pytest
from PIL import Image, ImageChops, ImageFile, ImageOps, ImageStat, JpegImagePlugin
from support import block_at, blocks, encoded, opened, run

from imgproxy.imaging import operations, pipeline
from imgproxy.plan import FACE, Region, Resize, Rotate

BIG = (4000, 3000)


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return encoded(blocks(BIG), quality=90)


@pytest.fixture
def drafts(monkeypatch):
    """Record each JPEG draft request and the size it decoded at."""
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        calls.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return calls


@pytest.mark.parametrize("op, needed", [
    (Resize(300, 300, "crop"), (400, 300)),  # the box must stay covered
    (Resize(300, 300, "clip"), (300, 225)),  # the fitted image is what counts
    (Resize(300, 300, "fill"), (300, 225)),
    (Resize(300, 600, "scale"), (300, 600)),  # each side on its own
    (Resize(300, None, "crop"), (300, 225)),
    (Resize(8000, 6000, "crop"), (4000, 3000)),  # never more than the source
    (Resize(300, 300, "adapt", retain=99), (300, 225)),
    (Resize(300, 300, "adapt", retain=50), (400, 300)),
    (Resize(300, 300, "crop", position=FACE), (640, 480)),  # enough left to find faces in
])
def test_needed_size(op, needed):
    assert operations.needed_size(op, BIG) == needed


def test_draft_size_looks_through_right_angle_rotations_only():
    crop = Resize(300, 600, "crop")
    assert pipeline.draft_size([crop], BIG) == (800, 600)
    # Turned first, the resize sees 3000x4000: it needs 450x600 of that, 600x450 as stored.
    assert pipeline.draft_size([Rotate(90), crop], BIG) == (600, 450)
    assert pipeline.draft_size([Rotate(180), crop], BIG) == (800, 600)
    assert pipeline.draft_size([Rotate(90), Rotate(270), crop], BIG) == (800, 600)
    assert pipeline.draft_size([Rotate(45), crop], BIG) is None
    assert pipeline.draft_size([Region(0, 0, 10, 10), crop], BIG) is None
    assert pipeline.draft_size([Rotate(90)], BIG) is None


def test_big_jpeg_is_decoded_at_a_reduced_scale(big_jpeg, drafts):
    _, img = run(big_jpeg, Resize(300, 300, "crop"))
    assert img.size == (300, 300)
    assert drafts == [((400, 300), (500, 375))]  # 1/8 scale still covers 400x300
    assert block_at(img, 5, 5) == (0, 0) and block_at(img, 294, 294) == (2, 2)


@pytest.mark.parametrize("op, size", [
    (Resize(300, 300, "clip"), (300, 225)),
    (Resize(300, 300, "fill"), (300, 300)),
    (Resize(123, 456, "scale"), (123, 456)),
    (Resize(300, 300, "adapt"), (300, 300)),
    (Resize(333, None, "crop"), (333, 249)),
    (Resize(None, 77, "clip"), (102, 77)),
])
def test_drafted_outputs_have_exact_sizes(big_jpeg, drafts, op, size):
    _, img = run(big_jpeg, op)
    assert img.size == size
    assert drafts and drafts[0][1][0] < BIG[0]


def test_drafted_sizes_match_the_undrafted_geometry(drafts):
    # 4001x2999 does not divide by 8: sizes come from the header, not the drafted pixels.
    data = encoded(blocks((4001, 2999)))
    for op in (Resize(333, 333, "clip"), Resize(500, None, "crop"), Resize(None, 333, "fill")):
        assert run(data, op)[1].size == operations.resize_size(op, (4001, 2999))


def test_draft_keeps_the_picture(big_jpeg):
    _, drafted = run(big_jpeg, Resize(300, 300, "crop"))
    reference = ImageOps.fit(opened(big_jpeg), (300, 300), Image.Resampling.LANCZOS)
    diff = ImageStat.Stat(ImageChops.difference(drafted.convert("RGB"), reference)).mean
    assert max(diff) < 4


def test_rotation_before_resize_still_drafts(big_jpeg, drafts):
    _, img = run(big_jpeg, Rotate(90), Resize(300, 600, "crop"))
    assert img.size == (300, 600)
    assert drafts[0][0] == (600, 450) and drafts[0][1] == (1000, 750)
    assert block_at(img, 294, 5) == (0, 0)  # top-left went to the top-right


def test_no_draft_when_the_first_step_needs_full_pixels(big_jpeg, drafts):
    run(big_jpeg, Region(0, 0, 1000, 1000), Resize(100, 100))
    run(big_jpeg, Resize(3000, 2500, "crop"))  # needs more than half the pixels
    assert drafts == []


@pytest.fixture
def decodes(monkeypatch):
    """Record each draft request on any image, and each decode: (format, size decoded at)."""
    calls = {"draft": [], "load": []}
    draft, load = Image.Image.draft, ImageFile.ImageFile.load

    def draft_spy(self, mode, size):
        calls["draft"].append((self.format, size))
        return draft(self, mode, size)

    def load_spy(self):
        result = load(self)
        calls["load"].append((self.format, self.size))
        return result

    monkeypatch.setattr(Image.Image, "draft", draft_spy)
    monkeypatch.setattr(ImageFile.ImageFile, "load", load_spy)
    return calls


def test_png_sources_are_decoded_whole(decodes):
    data = encoded(blocks((1200, 900)), "PNG")
    _, img = run(data, Resize(100, 100))
    assert img.size == (100, 100)
    assert decodes["draft"] == []  # no reduced decode asked for
    # the source's pixels were decoded at their full size (then the reply was opened)
    assert decodes["load"][0] == ("PNG", (1200, 900))
    assert block_at(img, 5, 5) == (0, 0) and block_at(img, 94, 94) == (2, 2)


def test_the_decode_spy_sees_a_drafted_jpeg(big_jpeg, decodes):
    """The spy above can tell: a JPEG source shows its draft and its reduced decode."""
    run(big_jpeg, Resize(300, 300, "crop"))
    assert decodes["load"][0] == ("JPEG", (500, 375))


def _png_with_exif_after_pixels(orientation: int) -> bytes:
    import io
    import struct
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(out, "PNG", exif=exif.tobytes())
    data, i, chunks = out.getvalue(), 8, []
    while i < len(data):
        (length,) = struct.unpack(">I", data[i:i + 4])
        chunks.append(data[i:i + 12 + length])
        i += 12 + length
    late = [c for c in chunks if c[4:8] == b"eXIf"]
    others = [c for c in chunks if c[4:8] != b"eXIf"]
    return data[:8] + b"".join(others[:-1] + late + others[-1:])  # eXIf between the pixels and IEND


def test_a_png_s_orientation_is_read_without_decoding_it():
    """Pillow's getexif() decodes a whole PNG to look for EXIF after its pixels; the chunk
    headers tell as much (the store reads every upload's orientation before decoding it)."""
    import io

    from imgproxy.imaging import decode
    out = io.BytesIO()
    Image.new("RGB", (3000, 2000), (10, 20, 30)).save(out, "PNG")
    img = decode.open_image(out.getvalue(), ("PNG",))
    assert decode.orientation_tag(img) == 0 and img._im is None  # still undecoded
    late = decode.open_image(_png_with_exif_after_pixels(6), ("PNG",))
    assert decode.orientation_tag(late) == 6  # found past the pixels all the same
    from support import IMAGING

    from imgproxy.plan import Plan
    rendered = pipeline.process(_png_with_exif_after_pixels(6), Plan((Resize(20, None, "scale"),),
                                                                     auto_orient=True), IMAGING)
    assert (rendered.width, rendered.height) == (20, 26)  # turned upright: 30x40, then 20 wide
