"""Command-line tools that run the same code as the server (see resize.py)."""
