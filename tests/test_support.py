"""Checks that the shared test support (support.py) is what the tests assume: the sample
images, and the pairwise generator the resize matrix is built with."""

from __future__ import annotations

import itertools

import pytest
from support import BLOCKS, H, W, all_pairs, block_at, blocks, encoded, missing_pairs, near, opened

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


# --- all_pairs ----------------------------------------------------------------------

@pytest.mark.parametrize("dimensions", [
    [("crop", "adapt"), list(range(11)), ("nearest", "bilinear", "bicubic", "antialias"),
     ("jpeg", "png", "gif", "webp", "tiff")],
    [("clip", "fill", "scale"), ("nearest", "bilinear", "bicubic", "antialias"),
     ("jpeg", "png", "gif", "webp", "tiff")],
    [range(3)] * 6,
    [range(2)] * 12,
    [range(7), range(1), range(4)],
    [("a", "b"), ("c", "d", "e")],
])
def test_all_pairs_covers_every_pair(dimensions):
    cases = all_pairs(*dimensions)
    product = list(itertools.product(*dimensions))
    assert all(case in product for case in cases)  # one value of each dimension, in order
    assert len(set(cases)) == len(cases)  # none twice
    pairs = {((k, case[k]), (m, case[m])) for case in cases
             for k in range(len(dimensions)) for m in range(k + 1, len(dimensions))}
    for k, m in itertools.combinations(range(len(dimensions)), 2):  # checked without missing_pairs
        for x, y in itertools.product(dimensions[k], dimensions[m]):
            assert ((k, x), (m, y)) in pairs, (k, x, m, y)
    assert missing_pairs(cases, *dimensions) == set()
    sizes = sorted(len(d) for d in dimensions)
    assert sizes[-1] * sizes[-2] <= len(cases) <= len(product)  # at least the largest pair's
    if len(dimensions) > 2 and sizes[-3] > 1:
        assert len(cases) < len(product)
    assert all_pairs(*dimensions) == cases  # deterministic


def test_all_pairs_of_two_dimensions_is_their_product_and_of_one_each_value():
    assert sorted(all_pairs("ab", "xyz")) == sorted(itertools.product("ab", "xyz"))
    assert all_pairs("abc") == [("a",), ("b",), ("c",)]


def test_all_pairs_is_smaller_than_the_product_of_the_resize_matrix():
    assert len(all_pairs(range(2), range(11), range(4), range(5))) < 2 * 11 * 4 * 5 // 5


def test_missing_pairs_finds_a_dropped_case():
    cases = all_pairs(range(3), range(3), range(3))
    assert missing_pairs(cases[1:], range(3), range(3), range(3))
