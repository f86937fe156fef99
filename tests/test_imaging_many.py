"""Several outputs from one decode, and output sizes predicted from the header alone."""

from __future__ import annotations

import pytest
from PIL import Image
from support import IMAGING, blocks, encoded, opened

from imgproxy.config import Settings
from imgproxy.imaging import decode, pipeline
from imgproxy.options.build import build_plan
from imgproxy.options.query import parse_query

QUERIES = ["w=100&h=100", "w=300&mode=clip", "w=64&h=48&mode=fill&fmt=png", "op=noop",
           "op=rotate,resize&deg=90&w=50&mode=scale", "op=region,resize&rect=10,10,200,100&w=40",
           "h=120&mode=adapt&fmt=webp", "w=900&h=900&mode=clip"]


def plans():
    return [build_plan(parse_query(q), Settings()) for q in QUERIES]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_one_decode_gives_what_separate_renders_give(fmt, monkeypatch):
    data = encoded(blocks((1200, 800)), fmt)
    loads = []
    real_load = decode.load
    monkeypatch.setattr(decode, "load", lambda img, size=None: loads.append(size) or real_load(img, size))
    many = pipeline.process_many(data, plans(), IMAGING)
    assert len(loads) == 1  # decoded once for all eight
    for plan, got in zip(plans(), many):
        alone = pipeline.process(data, plan, IMAGING)
        assert (got.width, got.height, got.format, got.content_type) == (
            alone.width, alone.height, alone.format, alone.content_type)
        a, b = opened(got.body).convert("RGB"), opened(alone.body).convert("RGB")
        assert a.size == b.size
        diff = max(abs(p - q) for x, y in ((a.width // 3, a.height // 3), (a.width // 2, a.height // 2))
                   for p, q in zip(a.getpixel((x, y)), b.getpixel((x, y))))
        assert diff <= 12


def test_the_shared_decode_is_as_large_as_the_largest_output_needs(monkeypatch):
    data = encoded(blocks((2400, 1600)), "JPEG")
    sizes = []
    real_load = decode.load
    monkeypatch.setattr(decode, "load", lambda img, size=None: sizes.append(size) or real_load(img, size))
    small, large = (build_plan(parse_query(q), Settings()) for q in ("w=100&h=100", "w=600&h=400"))
    out = pipeline.process_many(data, [small, large], IMAGING)
    assert sizes == [(600, 400)] and [(r.width, r.height) for r in out] == [(100, 100), (600, 400)]


def test_predicted_sizes_and_formats_match_the_render():
    for fmt in ("JPEG", "PNG"):
        data = encoded(blocks((1200, 800)), fmt)
        predicted = pipeline.predict(data, plans(), IMAGING)
        rendered = pipeline.process_many(data, plans(), IMAGING)
        assert predicted == [(r.width, r.height, r.format) for r in rendered]


def test_predict_follows_exif_orientation_with_auto_orient():
    img = blocks((300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(img, "JPEG", exif=exif.tobytes())
    plan = build_plan(parse_query("w=100&mode=clip"), Settings(auto_orient=True))
    assert pipeline.predict(data, [plan], IMAGING) == [(100, 150, "JPEG")]
    assert opened(pipeline.process(data, plan, IMAGING).body).size == (100, 150)


def test_derived_outputs_start_from_a_larger_whole_result(monkeypatch):
    """derive=True (the store's variants): a resize-only plan starts from the pixels of a larger
    fit, not from the decode; a crop or fill is never a starting point. Sizes stay the same."""
    from io import BytesIO

    from imgproxy.plan import Plan, Resize

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: every plan turns it first
    out = BytesIO()
    blocks((1600, 1200)).save(out, "JPEG", quality=95, exif=exif.tobytes())
    data = out.getvalue()
    fit = lambda w, h, mode="clip": Plan((Resize(w, h, mode, enlarge=False),), auto_orient=True)  # noqa: E731
    # given smallest first: the pipeline orders them itself
    plans = [fit(150, 150, "crop"), fit(120, None, "scale"), fit(64, 64, "fill"), fit(800, 800), fit(1000, 1000)]
    starts = []
    real = pipeline._render
    monkeypatch.setattr(pipeline, "_render", lambda img, plan, step, settings, derived=False: (
        starts.append((plan, img.size, derived)) or real(img, plan, step, settings, derived)))
    derived = pipeline.process_many(data, plans, IMAGING, derive=True)
    direct = pipeline.process_many(data, plans, IMAGING)
    assert [(r.width, r.height, r.format) for r in derived] == [(r.width, r.height, r.format) for r in direct]
    assert [(r.width, r.height) for r in derived] == [(150, 150), (120, 160), (64, 64), (600, 800), (750, 1000)]
    first = {plans.index(p): (size, flag) for p, size, flag in starts[:5]}
    assert first[4][1] is False  # the largest from the decode
    assert first[3] == ((750, 1000), True)  # the next from the largest, already upright
    assert first[0][0] == (600, 800) and first[1][0] == (600, 800)  # from the smallest that has the detail
    assert first[2][0] == (120, 160)  # a fill may start from a whole result (the smallest with the detail)...
    assert not any(size in ((64, 64), (150, 150)) for _, size, _ in starts)  # ...never from a crop or a fill
    for a, b in zip(derived, direct):
        x, y = opened(a.body).convert("RGB"), opened(b.body).convert("RGB")
        diff = max(abs(p - q) for xy in ((x.width // 3, x.height // 3), (x.width // 2, x.height // 2))
                   for p, q in zip(x.getpixel(xy), y.getpixel(xy)))
        assert diff <= 12
