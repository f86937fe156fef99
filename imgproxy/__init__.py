"""imgproxy: an on-the-fly image processing proxy (Pilbox-compatible query API)."""

__version__ = "0.1.0"
