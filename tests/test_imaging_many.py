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
