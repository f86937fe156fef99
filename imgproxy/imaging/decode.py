"""Open source bytes safely: identify the format, cap pixels, shrink on load, decode.

Nothing here decodes pixels until `load()`, so format and size checks cost only a
header read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, JpegImagePlugin

from .. import errors

JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a camera JPEG with extra frames; we use the first

# What Pillow raises on truncated or corrupt data while reading it.
BROKEN = (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError,
          TypeError, KeyError, ZeroDivisionError)

_ORIENTATION_TAG = 0x0112
_ORIENTATION_DEGREES = {3: 180, 6: 90, 8: 270}  # clockwise; mirrored ones are not applied


@dataclass(frozen=True, slots=True)
class SourceHeader:
    """What the encoder and the rotate=auto step need to know about the source, from its header."""
    format: str
    size: tuple[int, int]
    mode: str
    exif: bytes | None = None
    icc_profile: bytes | None = None
    qtables: dict | None = None  # JPEG only
    subsampling: int = -1  # JPEG only: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0, -1 unknown
    orientation: int = 0  # clockwise degrees that EXIF asks for (JPEG only)


def broken(error: BaseException) -> errors.ProxyError:
    return errors.broken_image(f"Broken image data: {error}")


def check_pixels(what: str, size: tuple[int, int], limit: int, frames: int = 1) -> None:
    if size[0] * size[1] * frames > limit:
        shown = f"{size[0]}x{size[1]}" + (f" x {frames} frames" if frames > 1 else "")
        raise errors.image_too_large(f"{what} {shown} is more than {limit} pixels")


def frame_count(img: Image.Image) -> int:
    """Frames in the file, from its headers (a GIF's are walked without decoding
    pixels, so the cost is bounded by max_source_bytes)."""
    try:
        return max(1, int(getattr(img, "n_frames", 1)))
    except BROKEN as e:
        raise broken(e) from None


def open_image(data: bytes, formats: tuple[str, ...]) -> Image.Image:
    """Identify `data` as one of `formats` from its header; pixels stay undecoded."""
    try:
        img = Image.open(BytesIO(data), formats=list(formats))
    except Image.UnidentifiedImageError:
        raise errors.unsupported_image(
            f"Unsupported image format (accepted: {', '.join(formats)})") from None
    except BROKEN as e:
        raise broken(e) from None
    if img.size[0] < 1 or img.size[1] < 1:
        raise broken(ValueError(f"empty image {img.size[0]}x{img.size[1]}"))
    return img


def served_format(fmt: str) -> str:
    """The format the bytes are served as: an MPO is a JPEG to a browser."""
    return "JPEG" if fmt == "MPO" else fmt


def read_header(img: Image.Image) -> SourceHeader:
    """Read what later steps need from the header, before any transform loses it."""
    fmt = img.format or ""
    jpeg = fmt in JPEG_FORMATS
    exif = img.info.get("exif")
    return SourceHeader(
        format=fmt,
        size=img.size,
        mode=img.mode,
        exif=exif if isinstance(exif, bytes) and exif else None,
        icc_profile=img.info.get("icc_profile") or None,
        qtables=dict(img.quantization) if jpeg and getattr(img, "quantization", None) else None,
        subsampling=JpegImagePlugin.get_sampling(img) if jpeg else -1,
        orientation=exif_orientation(img) if jpeg else 0,
    )


def exif_orientation(img: Image.Image) -> int:
    """Clockwise degrees the EXIF Orientation tag asks for; 0 if none or unreadable."""
    return _ORIENTATION_DEGREES.get(orientation_tag(img), 0)


def load(img: Image.Image, min_size: tuple[int, int] | None = None) -> Image.Image:
    """Decode the first frame; a JPEG is decoded at the smallest DCT scale >= min_size."""
    try:
        if min_size and img.format in JPEG_FORMATS and (
                min_size[0] * 2 <= img.size[0] and min_size[1] * 2 <= img.size[1]):
            img.draft(img.mode, min_size)
        img.load()
    except BROKEN as e:
        raise broken(e) from None
    return img


def reset_orientation(exif: bytes) -> bytes:
    """EXIF bytes with Orientation set to 1, patched in place so nothing else changes.

    Used after rotate=auto: the pixels are upright now, and a viewer that
    honoured the old tag would turn them a second time.
    """
    start = 6 if exif.startswith(b"Exif\x00\x00") else 0
    try:
        order = {b"II": "<", b"MM": ">"}[exif[start:start + 2]]
        (ifd,) = struct.unpack_from(order + "I", exif, start + 4)
        (count,) = struct.unpack_from(order + "H", exif, start + ifd)
        for i in range(count):
            entry = start + ifd + 2 + 12 * i
            tag, kind, n = struct.unpack_from(order + "HHI", exif, entry)
            if tag == _ORIENTATION_TAG and kind == 3 and n == 1:  # one SHORT, stored inline
                patched = bytearray(exif)
                struct.pack_into(order + "H", patched, entry + 8, 1)
                return bytes(patched)
    except (KeyError, struct.error):
        pass
    return exif


def orientation_tag(img: Image.Image) -> int:
    """The EXIF Orientation tag (1-8) of any format; 0 if none or unreadable."""
    if img.format == "PNG" and "exif" not in img.info and not _png_has_exif(img):
        return 0  # Pillow's getexif() would decode the whole PNG to look past its pixels
    try:
        value = img.getexif().get(_ORIENTATION_TAG)
    except Exception:  # broken EXIF must not fail the image: it just is not turned
        return 0
    return value if isinstance(value, int) and 1 <= value <= 8 else 0


def _png_has_exif(img: Image.Image) -> bool:
    """Whether an eXIf chunk follows the pixels, read from the chunk headers alone (the pixel
    data is skipped, not decompressed). True when unsure: then getexif() decides."""
    fp = getattr(img, "fp", None)
    if fp is None or not hasattr(fp, "seek"):
        return True
    where = fp.tell()
    try:
        fp.seek(8)  # the signature
        while True:
            head = fp.read(8)
            if len(head) < 8:
                return False
            length, kind = struct.unpack(">I4s", head)
            if kind == b"eXIf":
                return True
            if kind == b"IEND":
                return False
            fp.seek(length + 4, 1)  # the data and its CRC
    except (OSError, ValueError, struct.error):
        return True
    finally:
        fp.seek(where)


_GPS_IFD_TAG = 0x8825
_THUMBNAIL_OFFSET, _THUMBNAIL_LENGTH = 0x0201, 0x0202  # JPEGInterchangeFormat(Length)
_STRIP_OFFSETS, _STRIP_BYTE_COUNTS = 0x0111, 0x0117  # an uncompressed thumbnail
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


def strip_exif(exif: bytes, gps: bool) -> bytes | None:
    """EXIF bytes without the thumbnail (IFD1 and its image), and without the GPS IFD
    when `gps`; every other byte stays where it was, so the rest reads as before.

    The thumbnail is the picture before any operation (the uncropped photo), so it
    never goes out. What is removed is zeroed, and cut off when it ends the block.
    EXIF too broken to walk is dropped (None): what it hides cannot be checked.
    """
    start = 6 if exif.startswith(b"Exif\x00\x00") else 0
    data = bytearray(exif)
    cleared: list[tuple[int, int]] = []

    def clear(begin: int, end: int) -> None:
        begin, end = max(begin, start), min(end, len(data))
        if begin < end:
            data[begin:end] = bytes(end - begin)
            cleared.append((begin, end))

    try:
        order = {b"II": "<", b"MM": ">"}[exif[start:start + 2]]

        def entries(ifd: int):  # (position, tag, type, count, value/offset) of each entry
            (count,) = struct.unpack_from(order + "H", data, start + ifd)
            for i in range(count):
                pos = start + ifd + 2 + 12 * i
                yield (pos, *struct.unpack_from(order + "HHII", data, pos))

        def clear_ifd(ifd: int) -> dict[int, int]:
            values = {}
            (count,) = struct.unpack_from(order + "H", data, start + ifd)
            for pos, tag, kind, n, value in list(entries(ifd)):
                if kind == 3 and n == 1:  # a SHORT is stored in the first 2 bytes
                    (value,) = struct.unpack_from(order + "H", data, pos + 8)
                values[tag] = value
                size = _TYPE_SIZES.get(kind, 1) * n
                if size > 4:
                    clear(start + value, start + value + size)
            clear(start + ifd, start + ifd + 2 + 12 * count + 4)
            return values

        (ifd0,) = struct.unpack_from(order + "I", data, start + 4)
        (count,) = struct.unpack_from(order + "H", data, start + ifd0)
        first = start + ifd0 + 2
        if gps:
            for pos, tag, _kind, _n, value in list(entries(ifd0)):
                if tag == _GPS_IFD_TAG:
                    clear_ifd(value)
                    end = first + 12 * count + 4  # the entries and the next-IFD pointer
                    data[pos:end - 12] = data[pos + 12:end]  # the entries after it move up
                    data[end - 12:end] = bytes(12)
                    count -= 1
                    struct.pack_into(order + "H", data, start + ifd0, count)
                    break
        next_pointer = first + 12 * count
        (ifd1,) = struct.unpack_from(order + "I", data, next_pointer)
        if ifd1:
            tags = clear_ifd(ifd1)
            if _THUMBNAIL_OFFSET in tags:
                offset = tags[_THUMBNAIL_OFFSET]
                clear(start + offset, start + offset + tags.get(_THUMBNAIL_LENGTH, 0))
            if _STRIP_OFFSETS in tags and _STRIP_BYTE_COUNTS in tags:  # one strip, inline
                offset = tags[_STRIP_OFFSETS]
                clear(start + offset, start + offset + tags[_STRIP_BYTE_COUNTS])
            struct.pack_into(order + "I", data, next_pointer, 0)
    except (KeyError, struct.error):
        return None
    end = len(data)  # cut what was cleared at the end of the block
    for begin, stop in sorted(cleared, key=lambda r: r[1], reverse=True):
        if stop >= end > begin:
            end = begin
    return bytes(data[:end])
