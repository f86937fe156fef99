"""Resize modes x positions x filters x formats, region, rotate, face, noop and every
save option, checked on the decoded reply against an independent model.

Most tests ask the real server (the shared `proxy`: one worker) for an image that
the real loopback origin serves, decodes the reply and checks the status, the
Content-Type, the decoded format, the exact size, the mode and where known colours
landed. The resize matrix is mostly checked in-process, from the same query
strings (see below).

Sources are images of four flat quadrants (support.quadrants: red top-left, green
top-right, blue bottom-left, yellow bottom-right). What each reply should look like
is derived here from the geometry the README describes, independently of
imgproxy's code: every output pixel centre maps back to a point of the source (a
`View`), whose quadrant gives the colour, or the background where it falls outside.
Three checks follow:

* colour: pixels at least `margin` output pixels from any colour edge must match
  the expected colour within a tolerance per output format (resampling blends at
  edges, lossy formats ring, GIF quantises);
* place: every pixel at least 1.5 pixels from an edge must be nearer to its
  expected colour than to any other colour of the picture, which pins each edge
  (so the crop window, the padding and the rotation) to within about a pixel
  whatever the format;
* filter (resizes of the PNG source): the blend across each edge is worked out for
  every filter as a separable resampler computes it (support, kernel, weights per
  output pixel); the reply must be nearest to the requested filter's picture and,
  for PNG, TIFF and GIF, equal to it within rounding. For JPEG and WebP each
  filter's picture goes through the same encoder at the default quality first.

The matrix source is a PNG, so the only loss is the output format's own and
colours away from edges are exact for PNG, TIFF and GIF output; the same modes
and positions are repeated on a JPEG source, where the server decodes at a
reduced DCT scale (shrink on load) and maps the crop window onto the smaller
pixels.

The resize matrix runs twice over. In-process, every pair of (mode, position,
filter, format) values (support.all_pairs) goes through the handler's own steps
from the same query strings: parse_query -> build_plan(Settings()) ->
choose_format -> pipeline.process with the default server's imaging settings,
and the reply is checked as an HTTP one would be (Content-Type, format, mode,
size, picture, filter). clip, fill and scale show the whole source, so they do
not read pos: they are paired without it, and one test shows every position gives
them the same bytes. Over HTTP, through the shared `proxy`, a few cases use each
mode, position, filter and format at least once, so the server's path is still
tested end to end for each; region, rotate, face, noop and the save options are
asked over HTTP as before.

Each origin reply goes out in one write (support.serve_in_one_write), so the
HTTP requests of this module take little time.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin
from support import (
    QUADRANT_COLOURS,
    all_pairs,
    assert_error,
    decode,
    encode,
    missing_pairs,
    q,
    quadrants,
    serve_in_one_write,
)

from imgproxy.config import Settings
from imgproxy.delivery.negotiate import choose_format
from imgproxy.imaging import faces, pipeline
from imgproxy.options.build import build_plan
from imgproxy.options.query import parse_query
from imgproxy.render import imaging_settings

SOURCE = (640, 428)
RED, GREEN, BLUE, YELLOW = (QUADRANT_COLOURS[k] for k in ("tl", "tr", "bl", "br"))
WHITE = (255, 255, 255)
BG_HEX, BG = "f0f", (255, 0, 255)  # magenta: no quadrant colour, not black, not white
# Two boxes, so that both axes of the position show. 640x428 is 1.495:1.
WIDE = (200, 100)  # 2:1, wider than the source: the crop cuts rows, pos y moves the window
SQUARE = (100, 100)  # 1:1, narrower: the crop cuts columns, pos x moves the window
ASTRONAUT = Path(__file__).parent / "fixtures" / "astronaut.jpg"

FORMATS = {  # fmt= -> decoded format, Content-Type, decoded mode of an opaque RGB image
    "jpeg": ("JPEG", "image/jpeg", "RGB"),
    "png": ("PNG", "image/png", "RGB"),
    "gif": ("GIF", "image/gif", "P"),
    "webp": ("WEBP", "image/webp", "RGB"),
    "tiff": ("TIFF", "image/tiff", "RGB"),
}
# Per output format: (pixels from an edge before colours are compared, tolerance).
# Lossless formats are exact away from the resampling filter's reach; JPEG and WebP
# (4:2:0 chroma, 8x8 blocks) ring further and by more.
QUALITY = {"png": (4, 2), "tiff": (4, 2), "gif": (4, 2), "jpeg": (8, 40), "webp": (8, 40)}
POSITIONS = {
    "top-left": (0.0, 0.0), "top": (0.5, 0.0), "top-right": (1.0, 0.0),
    "left": (0.0, 0.5), "center": (0.5, 0.5), "right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0), "bottom": (0.5, 1.0), "bottom-right": (1.0, 1.0),
    "0.0,0.75": (0.0, 0.75), "1.0,0.25": (1.0, 0.25),
}
MODES = ("crop", "clip", "fill", "scale", "adapt")
POSITIONED = ("crop", "adapt")  # the modes that read pos (adapt when it crops)
UNPOSITIONED = ("clip", "fill", "scale")  # show the whole source: pos changes nothing
FILTERS = ("nearest", "bilinear", "bicubic", "antialias")


# --- requests -------------------------------------------------------------------

def decoded(r, fmt: str, mode: str | None = None) -> Image.Image:
    """The reply as an image, after checking status, Content-Type, format and mode."""
    assert r.status == 200, (r.status, r.body[:300])
    name, content_type, default_mode = FORMATS[fmt]
    assert r.headers["Content-Type"] == content_type
    img = decode(r.body)
    assert img.format == name
    assert img.mode == (mode or default_mode)
    return img


# The default server's settings (the shared `proxy` changes only workers and hosts).
SETTINGS = Settings()
IMAGING = imaging_settings(SETTINGS)


@dataclass
class Reply:
    """What process() made, shaped as the server's reply so the same checks read both."""
    status: int
    headers: dict
    body: bytes


