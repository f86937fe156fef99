"""Face focal point for pos=face: OpenCV's Haar cascade on a small greyscale copy.

The classifier is loaded once per process (`load()`, which a worker may call at
start-up) and OpenCV is kept to one thread: workers are single-threaded by design.

Choices, measured with bench/faces.py (figures in bench/README.md):
- the "alt2" frontal cascade: on the corpus photos the "default" one also fires on
  rocks and foliage, alt2 only on real faces, and it costs no more;
- no histogram equalisation: each window is normalised by its own contrast already,
  and a global equalisation squeezes a face on a flat or dark background into a few
  grey levels, so it is lost;
- a 640 px copy: a face of 5% of the picture is 32 px there, above what the
  cascade resolves (on the old 500 px copy such faces were mostly missed);
- bigger boxes need more overlapping hits (`needed_hits`): a texture that fools the
  cascade gathers only a handful at any size, a real face many more as it grows.
"""

from __future__ import annotations

from PIL import Image

CASCADE = "haarcascade_frontalface_alt2.xml"
DETECT_SIDE = 640  # longest side of the copy we detect on (and so the least a JPEG is decoded to)
MIN_FACE = 20  # pixels on that copy: the cascade's own window
MIN_FACE_RATIO = 0.04  # of the copy's longest side: smaller windows cost most and 5% faces are above it
SCALE_STEP = 1.1
NEIGHBOURS = 3  # overlapping hits a face of the smallest size needs; fewer lets textures through
HITS_PER_SIZE = 15  # more needed per step of size above 1.2x the smallest (see needed_hits)
MAX_NEIGHBOURS = 12  # needed at most: real faces of 2x the smallest window and up have 25 or more
KEEP_RATIO = 0.5  # faces narrower than this share of the widest one are not the subject

_classifier = None


def load():
    """The cascade classifier, loaded on first use and kept for the process."""
    global _classifier
    if _classifier is None:
        import cv2  # imported here: start-up of processes that never ask for faces stays quick

        cv2.setNumThreads(1)
        classifier = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
        if classifier.empty():
            raise RuntimeError(f"cannot load the OpenCV cascade {CASCADE}")
        _classifier = classifier
    return _classifier


def detect(img: Image.Image) -> list[tuple[float, float, float, float]]:
    """Faces in an 8-bit image as (left, top, right, bottom) ratios of its size."""
    import numpy

    classifier = load()
    grey = img.convert("L")
    scale = DETECT_SIDE / max(grey.size)
    if scale < 1:
        small = (max(1, round(grey.size[0] * scale)), max(1, round(grey.size[1] * scale)))
        grey = grey.resize(small, Image.Resampling.BILINEAR, reducing_gap=2.0)
    w, h = grey.size
    least = max(MIN_FACE, round(MIN_FACE_RATIO * max(w, h)))
    if least > min(w, h):
        return []
    found, hits = classifier.detectMultiScale2(numpy.asarray(grey), scaleFactor=SCALE_STEP,
                                               minNeighbors=NEIGHBOURS, minSize=(least, least))
    return [(float(x / w), float(y / h), float((x + fw) / w), float((y + fh) / h))
            for (x, y, fw, fh), n in zip(found, hits) if n >= needed_hits(fw / least)]


def needed_hits(size: float) -> float:
    """Neighbours a face `size` times the smallest window needs. A real face is hit at more
    scales and places the bigger it is (4 or more up to 1.2x, 9 at 1.35x, 17 at 1.6x, 25 at
    2x); textures that pass the cascade somewhere (rocks, foliage) gather a handful at any size."""
    return min(MAX_NEIGHBOURS, NEIGHBOURS + HITS_PER_SIZE * max(0.0, size - 1.2))


def focal_point(img: Image.Image) -> tuple[float, float] | None:
    """The middle of the box around the main faces, as (x, y) ratios; None without faces.

    Main faces are those at least KEEP_RATIO as wide as the widest: a group stays
    together, while a small face in the background does not pull the crop off the subject.
    """
    faces = detect(img)
    if not faces:
        return None
    widest = max(f[2] - f[0] for f in faces)
    faces = [f for f in faces if f[2] - f[0] >= KEEP_RATIO * widest]
    left = min(f[0] for f in faces)
    top = min(f[1] for f in faces)
    right = max(f[2] for f in faces)
    bottom = max(f[3] for f in faces)
    return (left + right) / 2, (top + bottom) / 2
