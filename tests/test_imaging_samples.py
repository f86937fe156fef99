"""Checks that the sample images (support.py) are what the imaging tests assume."""

from __future__ import annotations

from support import BLOCKS, H, W, block_at, blocks, encoded, near, opened

# --- checks of the samples themselves ----------------------------------------------

def test_blocks_sample_has_each_colour_where_expected():
    img = blocks()
    assert img.size == (640, 428)
    for (col, row) in BLOCKS:
        x, y = W * col // 3 + W // 6, H * row // 3 + H // 6
        assert block_at(img, x, y) == (col, row)


def test_blocks_survive_jpeg():
    img = opened(encoded(blocks()))
    for (col, row) in BLOCKS:
        x, y = W * col // 3 + W // 6, H * row // 3 + H // 6
        assert near(img.getpixel((x, y)), BLOCKS[col, row], 8)
