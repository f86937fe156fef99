"""SVG sources: sanitise, then rasterise with resvg straight at the target size.

The renderer (resvg, through the resvg_py wheel) reads local files named by
`<image href>` and `<feImage href>`, so nothing reaches it unchecked: the bytes are
parsed here with expat (no DTD, no entities), every element and attribute is
walked, and what the renderer gets is this module's own serialisation of the
tree it checked, so the two parsers cannot disagree about what the document says.

Refused, with a one-line reason (errors.unsafe_image, 422): a DTD or entity,
`<script>`, `<foreignObject>`, CSS `@import` or escapes, any href or src other
than `#fragment` or a base64 `data:image/(png|jpeg|gif|webp)` URI (whose header
is checked against the source pixel cap), any `url(...)` other than `url(#id)`,
reference cycles, and more elements, nesting or `<use>` expansion than the caps;
`<feMorphology>` and large `<feConvolveMatrix>` kernels (CPU time; the other filters'
cost is bounded by the canvas and left to the worker's deadline).
Sizes: the canvas at the target size must fit max_output_pixels (413).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import warnings
from io import BytesIO
from pathlib import Path
from xml.etree import ElementTree as ET
from xml.parsers import expat

import resvg_py
from PIL import Image

from .. import errors
from .settings import ImagingSettings

MAX_BYTES = 4 * 1024 * 1024  # the SVG text itself, embedded images included
MAX_ELEMENTS = 10_000
MAX_DEPTH = 64
MAX_EXPANDED = 100_000  # elements once every <use> and url(#id) is counted at each place it is drawn
MAX_DATA_URI = 2 * 1024 * 1024  # one embedded image, base64 text

SVG_NS = "http://www.w3.org/2000/svg"
_SNIFF = 4096  # an SVG says `<svg` within its first bytes (after an XML declaration, comments)

FONT = Path(__file__).resolve().parent / "fonts" / "DejaVuSans.ttf"
_FONT_FAMILY = "DejaVu Sans"
_FONTS = dict(  # every family, generic or named, falls back to the one font shipped
    skip_system_fonts=True, font_files=[str(FONT)], font_family=_FONT_FAMILY,
    serif_family=_FONT_FAMILY, sans_serif_family=_FONT_FAMILY, cursive_family=_FONT_FAMILY,
    fantasy_family=_FONT_FAMILY, monospace_family=_FONT_FAMILY,
)

_REFUSED_ELEMENTS = {"script", "foreignObject"}
# resvg's feMorphology visits radius_x x radius_y pixels for each pixel, in device
# pixels: radius 50 on a 2000x2000 canvas took 500 s. Its radius scales with every
# transform, so no cap on the number is safe: it is refused, being rare outside demos.
_COSTLY_ELEMENTS = {"feMorphology": "its cost grows with the square of its radius"}
MAX_KERNEL_ORDER = 5  # feConvolveMatrix: order x order multiplications per pixel
_REFERENCE_ATTRIBUTES = {"href", "src"}  # in any namespace: href, xlink:href, src
_DATA_URI = re.compile(r"data:image/(png|jpeg|jpg|gif|webp);base64,([A-Za-z0-9+/=\s]*)", re.IGNORECASE | re.DOTALL)
_DATA_FORMATS = ["PNG", "JPEG", "GIF", "WEBP"]
_URL = re.compile(r"url\s*\(", re.IGNORECASE)
_FRAGMENT = re.compile(r"#[^\s'\"()#\\]+")
_LENGTH = re.compile(r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(px|pt|pc|mm|cm|in|em|ex|%)?\s*")
_UNITS = {None: 1.0, "px": 1.0, "pt": 4 / 3, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0,
          "em": 16.0, "ex": 8.0}  # em and ex: resvg's default font size, 16


class _Refused(Exception):
    """Raised inside expat's handlers; becomes errors.unsafe_image."""


def looks_like_svg(data: bytes) -> bool:
    return b"<svg" in data[:_SNIFF]


def svg_size(data: bytes, settings: ImagingSettings) -> tuple[int, int]:
    """The SVG's own size in pixels (rounded up, as resvg does), after every check."""
    _, size = _sanitise(data, settings)
    return _whole(size)


