"""Imported once by the pool's fork server, so every worker starts with Pillow,
OpenCV and the face cascade already loaded (shared copy-on-write, not per worker)."""

from .imaging import faces, pipeline  # noqa: F401

faces.load()