def render(data: bytes, query: str) -> Reply:
    """The image handler's steps without HTTP: query -> options -> Plan -> process()."""
    plan, _ = choose_format(build_plan(parse_query(query), SETTINGS), None)
    rendered = pipeline.process(data, plan, IMAGING)
    assert decode(rendered.body).size == (rendered.width, rendered.height)
    return Reply(200, {"Content-Type": rendered.content_type}, rendered.body)


# --- the expected picture ---------------------------------------------------------

def colours_after_turn(colours: dict, degrees: int) -> dict:
    """Quadrant colours after turning the picture clockwise by a right angle."""
    for _ in range(degrees // 90 % 4):
        colours = {"tl": colours["bl"], "tr": colours["tl"], "br": colours["tr"],
                   "bl": colours["br"]}
    return colours


QUADRANTS = dict(QUADRANT_COLOURS)


@dataclass(frozen=True)
class View:
    """Output pixel centre (x, y) -> source point: sx = a x + b y + c, sy = d x + e y + f."""
    size: tuple[int, int]
    matrix: tuple[float, float, float, float, float, float]
    source: tuple[int, int] = SOURCE
    colours: dict = field(default_factory=lambda: QUADRANTS)
    bg: tuple[int, int, int] | None = None  # what shows outside the source; None: nothing may


def fit_inside(box, size):
    """The largest size inside `box` with `size`'s aspect ratio, never enlarged, rounded."""
    w, h = size
    bw, bh = min(box[0], w), min(box[1], h)
    if bw / bh >= w / h:  # the height decides
        return round(bh * w / h), bh
    return bw, round(bw * h / w)


def crop_window(box, size, pos):
    """The largest window with the box's aspect ratio, at `pos` ratios: (left, top, w, h)."""
    w, h = size
    ratio = box[0] / box[1]
    cw, ch = (h * ratio, h) if w / h > ratio else (w, w / ratio)
    return (w - cw) * pos[0], (h - ch) * pos[1], cw, ch


def kept_percent(box, size) -> float:
    """How much of the source a crop to `box` keeps: adapt crops when retain <= this."""
    _, _, cw, ch = crop_window(box, size, (0.5, 0.5))
    return cw * ch / (size[0] * size[1]) * 100


def resize_view(box, mode, pos=(0.5, 0.5), retain=75, source=SOURCE, colours=QUADRANTS,
                bg=BG) -> View:
    w, h = source
    if mode == "adapt":
        mode = "crop" if retain <= kept_percent(box, source) else "fill"
    if mode == "crop":
        left, top, cw, ch = crop_window(box, source, pos)
        return View(box, (cw / box[0], 0, left, 0, ch / box[1], top), source, colours)
    if mode == "scale":
        return View(box, (w / box[0], 0, 0, 0, h / box[1], 0), source, colours)
    fw, fh = fit_inside(box, source)
    if mode == "clip":
        return View((fw, fh), (w / fw, 0, 0, 0, h / fh, 0), source, colours)
    assert mode == "fill"
    ox, oy = (box[0] - fw) // 2, (box[1] - fh) // 2
    return View(box, (w / fw, 0, -ox * w / fw, 0, h / fh, -oy * h / fh), source, colours, bg)


def expanded_size(size, degrees):
    """Bounding box of the turned corners, ends rounded outwards (as Pillow's expand)."""
    w, h = size
    t = math.radians(degrees)
    cos, sin = math.cos(t), math.sin(t)
    xs, ys = [], []
    for x, y in ((0, 0), (w, 0), (w, h), (0, h)):
        xs.append(cos * (x - w / 2) - sin * (y - h / 2) + w / 2)
        ys.append(sin * (x - w / 2) + cos * (y - h / 2) + h / 2)
    return math.ceil(max(xs)) - math.floor(min(xs)), math.ceil(max(ys)) - math.floor(min(ys))


def rotate_view(degrees, expand=False, source=SOURCE, colours=QUADRANTS, bg=BG) -> View:
    """Turned clockwise about the centre; an expanded canvas keeps the centres together."""
    w, h = source
    if degrees % 180 == 90:
        size = (h, w)
    elif expand:
        size = expanded_size(source, degrees)
    else:
        size = source
    t = math.radians(degrees)
    cos, sin = math.cos(t), math.sin(t)
    (ox, oy), (sx, sy) = (size[0] / 2, size[1] / 2), (w / 2, h / 2)
    # inverse of the clockwise turn (y points down): (dx, dy) -> (dx cos + dy sin, -dx sin + dy cos)
    matrix = (cos, sin, sx - ox * cos - oy * sin, -sin, cos, sy + ox * sin - oy * cos)
    return View(size, matrix, source, colours, None if degrees % 90 == 0 else bg)


def expected_picture(view: View):
    """(expected RGB array, distance of each pixel to the nearest colour edge, in output px)."""
    W, H = view.size
    X, Y = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    a, b, c, d, e, f = view.matrix
    SX, SY = a * X + b * Y + c, d * X + e * Y + f
    w, h = view.source
    inside = (SX >= 0) & (SX < w) & (SY >= 0) & (SY < h)
    if view.bg is None:
        assert inside.all(), "the model maps output pixels outside the source"
    left, top = SX < w / 2, SY < h / 2
    expected = np.empty((H, W, 3), np.int16)
    for key, where in (("tl", top & left), ("tr", top & ~left),
                       ("bl", ~top & left), ("br", ~top & ~left)):
        expected[where] = view.colours[key]
    xlines, ylines = [w / 2], [h / 2]
    if view.bg is not None:
        expected[~inside] = view.bg
        xlines += [0, w]
        ylines += [0, h]
    # An affine map stretches distances to a line sx = L by 1 / |grad sx|.
    gx, gy = math.hypot(a, b), math.hypot(d, e)
    distance = np.full((H, W), np.inf)
    for line in xlines:
        distance = np.minimum(distance, np.abs(SX - line) / gx)
    for line in ylines:
        distance = np.minimum(distance, np.abs(SY - line) / gy)
    return expected, distance


def assert_picture(img: Image.Image, view: View, margin: float = 4, tolerance: int = 2,
                   place_margin: float = 1.5) -> set:
    """Check `img` against `view` (see the module docstring); returns the colours compared."""
    assert img.size == view.size
    got = np.asarray(img.convert("RGB"), dtype=np.int16)
    expected, distance = expected_picture(view)
    far = distance >= margin
    assert far.mean() > 0.2, "too few pixels far from edges to compare"
    error = np.abs(got - expected).max(axis=2)
    bad = far & (error > tolerance)
    if bad.any():
        y, x = map(int, np.argwhere(bad)[0])
        raise AssertionError(f"{int(bad.sum())} pixels off by more than {tolerance}; first at "
                             f"({x},{y}): got {tuple(got[y, x])}, expected {tuple(expected[y, x])}")
    # Placement: nearest picture colour is the expected one, up to 1.5 px from edges.
    palette = np.array(sorted({tuple(v) for v in view.colours.values()}
                              | ({view.bg} if view.bg else set())), np.int16)
    near_index = np.argmin([np.abs(got - c).sum(axis=2) for c in palette], axis=0)
    want_index = np.argmin([np.abs(expected - c).sum(axis=2) for c in palette], axis=0)
    misplaced = (distance >= place_margin) & (near_index != want_index)
    if misplaced.any():
        y, x = map(int, np.argwhere(misplaced)[0])
        raise AssertionError(f"{int(misplaced.sum())} pixels nearer another colour; first at "
                             f"({x},{y}): got {tuple(got[y, x])}, expected {tuple(expected[y, x])}")
    return {tuple(int(v) for v in palette[i]) for i in np.unique(want_index[far])}


def _bicubic(x):  # Pillow's, a = -0.5
    x = np.abs(x)
    return np.where(x < 1, (1.5 * x - 2.5) * x * x + 1,
                    np.where(x < 2, ((-0.5 * x + 2.5) * x - 4) * x + 2, 0.0))


def _lanczos(x):
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


KERNELS = {  # filter -> (support, kernel), as Pillow's resampler defines them
    "bilinear": (1.0, lambda x: np.maximum(0.0, 1 - np.abs(x))),
    "bicubic": (2.0, _bicubic),
    "antialias": (3.0, _lanczos),
}


@functools.cache
def share_before(edge_at: float, scale: float, offset: float, n: int, size: int, filter_: str,
                 tie: float) -> tuple:
    """For n output pixels whose centres map to scale * (i + 0.5) + offset (source px): the
    weight a separable resampler with `filter_` gives to source pixels before `edge_at`.
    A nearest-neighbour centre right on the edge may go either way: it gets `tie`."""
    centres = scale * (np.arange(n) + 0.5) + offset
    if filter_ == "nearest":  # the source pixel under the centre
        return tuple(np.where(np.abs(centres - edge_at) < 1e-6, tie, np.floor(centres) < edge_at))
    support, kernel = KERNELS[filter_]
    stretch = max(scale, 1.0)  # a downscale widens the kernel
    shares = []
    for centre in centres:
        if not 0 <= centre < size:  # a fill border: no source here
            shares.append(0.0)
            continue
        xs = np.arange(max(int(centre - support * stretch + 0.5), 0),
                       min(int(centre + support * stretch + 0.5), size))
        weights = kernel((xs - centre + 0.5) / stretch)
        shares.append(float(weights[xs < edge_at].sum() / weights.sum()))
    return tuple(shares)


def filtered_pictures(view: View, filter_: str) -> list:
    """What an axis-aligned resize `view` with `filter_` gives, edges blended as a separable
    resampler blends them (rows first, then columns, rounding in between). For nearest,
    two pictures when some centre is a tie (see share_before), else one."""
    a, b, c, d, e, f = view.matrix
    assert b == d == 0
    (W, H), (w, h) = view.size, view.source
    pictures = []
    for tie in ((0.0, 1.0) if filter_ == "nearest" else (0.0,)):
        left = np.array(share_before(w / 2, a, c, W, w, filter_, tie))[:, None]
        top = np.array(share_before(h / 2, e, f, H, h, filter_, tie))[:, None, None]
        col = {k: np.array(v, float) for k, v in view.colours.items()}
        upper = np.clip(np.rint(left * col["tl"] + (1 - left) * col["tr"]), 0, 255)
        lower = np.clip(np.rint(left * col["bl"] + (1 - left) * col["br"]), 0, 255)
        out = np.clip(np.rint(top * upper[None] + (1 - top) * lower[None]), 0, 255).astype(np.int16)
        if view.bg is not None:
            cx, cy = a * (np.arange(W) + 0.5) + c, e * (np.arange(H) + 0.5) + f
            out[~((cy >= 0) & (cy < h))[:, None] | ~((cx >= 0) & (cx < w))[None, :]] = view.bg
        if not any(np.array_equal(out, p) for p in pictures):
            pictures.append(out)
    return pictures


# The server's encoders for lossy output, at the default quality (q=90, README).
LOSSY = {"jpeg": ("JPEG", {"quality": 90}), "webp": ("WEBP", {"quality": 90})}


_EXPECTED: dict = {}


def _expected_replies(view: View, filter_: str, fmt: str) -> list:
    """filtered_pictures, through the lossy encoder if any; kept, as views repeat a lot."""
    key = (view.size, view.matrix, view.source, tuple(view.colours.items()), view.bg,
           filter_, fmt if fmt in LOSSY else None)
    if key not in _EXPECTED:
        pictures = filtered_pictures(view, filter_)
        if fmt in LOSSY:
            codec, options = LOSSY[fmt]
            pictures = [np.asarray(decode(encode(Image.fromarray(p.astype(np.uint8)), codec,
                                                 **options)).convert("RGB"), np.int16)
                        for p in pictures]
        _EXPECTED[key] = pictures
    return _EXPECTED[key]


def assert_filter(img: Image.Image, view: View, filter_: str, fmt: str) -> None:
    """The reply is what `filter_` makes of the view: nearer to that filter's expected
    picture than to any other filter's (lossy formats: each expected picture put through
    the same encoder first) and, for lossless formats, equal to it within rounding."""
    got = np.asarray(img.convert("RGB"), dtype=np.int16)
    errors, closest = {}, {}
    for name in FILTERS:
        pictures = _expected_replies(view, name, fmt)
        differences = [np.abs(got - p).max(axis=2) for p in pictures]
        errors[name] = min(float(d.mean()) for d in differences)
        closest[name] = np.min(differences, axis=0)  # per pixel, either tie
    assert min(errors, key=errors.get) == filter_, errors
    if fmt not in LOSSY:
        assert closest[filter_].max() <= 3, errors


def edge(img: Image.Image, axis: str, at: int, first, second) -> int:
    """Index along a row/column where colour `first` gives way to `second`."""
    px = img.convert("RGB").load()
    n = img.size[0] if axis == "x" else img.size[1]
    for i in range(n):
        p = px[i, at] if axis == "x" else px[at, i]
        if sum(abs(a - b) for a, b in zip(p, second)) < sum(abs(a - b) for a, b in zip(p, first)):
            return i
    return n


# --- sources ----------------------------------------------------------------------

PNG_SOURCE = encode(quadrants(), "PNG")
JPEG_SOURCE = encode(quadrants(), "JPEG", quality=95)


@pytest.fixture(scope="module")
def png_url(origin):
    return serve_in_one_write(origin, "/e2e/quadrants.png", PNG_SOURCE, "image/png")


@pytest.fixture(scope="module")
def jpeg_url(origin):
    return serve_in_one_write(origin, "/e2e/quadrants.jpg", JPEG_SOURCE, "image/jpeg")


def over_http(proxy, url):
    """parameters -> the server's reply for the source at `url`."""
    return lambda params: proxy.get(q(url, **params))


def in_process(data):
    """parameters -> process()'s reply for `data`, from the same query string (its url is
    never fetched: `data` stands for the source)."""
    return lambda params: render(data, q("http://127.0.0.1/in-process", **params))


def resize_requests(mode: str):
    """(box, retain, mode the server should apply) for each request of one matrix case.

    adapt crops when retain <= the percentage a crop keeps: 74.77 for WIDE (320 of 428
    rows), 66.88 for SQUARE (428 of 640 columns); each box is asked on both sides.
    """
    if mode != "adapt":
        return [(WIDE, None, mode), (SQUARE, None, mode)]
    return [(WIDE, 74, "crop"), (WIDE, None, "fill"),  # default retain 75 > 74.77
            (SQUARE, 66, "crop"), (SQUARE, 67, "fill")]


def resize_params(box, mode, pos_name, filter_, fmt, retain=None) -> dict:
    """The query parameters of one request, but the url."""
    params = {"w": box[0], "h": box[1], "mode": mode, "filter": filter_, "fmt": fmt, "bg": BG_HEX}
    if pos_name is not None:  # None: the mode does not read pos, so none is sent
        params["pos"] = pos_name
    if retain is not None:
        params["retain"] = retain
    return params


def check_resize(get, box, retain, applied, mode, pos_name, filter_, fmt,
                 margin, tolerance, exact_source=True):
    img = decoded(get(resize_params(box, mode, pos_name, filter_, fmt, retain)), fmt)
    pos = POSITIONS[pos_name] if pos_name is not None else (0.5, 0.5)
    view = resize_view(box, applied, pos)
    assert img.size == view.size  # before pixels, so a wrong size reads as one
    colours = assert_picture(img, view, margin, tolerance)
    if exact_source:  # a lossless source: the edges' blend shows which filter ran
        assert_filter(img, view, filter_, fmt)
    if applied == "crop":
        assert pos_name is not None, "a crop is asked with its position"
        # The window's place, read off the picture: where red gives way to blue down the
        # left column (WIDE) or to green along the top row (SQUARE).
        if box == WIDE:  # window 640x320 of 428 rows, top at 108 * y: edge at (214 - top) / 3.2
            want = (214 - 108 * pos[1]) / 3.2
            assert abs(edge(img, "y", 10, RED, BLUE) - want) <= 1.5
        else:  # window 428x428 of 640 columns, left at 212 * x: edge at (320 - left) / 4.28
            want = (320 - 212 * pos[0]) / 4.28
            assert abs(edge(img, "x", 10, RED, GREEN) - want) <= 1.5
        assert colours == {RED, GREEN, BLUE, YELLOW}
    elif applied == "fill":
        assert BG in colours and {RED, GREEN, BLUE, YELLOW} <= colours
    else:  # clip and scale show the whole source: the four colours in the four corners
        inset = margin
        w, h = img.size
        corners = [img.convert("RGB").getpixel(p) for p in
                   ((inset, inset), (w - 1 - inset, inset), (inset, h - 1 - inset),
                    (w - 1 - inset, h - 1 - inset))]
        assert [min((RED, GREEN, BLUE, YELLOW), key=lambda c: sum(abs(a - b) for a, b in zip(c, p)))
                for p in corners] == [RED, GREEN, BLUE, YELLOW]
    return img


def check_case(get, mode, pos_name, filter_, fmt, margin, tolerance, exact_source=True):
    for box, retain, applied in resize_requests(mode):
        check_resize(get, box, retain, applied, mode, pos_name, filter_, fmt,
                     margin, tolerance, exact_source)


# --- 1. the matrix ----------------------------------------------------------------

# In-process: every pair of values; pos only with the modes that read it.
MATRIX = (all_pairs(POSITIONED, list(POSITIONS), FILTERS, list(FORMATS))
          + [(mode, None, filter_, fmt) for mode, filter_, fmt
             in all_pairs(UNPOSITIONED, FILTERS, list(FORMATS))])
# Over HTTP: each mode, position, filter and format at least once.
HTTP_MATRIX = ([(POSITIONED[i % 2], pos, FILTERS[i % len(FILTERS)], list(FORMATS)[i % len(FORMATS)])
                for i, pos in enumerate(POSITIONS)]
               + [(mode, None, FILTERS[i + 1], list(FORMATS)[i + 2]) for i, mode in enumerate(UNPOSITIONED)])


def test_matrix_cases_cover_every_pair_and_every_value_over_http():
    positioned = [case for case in MATRIX if case[0] in POSITIONED]
    assert missing_pairs(positioned, POSITIONED, list(POSITIONS), FILTERS, list(FORMATS)) == set()
    unpositioned = [(mode, filter_, fmt) for mode, pos, filter_, fmt in MATRIX if mode in UNPOSITIONED]
    assert missing_pairs(unpositioned, UNPOSITIONED, FILTERS, list(FORMATS)) == set()
    assert len(positioned) + len(unpositioned) == len(MATRIX) < 100  # not the product's 1,100
    for values in (MODES, POSITIONS, FILTERS, FORMATS):  # and each value over HTTP
        assert set(values) <= {v for case in HTTP_MATRIX for v in case}
    assert all(case[1] is not None for case in HTTP_MATRIX if case[0] in POSITIONED)
    assert missing_pairs(JPEG_MATRIX[:-len(UNPOSITIONED)], POSITIONED, list(POSITIONS)) == set()


@pytest.mark.parametrize("mode, pos_name, filter_, fmt", MATRIX)
def test_resize_matrix(mode, pos_name, filter_, fmt):
    margin, tolerance = QUALITY[fmt]
    check_case(in_process(PNG_SOURCE), mode, pos_name, filter_, fmt, margin, tolerance)


@pytest.mark.parametrize("mode, pos_name, filter_, fmt", HTTP_MATRIX)
def test_resize_matrix_over_http(proxy, png_url, mode, pos_name, filter_, fmt):
    margin, tolerance = QUALITY[fmt]
    check_case(over_http(proxy, png_url), mode, pos_name, filter_, fmt, margin, tolerance)


@pytest.mark.parametrize("mode", UNPOSITIONED)
def test_modes_showing_the_whole_source_ignore_the_position(mode):
    """Why the matrix pairs clip, fill and scale without pos: every pos gives the same bytes."""
    for box in (WIDE, SQUARE):
        get = in_process(PNG_SOURCE)
        without = get(resize_params(box, mode, None, "bicubic", "png")).body
        for pos_name in POSITIONS:
            assert get(resize_params(box, mode, pos_name, "bicubic", "png")).body == without, pos_name


# A JPEG source is decoded at 1/2 or less of its size first; geometry must not move.
# Its edges are soft by a block or so; at 1/3 to 1/6 scale that is ~3 px.
JPEG_MATRIX = all_pairs(POSITIONED, list(POSITIONS)) + [(mode, None) for mode in UNPOSITIONED]


@pytest.mark.parametrize("mode, pos_name", JPEG_MATRIX)
def test_resize_modes_and_positions_on_a_jpeg_source(mode, pos_name):
    check_case(in_process(JPEG_SOURCE), mode, pos_name, "antialias", "png", margin=6, tolerance=24,
               exact_source=False)


@pytest.mark.parametrize("mode, pos_name", [("crop", "bottom-right"), ("adapt", "0.0,0.75"), ("clip", None)])
def test_resize_modes_and_positions_on_a_jpeg_source_over_http(proxy, jpeg_url, mode, pos_name):
    check_case(over_http(proxy, jpeg_url), mode, pos_name, "antialias", "png", margin=6, tolerance=24,
               exact_source=False)


def test_expected_sizes_checked_by_hand(proxy, png_url):
    """The model's sizes, worked out on paper for 640x428 (ratio 1.4953)."""
    assert fit_inside(WIDE, SOURCE) == (150, 100)  # 100 * 1.4953 = 149.5 -> 150
    assert fit_inside(SQUARE, SOURCE) == (100, 67)  # 100 / 1.4953 = 66.9 -> 67
    assert round(kept_percent(WIDE, SOURCE), 2) == 74.77  # 320 / 428
    assert round(kept_percent(SQUARE, SOURCE), 2) == 66.88  # 428 / 640
    cases = [  # query, size
        ("w=200&h=100&mode=clip", (150, 100)),
        ("w=100&h=100&mode=clip", (100, 67)),
        ("w=500&h=400&mode=clip", (500, 334)),  # the README's example
        ("w=2000&h=1000&mode=clip", (640, 428)),  # never enlarged
        ("w=2000&h=1000&mode=fill", (2000, 1000)),
        ("w=2000&h=1000&mode=scale", (2000, 1000)),
        ("w=100", (100, 66)),  # 66.9, truncated as Pilbox does
        ("h=100", (149, 100)),  # 149.5, truncated
    ]
    for query, size in cases:
        r = proxy.get(q(png_url, bg=BG_HEX) + "&" + query)
        assert decoded(r, "png").size == size, query


def test_fill_with_the_default_background_is_transparent(proxy, png_url):
    """bg defaults to 0fff: PNG keeps the padding transparent, JPEG flattens it to white."""
    img = decoded(proxy.get(q(png_url, w=200, h=100, mode="fill")), "png", mode="RGBA")
    assert img.getpixel((5, 50))[3] == 0 and img.getpixel((194, 50))[3] == 0
    assert img.getpixel((40, 20)) == RED + (255,) and img.getpixel((160, 80)) == YELLOW + (255,)
    img = decoded(proxy.get(q(png_url, w=200, h=100, mode="fill", fmt="jpeg")), "jpeg")
    assert_picture(img, resize_view(WIDE, "fill", bg=WHITE), *QUALITY["jpeg"])


# --- 2. region --------------------------------------------------------------------

def test_region_inside_is_exact(proxy, png_url):
    # 40x28 around the centre (320, 214): 20 columns and 14 rows of each quadrant.
    img = decoded(proxy.get(q(png_url, op="region", rect="300,200,40,28")), "png")
    assert img.size == (40, 28)
    got = np.asarray(img)
    assert (got[:14, :20] == RED).all() and (got[:14, 20:] == GREEN).all()
    assert (got[14:, :20] == BLUE).all() and (got[14:, 20:] == YELLOW).all()


@pytest.mark.parametrize("rect, size, colour", [
    ("10,20,100,50", (100, 50), RED),
    ("540,328,100,100", (100, 100), YELLOW),  # touches the bottom-right corner exactly
    ("0,214,320,214", (320, 214), BLUE),
    ("320,0,320,214", (320, 214), GREEN),
])
def test_region_of_a_jpeg(proxy, jpeg_url, rect, size, colour):
    img = decoded(proxy.get(q(jpeg_url, op="region", rect=rect)), "jpeg")
    assert img.size == size
    x, y = (int(v) for v in rect.split(",")[:2])
    # Pixel (i, j) of the region is (x + i, y + j) of the source; the source JPEG is soft
    # for a block or so either side of its colour edges, so those rows stay out.
    colours = assert_picture(img, View(size, (1, 0, x, 0, 1, y)), margin=8, tolerance=12)
    assert colours == {colour}


@pytest.mark.parametrize("rect", ["600,400,100,100", "541,0,100,10", "0,329,10,100",
                                  "640,0,1,1", "0,428,1,1"])
def test_region_outside_is_400_11(proxy, png_url, rect):
    assert_error(proxy.get(q(png_url, op="region", rect=rect)), 400, 11)


def test_region_after_resize_uses_the_resized_size(proxy, png_url):
    # w=320 makes 320x214; the rectangle is checked against that, not 640x428.
    assert_error(proxy.get(q(png_url, op="resize,region", w=320, rect="0,0,321,10")), 400, 11)
    img = decoded(proxy.get(q(png_url, op="resize,region", w=320, rect="160,107,160,107")), "png")
    assert img.size == (160, 107)  # the bottom-right quarter of 320x214: yellow
    colours = assert_picture(img, View((160, 107), (2, 0, 320, 0, 2, 214)))
    assert colours == {YELLOW}


def test_region_then_resize(proxy, png_url):
    img = decoded(proxy.get(q(png_url, op="region,resize", rect="320,0,320,214", w=100)), "png")
    assert img.size == (100, 66)  # 100 * 214 / 320 = 66.9, truncated
    assert img.getextrema() == ((0, 0), (255, 255), (0, 0))  # all green


def test_region_after_rotate_uses_the_turned_picture(proxy, png_url):
    # Turned 90 clockwise, the top-left corner holds what was bottom-left: blue.
    img = decoded(proxy.get(q(png_url, op="rotate,region", deg=90, rect="0,0,100,100")), "png")
    assert img.size == (100, 100) and img.getextrema() == ((0, 0), (0, 0), (255, 255))


# --- 3. rotate --------------------------------------------------------------------

@pytest.mark.parametrize("deg, size, red_corner", [
    (90, (428, 640), "top-right"),
    (180, (640, 428), "bottom-right"),
    (270, (428, 640), "bottom-left"),
])
@pytest.mark.parametrize("source", ["png", "jpeg"])
def test_right_angles(proxy, png_url, jpeg_url, source, deg, size, red_corner):
    url = png_url if source == "png" else jpeg_url
    img = decoded(proxy.get(q(url, op="rotate", deg=deg)), source)
    assert img.size == size
    w, h = size
    corner = {"top-right": (w - 20, 20), "bottom-right": (w - 20, h - 20),
              "bottom-left": (20, h - 20)}[red_corner]
    assert sum(abs(a - b) for a, b in zip(img.convert("RGB").getpixel(corner), RED)) < 40
    view = rotate_view(deg)
    if source == "png":
        assert_picture(img, view, margin=1, tolerance=0)  # transposes are exact
    else:
        assert_picture(img, view, margin=8, tolerance=40)


@pytest.mark.parametrize("expand, size", [("0", (640, 428)), ("1", (756, 756))])
def test_45_degrees(proxy, png_url, expand, size):
    """Corners: the bg colour. Expanded: the turned corners are at 320 +- 377.6 and
    214 +- 377.6 ((640 + 428) / 2 * cos 45), so x -57.6..697.6 -> -58..698, 756 wide,
    and y -163.6..591.6 -> -164..592, 756 high."""
    img = decoded(proxy.get(q(png_url, op="rotate", deg=45, expand=expand, bg=BG_HEX)), "png")
    assert img.size == size == rotate_view(45, expand == "1").size
    assert img.getpixel((0, 0)) == img.getpixel((size[0] - 1, size[1] - 1)) == BG
    colours = assert_picture(img, rotate_view(45, expand == "1"), margin=2, tolerance=2)
    assert colours == {RED, GREEN, BLUE, YELLOW, BG}


def test_30_degrees_expanded_with_the_rotation_formula(proxy, jpeg_url):
    """w' = 640 cos 30 + 428 sin 30 = 768.3 (x -64.1..704.1 -> 770), h' = 640 sin 30 +
    428 cos 30 = 690.7 (y -131.3..559.3 -> 692)."""
    assert expanded_size(SOURCE, 30) == (770, 692)
    img = decoded(proxy.get(q(jpeg_url, op="rotate", deg=30, expand=1, bg="000")), "jpeg")
    assert img.size == (770, 692)
    assert_picture(img, rotate_view(30, True, bg=(0, 0, 0)), margin=8, tolerance=40)


def test_rotate_with_transparent_background_keeps_alpha_in_png(proxy, png_url):
    img = decoded(proxy.get(q(png_url, op="rotate", deg=45, bg="0fff")), "png", mode="RGBA")
    assert img.size == SOURCE
    alpha = np.asarray(img.getchannel("A"))
    assert alpha[0, 0] == alpha[-1, -1] == alpha[0, -1] == alpha[-1, 0] == 0  # the corners
    assert (alpha[164:264, 270:370] == 255).all()  # the middle
    assert_picture(img, rotate_view(45, bg=WHITE), margin=2, tolerance=2)  # see-through white


def exif_jpeg(orientation: int | None, size=SOURCE, turned_back: int = 0) -> bytes:
    """A JPEG whose pixels are the quadrants turned counter-clockwise by `turned_back`
    degrees, tagged with `orientation`: a viewer honouring it shows the quadrants."""
    img = quadrants(size)
    if turned_back:
        img = img.rotate(turned_back, expand=True)  # counter-clockwise
    exif = Image.Exif()
    exif[0x010F] = "imgproxy-test"  # Make
    if orientation is not None:
        exif[0x0112] = orientation
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation, turned_back", [(3, 180), (6, 90), (8, 270)])
def test_auto_rotation_from_exif(proxy, origin, orientation, turned_back):
    """Orientation 6 means 'turn 90 clockwise to view': the stored pixels are the upright
    picture turned 90 counter-clockwise; the server turns them back."""
    data = exif_jpeg(orientation, turned_back=turned_back)
    stored = decode(data).size
    url = serve_in_one_write(origin, f"/e2e/exif-{orientation}.jpg", data)
    img = decoded(proxy.get(q(url, op="rotate", deg="auto")), "jpeg")
    assert stored == ((428, 640) if orientation in (6, 8) else SOURCE)
    assert img.size == SOURCE  # upright again
    assert_picture(img, View(SOURCE, (1, 0, 0, 0, 1, 0)), margin=8, tolerance=40)
    assert "exif" not in img.info  # dropped by default

    # exif=1 keeps the tags, with Orientation reset so viewers do not turn it again.
    img = decoded(proxy.get(q(url, op="rotate", deg="auto", exif=1)), "jpeg")
    tags = img.getexif()
    assert tags[0x010F] == "imgproxy-test" and tags.get(0x0112) == 1

    # rotate then resize: the resize sees the upright 640x428 picture
    img = decoded(proxy.get(q(url, op="rotate,resize", deg="auto", w=200, h=100, pos="top")),
                  "jpeg")
    assert img.size == WIDE
    assert_picture(img, resize_view(WIDE, "crop", (0.5, 0.0)), margin=8, tolerance=40)


@pytest.mark.parametrize("name, data, fmt", [
    ("png-with-exif-6", "png-exif", "png"),  # EXIF orientation applies to JPEGs only
    ("png", "png", "png"),
    ("jpeg-without-exif", "jpeg", "jpeg"),
    ("jpeg-orientation-1", "jpeg-1", "jpeg"),
])
def test_auto_rotation_leaves_these_alone(proxy, origin, name, data, fmt):
    body = {
        "png-exif": lambda: encode(quadrants(), "PNG", exif=_exif(6)),
        "png": lambda: encode(quadrants(), "PNG"),
        "jpeg": lambda: encode(quadrants(), "JPEG", quality=95),
        "jpeg-1": lambda: exif_jpeg(1),
    }[data]()
    url = serve_in_one_write(origin, f"/e2e/auto-{name}", body, "image/" + fmt)
    img = decoded(proxy.get(q(url, op="rotate", deg="auto")), fmt)
    assert img.size == SOURCE
    assert_picture(img, View(SOURCE, (1, 0, 0, 0, 1, 0)), *QUALITY[fmt])


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


@pytest.mark.parametrize("source", ["png", "jpeg"])
def test_rotate_resize_chains(proxy, png_url, jpeg_url, source):
    url = png_url if source == "png" else jpeg_url
    margin, tolerance = QUALITY[source]
    turned = colours_after_turn(QUADRANTS, 90)
    assert turned == {"tl": BLUE, "tr": RED, "bl": YELLOW, "br": GREEN}
    # 90 then w=100: 428x640 -> 100x149 (100 * 640 / 428 = 149.5, truncated)
    img = decoded(proxy.get(q(url, op="rotate,resize", deg=90, w=100)), source)
    assert img.size == (100, 149)
    assert_picture(img, resize_view((100, 149), "crop", source=(428, 640), colours=turned),
                   margin, tolerance)
    # 90 then a 2:1 crop at the top: only the upper half of the turned picture (blue | red)
    img = decoded(proxy.get(q(url, op="rotate,resize", deg=90, w=100, h=50, pos="top")), source)
    assert img.size == (100, 50)
    colours = assert_picture(img, resize_view((100, 50), "crop", (0.5, 0.0), source=(428, 640),
                                              colours=turned), margin, tolerance)
    assert colours == {BLUE, RED}
    # resize then rotate: 320x214 turned is 214x320
    img = decoded(proxy.get(q(url, op="resize,rotate", w=320, deg=270)), source)
    assert img.size == (214, 320)
    assert_picture(img, rotate_view(270, source=(320, 214)), margin, tolerance)
    # 30 degrees expanded, then fitted into 200x200
    img = decoded(proxy.get(q(url, op="rotate,resize", deg=30, expand=1, bg=BG_HEX, w=200,
                              h=200, mode="clip")), source)
    assert img.size == fit_inside((200, 200), (770, 692)) == (200, 180)  # 200 * 692 / 770


# --- 4. face ----------------------------------------------------------------------

def best_offset(output: Image.Image, scaled: Image.Image, axis: str) -> int:
    """Offset along `axis` of the window of `scaled` that `output` matches best."""
    out = np.asarray(output.convert("RGB"), np.float32)
    ref = np.asarray(scaled.convert("RGB"), np.float32)
    n = (ref.shape[1] - out.shape[1]) if axis == "x" else (ref.shape[0] - out.shape[0])
    errors = []
    for i in range(n + 1):
        part = ref[:, i:i + out.shape[1]] if axis == "x" else ref[i:i + out.shape[0]]
        errors.append(float(((part - out) ** 2).mean()))
    return int(np.argmin(errors))


@pytest.mark.parametrize("box, axis", [((40, 200), "x"), ((200, 40), "y")])
def test_face_crop_keeps_the_face(proxy, origin, box, axis):
    data = ASTRONAUT.read_bytes()
    source = decode(data)
    found = faces.detect(source)
    assert len(found) == 1
    fl, ft, fr, fb = (v * 256 for v in found[0])
    url = serve_in_one_write(origin, "/e2e/astronaut.jpg", data)
    scale = max(box) / 256  # the window spans the whole source on the long side
    scaled = source.resize((round(256 * scale),) * 2, Image.Resampling.LANCZOS)
    offsets = {}
    for pos in ("face", "center"):
        img = decoded(proxy.get(q(url, w=box[0], h=box[1], pos=pos)), "jpeg")
        assert img.size == box
        offsets[pos] = best_offset(img, scaled, axis) / scale  # in source pixels
    window = (box[0] if axis == "x" else box[1]) / scale  # 51.2 source pixels
    centre = (fl + fr) / 2 if axis == "x" else (ft + fb) / 2
    # the face crop's window holds the face centre; the centre crop's sits mid-image
    assert offsets["face"] <= centre <= offsets["face"] + window
    assert abs(offsets["center"] - (256 - window) / 2) <= 2
    assert abs(offsets["face"] - offsets["center"]) >= 8
    # and it sits where pos=face says: the focal point's ratios place the window
    assert abs(offsets["face"] - (256 - window) * centre / 256) <= 2


# --- 5. noop ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", list(FORMATS))
def test_noop_returns_identical_bytes(proxy, origin, fmt):
    name, content_type, _ = FORMATS[fmt]
    img = quadrants((64, 40))
    data = encode(img.quantize(4) if fmt == "gif" else img, name)
    url = serve_in_one_write(origin, f"/e2e/noop.{fmt}", data, "application/octet-stream")
    r = proxy.get(q(url, op="noop"))
    assert r.status == 200 and r.body == data
    assert r.headers["Content-Type"] == content_type
    out = decode(r.body)
    assert (out.format, out.size) == (name, (64, 40))


# --- 6. save options --------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_quality_changes_the_size(proxy, png_url, fmt):
    sizes = {}
    for quality in (20, 95):
        r = proxy.get(q(png_url, w=320, h=214, fmt=fmt, q=quality))
        img = decoded(r, fmt)
        assert img.size == (320, 214)
        assert_picture(img, resize_view((320, 214), "crop"), margin=8, tolerance=60)
        sizes[quality] = len(r.body)
    assert sizes[20] < sizes[95]


def test_quality_keep_reuses_the_source_tables(proxy, origin):
    data = encode(quadrants(), "JPEG", quality=30, subsampling=0)  # 4:4:4
    source = decode(data)
    url = serve_in_one_write(origin, "/e2e/q30.jpg", data)
    kept = decoded(proxy.get(q(url, w=320, h=214, q="keep")), "jpeg")
    default = decoded(proxy.get(q(url, w=320, h=214)), "jpeg")
    assert kept.size == default.size == (320, 214)
    assert kept.quantization == source.quantization
    assert JpegImagePlugin.get_sampling(kept) == 0  # the source's subsampling
    assert default.quantization != source.quantization  # quality 90's tables
    assert_picture(kept, resize_view((320, 214), "crop"), margin=8, tolerance=60)
    # A WebP has no tables to keep: q=keep means WebP's default quality, 90.
    r = proxy.get(q(url, w=320, h=214, q="keep", fmt="webp"))
    assert decoded(r, "webp").size == (320, 214)
    assert r.body == proxy.get(q(url, w=320, h=214, q=90, fmt="webp")).body


def test_progressive(proxy, jpeg_url):
    plain = decoded(proxy.get(q(jpeg_url, w=200, h=100)), "jpeg")
    progressive = decoded(proxy.get(q(jpeg_url, w=200, h=100, prog=1)), "jpeg")
    assert "progressive" not in plain.info and "progression" not in plain.info
    assert progressive.info.get("progressive") or progressive.info.get("progression")
    assert progressive.size == WIDE
    assert_picture(progressive, resize_view(WIDE, "crop"), *QUALITY["jpeg"])


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_optimize(proxy, jpeg_url, fmt):
    plain = proxy.get(q(jpeg_url, w=320, h=214, fmt=fmt))
    optimised = proxy.get(q(jpeg_url, w=320, h=214, fmt=fmt, opt=1))
    a, b = decoded(plain, fmt), decoded(optimised, fmt)
    assert len(optimised.body) <= len(plain.body)
    assert plain.body != optimised.body  # the option reached the encoder
    assert a.size == b.size == (320, 214)
    assert np.array_equal(np.asarray(a), np.asarray(b))  # lossless: same pixels


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp"])
def test_exif_kept_on_request_and_dropped_by_default(proxy, origin, fmt):
    data = exif_jpeg(None)
    source_exif = decode(data).info["exif"]
    url = serve_in_one_write(origin, "/e2e/exif.jpg", data)
    kept = decoded(proxy.get(q(url, w=200, h=100, fmt=fmt, exif=1)), fmt)
    dropped = decoded(proxy.get(q(url, w=200, h=100, fmt=fmt)), fmt)
    assert kept.size == dropped.size == WIDE
    assert kept.getexif()[0x010F] == "imgproxy-test"
    if fmt == "jpeg":
        assert kept.info["exif"] == source_exif  # byte for byte
    assert "exif" not in dropped.info and 0x010F not in dropped.getexif()


def test_transparent_png_flattened_onto_bg(proxy, origin):
    """Three 40-column stripes: transparent green, red at half alpha, opaque red."""
    img = Image.new("RGBA", (120, 60), (0, 255, 0, 0))
    img.paste((255, 0, 0, 128), (40, 0, 80, 60))
    img.paste((255, 0, 0, 255), (80, 0, 120, 60))
    url = serve_in_one_write(origin, "/e2e/alpha.png", encode(img, "PNG"), "image/png")

    def stripes(out):
        return [out.convert("RGB").getpixel((x, 30)) for x in (20, 60, 100)]

    def close(a, b, tolerance=40):
        return all(abs(x - y) <= tolerance for x, y in zip(a, b))

    out = decoded(proxy.get(q(url, w=120, h=60, fmt="jpeg", bg="00f")), "jpeg")
    assert out.size == (120, 60)
    got = stripes(out)
    assert close(got[0], BLUE) and close(got[1], (128, 0, 127)) and close(got[2], RED), got
    out = decoded(proxy.get(q(url, w=120, h=60, fmt="jpeg")), "jpeg")  # default bg: white
    got = stripes(out)
    assert close(got[0], WHITE) and close(got[1], (255, 127, 127)) and close(got[2], RED), got
    out = decoded(proxy.get(q(url, w=120, h=60, fmt="png", bg="00f")), "png", mode="RGBA")
    # composited onto the opaque bg, as Pilbox does for PNG too
    assert [out.getpixel((x, 30))[3] for x in (20, 60, 100)] == [255, 255, 255]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_format_defaults_to_the_source_format(proxy, origin, fmt):
    name = FORMATS[fmt][0]
    img = quadrants()
    data = encode(img.quantize(4) if fmt == "gif" else img, name)
    url = serve_in_one_write(origin, f"/e2e/keep-format.{fmt}", data, "application/octet-stream")
    out = decoded(proxy.get(q(url, w=160)), fmt)  # 160 x 428/4 = 107 exactly
    assert out.size == (160, 107)
    assert_picture(out, resize_view((160, 107), "crop"), *QUALITY[fmt])
