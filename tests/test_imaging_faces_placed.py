"""pos=face on faces of 5%, 10% and 25% of the picture, at nine places, on plain and photo
backgrounds: the astronaut's face is pasted in, the real pipeline crops, and the output is
located in the canvas to check that the face is in it."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest
from PIL import Image
from support import encoded, opened, run

from imgproxy.imaging import faces
from imgproxy.plan import FACE, Resize

FIXTURES = Path(__file__).parent / "fixtures"
ASTRONAUT = opened((FIXTURES / "astronaut.jpg").read_bytes())
FACE_BOX = (86, 30, 140, 84)  # the face in astronaut.jpg, as the cascades find it give or take 5 px
# The face and half its width around it: hair, ears and chin give the cascade its context.
PATCH = ASTRONAUT.crop((59, 3, 167, 111))
PHOTOS = {  # photographs without a face (tests/fixtures/README.md)
    "wide": opened((FIXTURES / "mountains.jpg").read_bytes()),
    "tall": opened((FIXTURES / "dandelions.jpg").read_bytes()),
}
PLAIN = {"dark": (28, 28, 34), "light": (236, 234, 228)}
POSITIONS = {
    "top-left": (0, 0), "top": (0.5, 0), "top-right": (1, 0),
    "left": (0, 0.5), "center": (0.5, 0.5), "right": (1, 0.5),
    "bottom-left": (0, 1), "bottom": (0.5, 1), "bottom-right": (1, 1),
}
SHARES = (0.05, 0.10, 0.25)  # face width over the picture's longer side


def canvas(background: Image.Image, share: float, position: tuple[float, float]):
    """`background` with the face pasted at `position`; and the face box in pixels."""
    img = background.copy()
    face = round(share * max(img.size))
    patch = PATCH.resize((2 * face, 2 * face), Image.Resampling.LANCZOS)
    x = round((img.width - patch.width) * position[0])
    y = round((img.height - patch.height) * position[1])
    img.paste(patch, (x, y))
    half = face // 2
    return img, (x + half, y + half, x + half + face, y + half + face)


def cases():
    """Every share at every position, once on a plain and once on a photo background,
    one wide and the other tall; crop and adapt take turns."""
    for s, share in enumerate(SHARES):
        for i, (name, position) in enumerate(POSITIONS.items()):
            plain_shape, photo_shape = ("wide", "tall") if (i + s) % 2 else ("tall", "wide")
            colour = "dark" if i % 2 else "light"
            mode = "adapt" if (i + s) % 2 else "crop"
            yield pytest.param(share, position, colour, plain_shape, mode,
                               id=f"{share:.0%}-{name}-{colour}-{plain_shape}-{mode}")
            yield pytest.param(share, position, "photo", photo_shape, "crop" if mode == "adapt" else "adapt",
                               id=f"{share:.0%}-{name}-photo-{photo_shape}")


def background(kind: str, shape: str) -> Image.Image:
    if kind == "photo":
        return PHOTOS[shape]
    size = (640, 400) if shape == "wide" else (400, 640)
    return Image.new("RGB", size, PLAIN[kind])


def located(out: Image.Image, img: Image.Image, scale: float) -> tuple[float, float, float, float]:
    """Where in `img` the output (a crop of it scaled by `scale`) was taken from."""
    reference = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    ref = numpy.asarray(reference.convert("RGB"), numpy.float32)
    piece = numpy.asarray(out.convert("RGB"), numpy.float32)
    h, w = piece.shape[:2]
    errors = {(x, y): float(numpy.mean((ref[y:y + h, x:x + w] - piece) ** 2))
              for x in range(ref.shape[1] - w + 1) for y in range(ref.shape[0] - h + 1)}
    x, y = min(errors, key=errors.get)
    # The best place must really be the output: off by JPEG noise and a sub-pixel shift only.
    assert errors[x, y] < 150
    return x / scale, y / scale, (x + w) / scale, (y + h) / scale


def test_astronaut_face_box_is_where_these_tests_assume():
    (box,) = faces.detect(ASTRONAUT)
    assert all(abs(a * 256 - b) <= 5 for a, b in zip(box, FACE_BOX))


@pytest.mark.parametrize("shape", ["wide", "tall"])
def test_the_photo_backgrounds_have_no_face(shape):
    assert faces.detect(PHOTOS[shape]) == []


@pytest.mark.parametrize("share, position, kind, shape, mode", list(cases()))
def test_crop_keeps_a_pasted_face(share, position, kind, shape, mode):
    img, face = canvas(background(kind, shape), share, position)
    # The window is half the longer side: it must move to take in a face at an edge.
    box = (160, 200) if shape == "wide" else (200, 160)
    _, out = run(encoded(img, quality=90), Resize(*box, mode, position=FACE, retain=10))
    assert out.size == box
    left, top, right, bottom = located(out, img, max(box) / min(img.size))
    fx, fy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    assert left <= fx <= right and top <= fy <= bottom
    # The face's centre sits at the same ratio in the window as in the picture (Pilbox's
    # rule for positions), so a big face at an edge may lose a sliver, never more.
    inside = (min(right, face[2]) - max(left, face[0])) * (min(bottom, face[3]) - max(top, face[1]))
    assert inside >= 0.9 * (face[2] - face[0]) * (face[3] - face[1])


def test_the_biggest_face_wins_over_a_small_one_far_away():
    img, big = canvas(background("light", "wide"), 0.25, (0, 0.5))
    small = PATCH.resize((64, 64), Image.Resampling.LANCZOS)  # a 5% face
    img.paste(small, (img.width - 64, 0))
    assert len(faces.detect(img)) == 2
    x, y = faces.focal_point(img)
    assert big[0] <= x * img.width <= big[2] and big[1] <= y * img.height <= big[3]