def rasterize(data: bytes, width: int | None, height: int | None,
              settings: ImagingSettings) -> Image.Image:
    """Render `data` at width x height (RGBA); its own size when neither is given, and
    the aspect ratio fixes the missing one when one is. With both, the SVG's
    preserveAspectRatio places the drawing in that box (centred and whole by default)."""
    root, size = _sanitise(data, settings)
    target = target_size(size, width, height)
    if target[0] * target[1] > settings.max_output_pixels:
        raise errors.image_too_large(
            f"SVG canvas {target[0]}x{target[1]} is more than {settings.max_output_pixels} pixels")
    # Render at the target size: the viewport becomes the target, and a viewBox (the
    # SVG's own, else one of its own size) scales the drawing into it.
    if root.get("viewBox") is None:
        root.set("viewBox", f"0 0 {size[0]:g} {size[1]:g}")
    root.set("width", str(target[0]))
    root.set("height", str(target[1]))
    text = ET.tostring(root, encoding="unicode")
    try:
        png = resvg_py.svg_to_bytes(svg_string=text, **_FONTS)
    except Exception as e:  # resvg's own refusal of what passed our checks
        raise errors.broken_image(f"SVG could not be rendered: {e}") from None
    img = Image.open(BytesIO(png))
    img.load()
    if img.size != target:  # resvg rounds the viewport up; ours is whole already
        raise errors.internal(f"SVG rendered at {img.size[0]}x{img.size[1]}, not {target[0]}x{target[1]}")
    return img.convert("RGBA")


def target_size(size: tuple[float, float], width: int | None, height: int | None) -> tuple[int, int]:
    for name, value in (("width", width), ("height", height)):
        if value is not None and value < 1:
            raise errors.bad_request(errors.Code.DIMENSIONS, f"SVG {name} must be at least 1, not {value}")
    if width and height:
        return width, height
    if width:
        return width, max(1, round(width * size[1] / size[0]))
    if height:
        return max(1, round(height * size[0] / size[1])), height
    return _whole(size)


def _whole(size: tuple[float, float]) -> tuple[int, int]:
    return max(1, math.ceil(size[0] - 1e-9)), max(1, math.ceil(size[1] - 1e-9))


# --- checks -------------------------------------------------------------------------------

def _sanitise(data: bytes, settings: ImagingSettings) -> tuple[ET.Element, tuple[float, float]]:
    """The checked tree and its intrinsic size in px; every refusal is a ProxyError."""
    if len(data) > MAX_BYTES:
        raise errors.image_too_large(f"SVG is {len(data)} bytes, more than {MAX_BYTES}")
    if not looks_like_svg(data):
        raise errors.unsupported_image("Not an SVG image (no <svg> element at its start)")
    try:
        root = _parse(data)
    except _Refused as e:
        raise errors.unsafe_image(f"SVG refused: {e}") from None
    except expat.ExpatError as e:
        raise errors.broken_image(f"Broken SVG (malformed XML): {expat.ErrorString(e.code)}, "
                                  f"line {e.lineno}") from None
    if root.tag != f"{{{SVG_NS}}}svg":
        raise errors.unsupported_image("Not an SVG image (its root is not an <svg> element in the SVG namespace)")
    try:
        _check_content(root, settings)
    except _Refused as e:
        raise errors.unsafe_image(f"SVG refused: {e}") from None
    return root, _intrinsic_size(root)


