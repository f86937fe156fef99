"""Sample images built in code for the imaging tests (they import from here), and checks
that the samples are what the other tests assume."""

from __future__ import annotations

from io import BytesIO

from PIL import Image

from imgproxy.imaging.pipeline import Rendered, process
from imgproxy.params import Limits, Plan, Save

W, H = 640, 428
# A 3x3 grid of blocks in far-apart colours: after a crop or a rotation the colour
# at a point tells which block landed there. (column, row) -> RGB
BLOCKS = {
    (0, 0): (255, 0, 0), (1, 0): (0, 255, 0), (2, 0): (0, 0, 255),
    (0, 1): (255, 255, 0), (1, 1): (0, 255, 255), (2, 1): (255, 0, 255),
    (0, 2): (0, 0, 0), (1, 2): (128, 128, 128), (2, 2): (255, 128, 0),
}


def blocks(size: tuple[int, int] = (W, H)) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size)
    for (col, row), colour in BLOCKS.items():
        img.paste(colour, (w * col // 3, h * row // 3, w * (col + 1) // 3, h * (row + 1) // 3))
    return img


def encoded(img: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    out = BytesIO()
    if fmt == "JPEG" and "quality" not in options and "qtables" not in options:
        options["quality"] = 95
    img.save(out, fmt, **options)
    return out.getvalue()


def opened(body: bytes) -> Image.Image:
    img = Image.open(BytesIO(body))
    img.load()
    return img


def block_at(img: Image.Image, x: int, y: int) -> tuple[int, int]:
    """The block whose colour is nearest to the pixel at (x, y)."""
    pixel = img.convert("RGB").getpixel((x, y))
    return min(BLOCKS, key=lambda b: sum((p - q) ** 2 for p, q in zip(pixel, BLOCKS[b])))


def near(a, b, tolerance: int = 12) -> bool:
    a = (a,) if isinstance(a, (int, float)) else tuple(a)
    b = (b,) if isinstance(b, (int, float)) else tuple(b)
    return len(a) == len(b) and all(abs(p - q) <= tolerance for p, q in zip(a, b))


def make_plan(*ops, limits: Limits = Limits(), **save) -> Plan:
    return Plan("test", tuple(ops), Save(**save), limits)


def run(data: bytes, *ops, limits: Limits = Limits(), **save) -> tuple[Rendered, Image.Image]:
    """process() and the decoded result, with its declared size checked."""
    rendered = process(data, make_plan(*ops, limits=limits, **save))
    img = opened(rendered.body)
    assert img.size == (rendered.width, rendered.height)
    assert img.format == rendered.format
    return rendered, img


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
