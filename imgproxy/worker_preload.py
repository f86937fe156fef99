"""Imported once by the pool's fork server, so every worker starts with Pillow,
OpenCV and the face cascade already loaded (shared copy-on-write, not per worker)."""

import gc
import os

# Workers are single-threaded by design (the pool is the parallelism). Without this,
# numpy's OpenBLAS starts a thread per core, each with its buffers, as OpenCV loads it:
# every idle worker then maps ~180 MiB more address space (counted against
# worker_memory_limit: 294 MiB instead of 470 here) and the import costs twice the CPU.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

from .imaging import faces, info, pipeline, svg  # noqa: E402,F401

faces.load()
# Everything loaded so far lives as long as the workers: keep the collector off it,
# so collections in a worker do not write to (and unshare) these pages.
gc.freeze()
