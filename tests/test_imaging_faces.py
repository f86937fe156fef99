"""pos=face: OpenCV finds the face in a real photo and the crop keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat
from support import encoded, opened, run

from imgproxy.imaging import faces, operations
from imgproxy.plan import FACE, Resize

ASTRONAUT = (Path(__file__).parent / "fixtures" / "astronaut.jpg").read_bytes()


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return max(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean)


@pytest.fixture(scope="module")
def face_box():
    boxes = faces.detect(opened(ASTRONAUT))
    assert len(boxes) == 1
    return boxes[0]


def test_the_face_is_found_in_the_upper_left_middle(face_box):
    left, top, right, bottom = face_box
    assert 0.25 < left < right < 0.65 and 0.05 < top < bottom < 0.45
    x, y = faces.focal_point(opened(ASTRONAUT))
    assert (x, y) == ((left + right) / 2, (top + bottom) / 2)


@pytest.mark.parametrize("box", [(200, 40), (40, 200), (120, 60)])
def test_face_crop_window_covers_the_face_centre(face_box, box):
    size = (256, 256)
    focal = faces.focal_point(opened(ASTRONAUT))
    left, top, right, bottom = operations.crop_window(box, size, focal)
    cx, cy = (face_box[0] + face_box[2]) / 2 * 256, (face_box[1] + face_box[3]) / 2 * 256
    assert left <= cx <= right and top <= cy <= bottom

    _, img = run(ASTRONAUT, Resize(*box, "crop", position=FACE))
    assert img.size == box
    expected = ImageOps.fit(opened(ASTRONAUT), box, Image.Resampling.LANCZOS, centering=focal)
    assert _mean_difference(img, expected) < 6


def test_face_crop_differs_from_a_centre_crop_when_the_face_is_off_centre(face_box):
    # A wide strip: the centre strip (rows 102-154) misses the face (centre row ~57).
    _, face = run(ASTRONAUT, Resize(200, 40, "crop", position=FACE))
    _, centre = run(ASTRONAUT, Resize(200, 40, "crop", position=(0.5, 0.5)))
    assert _mean_difference(face, centre) > 20
    top = operations.crop_window((200, 40), (256, 256), (0.5, 0.5))[1]
    assert top > face_box[3] * 256 - 10  # the centre strip starts below most of the face


def test_face_position_also_serves_adapt_when_it_crops():
    _, adapt = run(ASTRONAUT, Resize(200, 40, "adapt", position=FACE, retain=10))
    _, crop = run(ASTRONAUT, Resize(200, 40, "crop", position=FACE))
    assert adapt.tobytes() == crop.tobytes()


def test_no_face_falls_back_to_the_centre():
    flat = Image.new("RGB", (300, 200), (90, 140, 200))
    flat.paste((250, 250, 0), (0, 0, 150, 200))  # not flat across: a wrong window shows
    data = encoded(flat, "PNG")
    assert faces.focal_point(flat) is None
    _, face = run(data, Resize(50, 100, "crop", position=FACE), format="PNG")
    _, centre = run(data, Resize(50, 100, "crop", position=(0.5, 0.5)), format="PNG")
    assert face.tobytes() == centre.tobytes()


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16"])
def test_face_position_works_for_any_source_mode(mode):
    img = opened(ASTRONAUT)
    if mode == "I;16":
        img = img.convert("I").point(lambda v: v * 256).convert("I;16")
    else:
        img = img.convert(mode)
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    _, out = run(encoded(img, fmt), Resize(200, 40, "crop", position=FACE), format="PNG")
    _, reference = run(ASTRONAUT, Resize(200, 40, "crop", position=FACE), format="PNG")
    assert out.size == (200, 40)
    grey = operations.eight_bit(out).convert("L")
    assert _mean_difference(grey, reference.convert("L")) < 12


def test_detection_runs_on_a_small_copy(monkeypatch):
    seen = []
    real = faces.load()

    class Spy:
        def detectMultiScale2(self, pixels, **options):  # noqa: N802 - OpenCV's name
            seen.append(pixels.shape)
            return real.detectMultiScale2(pixels, **options)

    monkeypatch.setattr(faces, "_classifier", Spy())
    big = opened(ASTRONAUT).resize((2400, 1800))
    faces.detect(big)
    assert seen == [(480, 640)]


def test_face_found_in_a_big_drafted_jpeg():
    big = encoded(opened(ASTRONAUT).resize((2048, 2048), Image.Resampling.BICUBIC), quality=90)
    _, img = run(big, Resize(200, 40, "crop", position=FACE))
    _, small = run(ASTRONAUT, Resize(200, 40, "crop", position=FACE))
    assert _mean_difference(img, small) < 12


def test_classifier_is_loaded_once_and_single_threaded():
    import cv2

    assert faces.load() is faces.load()
    assert cv2.getNumThreads() == 1