def _parse(data: bytes) -> ET.Element:
    """An ElementTree from expat with every DTD, entity and element-count hook refusing."""
    parser = expat.ParserCreate(namespace_separator="}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[ET.Element] = []
    top: list[ET.Element] = []
    count = 0
    text: list[str] = []

    def flush() -> None:
        if text and stack:
            joined = "".join(text)
            last = stack[-1]
            if len(last):
                last[-1].tail = (last[-1].tail or "") + joined
            else:
                last.text = (last.text or "") + joined
        text.clear()

    def qualified(name: str) -> str:
        return "{" + name if "}" in name else name

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal count
        flush()
        count += 1
        if count > MAX_ELEMENTS:
            raise _Refused(f"more than {MAX_ELEMENTS} elements")
        if len(stack) >= MAX_DEPTH:
            raise _Refused(f"elements nested more than {MAX_DEPTH} deep")
        element = ET.Element(qualified(name), {qualified(k): v for k, v in attrs.items()})
        if stack:
            stack[-1].append(element)
        else:
            top.append(element)
        stack.append(element)

    def end(name: str) -> None:
        flush()
        stack.pop()

    def doctype(*args) -> None:
        raise _Refused("a DTD (<!DOCTYPE>) is not accepted")

    def entity(*args) -> None:
        raise _Refused("entity declarations are not accepted")

    def external(*args) -> int:
        raise _Refused("external entities are not accepted")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.NotationDeclHandler = entity
    parser.ExternalEntityRefHandler = external
    parser.Parse(data, True)
    return top[0]


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _check_content(root: ET.Element, settings: ImagingSettings) -> None:
    ids: dict[str, list[ET.Element]] = {}  # every element of an id: which one resvg picks is its business
    refs: dict[int, list[str]] = {}  # id(element) -> ids it draws (use href, url(#id))
    embedded = [0]  # pixels of embedded images, all together
    for element in root.iter():
        name = _local(element.tag)
        if name in _REFUSED_ELEMENTS:
            raise _Refused(f"<{name}> is not accepted")
        if name in _COSTLY_ELEMENTS:
            raise _Refused(f"<{name}> is not accepted: {_COSTLY_ELEMENTS[name]}")
        if name == "feConvolveMatrix":
            _check_order(element.get("order", "3"))
        if name == "style":
            _check_css("".join(element.itertext()), "<style>")
        found: list[str] = []
        for key, value in element.attrib.items():
            attribute = _local(key)
            if attribute == "id":
                ids.setdefault(value, []).append(element)
            if attribute in _REFERENCE_ATTRIBUTES:
                target = _check_href(value, f"<{name} {attribute}>", settings, embedded)
                if target:
                    found.append(target)
            elif attribute == "style":
                found += _check_css(value, f"<{name} style>")
            elif _URL.search(value):
                found += _check_urls(value, f"<{name} {attribute}>")
        if found:
            refs[id(element)] = found
    _check_expansion(root, ids, refs)


def _check_order(value: str) -> None:
    try:
        orders = [float(n) for n in value.replace(",", " ").split()]
    except ValueError:
        return  # resvg ignores the filter
    if any(n > MAX_KERNEL_ORDER for n in orders):
        raise _Refused(f"<feConvolveMatrix> order {value[:20]!r} is more than {MAX_KERNEL_ORDER}")


def _check_href(value: str, where: str, settings: ImagingSettings, embedded: list[int]) -> str | None:
    """The id a `#fragment` names (None for a data URI); anything else is refused."""
    value = value.strip()
    if _FRAGMENT.fullmatch(value):
        return value[1:]
    match = _DATA_URI.fullmatch(value)
    if not match:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise _Refused(f"{where} refers to {shown!r}: only #fragment and data:image/...;base64 are accepted")
    if len(value) > MAX_DATA_URI:
        raise _Refused(f"{where} holds a data URI of {len(value)} bytes, more than {MAX_DATA_URI}")
    try:
        raw = base64.b64decode("".join(match.group(2).split()), validate=True)
    except (binascii.Error, ValueError):
        raise _Refused(f"{where} holds a data URI that is not base64") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the size is checked below, against our own cap
            with Image.open(BytesIO(raw), formats=_DATA_FORMATS) as img:
                frames = max(1, int(getattr(img, "n_frames", 1)))
                pixels = img.size[0] * img.size[1] * frames
    except Image.DecompressionBombError:
        raise _Refused(f"{where} holds an image of too many pixels") from None
    except Exception:  # unidentified or broken: resvg would decode it with its own decoders
        raise _Refused(f"{where} holds a data URI that is not a readable PNG, JPEG, GIF or WebP") from None
    embedded[0] += pixels
    if embedded[0] > settings.max_source_pixels:
        raise _Refused(f"embedded images have more than {settings.max_source_pixels} pixels")
    return None


def _check_css(css: str, where: str) -> list[str]:
    if "\\" in css:
        raise _Refused(f"{where} has a CSS escape (backslash), which could hide a reference")
    if "@import" in css.lower():
        raise _Refused(f"{where} has a CSS @import")
    return _check_urls(css, where)


def _check_urls(value: str, where: str) -> list[str]:
    """Ids of every url(#id) in `value`; any other url(...) is refused."""
    found = []
    for match in _URL.finditer(value):
        end = value.find(")", match.end())
        if end < 0:
            raise _Refused(f"{where} has an unclosed url(")
        inner = value[match.end():end].strip().strip("'\"").strip()
        if not _FRAGMENT.fullmatch(inner):
            shown = inner if len(inner) <= 60 else inner[:57] + "..."
            raise _Refused(f"{where} has url({shown}): only url(#id) is accepted")
        found.append(inner[1:])
    return found


def _check_expansion(root: ET.Element, ids: dict[str, list[ET.Element]], refs: dict[int, list[str]]) -> None:
    """Count elements as drawn, each reference drawing its target's subtree again: a few
    kilobytes of nested <use> would otherwise draw millions of shapes (an SVG
    'billion laughs'). A cycle is refused too."""
    cost: dict[int, int] = {}
    visiting: set[int] = set()
    stack: list[tuple[ET.Element, bool]] = [(root, False)]
    while stack:
        element, done = stack.pop()
        key = id(element)
        if done:
            total = 1 + sum(cost[id(child)] for child in element)
            total += sum(cost[id(target)] for name in refs.get(key, ()) for target in ids.get(name, ()))
            if total > MAX_EXPANDED:
                raise _Refused(f"references draw more than {MAX_EXPANDED} elements")
            cost[key] = total
            visiting.discard(key)
            continue
        if key in cost:
            continue
        if key in visiting:
            raise _Refused(f"a reference cycle through <{_local(element.tag)}>")
        visiting.add(key)
        stack.append((element, True))
        for child in element:
            stack.append((child, False))
        for name in refs.get(key, ()):
            for target in ids.get(name, ()):
                if id(target) in visiting:
                    raise _Refused(f"a reference cycle through #{name}")
                stack.append((target, False))


# --- sizes ---------------------------------------------------------------------------------

def _intrinsic_size(root: ET.Element) -> tuple[float, float]:
    """width and height in px, from the attributes and the viewBox, as resvg reads them."""
    box = _view_box(root.get("viewBox"))
    width = _length(root.get("width"), "width", box[0] if box else None)
    height = _length(root.get("height"), "height", box[1] if box else None)
    if width is None and height is None:
        if box is None:
            raise errors.broken_image("SVG has no size: give it width and height or a viewBox")
        width, height = box
    elif width is None or height is None:
        if box is None:
            raise errors.broken_image("SVG has only one of width and height, and no viewBox")
        width = width if width is not None else height * box[0] / box[1]
        height = height if height is not None else width * box[1] / box[0]
    return width, height


def _length(value: str | None, name: str, whole: float | None) -> float | None:
    """A length in px; None when absent, or a percentage with no viewBox to take it of."""
    if value is None:
        return None
    match = _LENGTH.fullmatch(value)
    if not match:
        raise errors.broken_image(f"SVG {name} {value[:40]!r} is not a length")
    number, unit = float(match.group(1)), match.group(2)
    if unit == "%":
        if whole is None:
            return None
        length = whole * number / 100
    else:
        length = number * _UNITS[unit]
    if not math.isfinite(length) or length <= 0:
        raise errors.broken_image(f"SVG {name} {value[:40]!r} is not a positive size")
    return length


def _view_box(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    parts = value.replace(",", " ").split()
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        raise errors.broken_image(f"SVG viewBox {value[:40]!r} is not four numbers")
    if numbers[2] <= 0 or numbers[3] <= 0:
        raise errors.broken_image(f"SVG viewBox {value[:40]!r} has no positive width and height")
    return numbers[2], numbers[3]
