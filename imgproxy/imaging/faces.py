"""Face focal point for pos=face: OpenCV's Haar cascade on a small greyscale copy.

The classifier is loaded once per process (`load()`, which a worker may call at
start-up) and OpenCV is kept to one thread: workers are single-threaded by design.
"""

from __future__ import annotations

from PIL import Image

CASCADE = "haarcascade_frontalface_default.xml"
DETECT_SIDE = 500  # longest side of the copy we detect on: fast, and faces stay findable
MIN_FACE = 20  # pixels on that copy

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
    import cv2
    import numpy

    classifier = load()
    grey = img.convert("L")
    scale = DETECT_SIDE / max(grey.size)
    if scale < 1:
        small = (max(1, round(grey.size[0] * scale)), max(1, round(grey.size[1] * scale)))
        grey = grey.resize(small, Image.Resampling.BILINEAR, reducing_gap=2.0)
    pixels = cv2.equalizeHist(numpy.asarray(grey))
    found = classifier.detectMultiScale(pixels, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(MIN_FACE, MIN_FACE))
    w, h = grey.size
    return [(float(x / w), float(y / h), float((x + fw) / w), float((y + fh) / h))
            for x, y, fw, fh in found]


def focal_point(img: Image.Image) -> tuple[float, float] | None:
    """The middle of the box around all faces, as (x, y) ratios; None without faces."""
    faces = detect(img)
    if not faces:
        return None
    left = min(f[0] for f in faces)
    top = min(f[1] for f in faces)
    right = max(f[2] for f in faces)
    bottom = max(f[3] for f in faces)
    return (left + right) / 2, (top + bottom) / 2
