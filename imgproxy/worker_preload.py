"""Imported once by the pool's fork server, so every worker starts with Pillow,
OpenCV and the face cascade already loaded (shared copy-on-write, not per worker)."""

import gc

from .imaging import faces, info, pipeline, svg  # noqa: F401

faces.load()
# Everything loaded so far lives as long as the workers: keep the collector off it,
# so collections in a worker do not write to (and unshare) these pages.
gc.freeze()
