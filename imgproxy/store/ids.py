"""Image IDs: 22 letters and digits from the system's random source (131 bits).

Knowing an ID is what lets one read the image (as in huImages), so it must not be
guessable; letters and digits only, so an ID is safe in a path, a key and a URL.
"""

from __future__ import annotations

import re
import secrets
import string

ALPHABET = string.digits + string.ascii_letters
LENGTH = 22  # 62 ** 22 > 2 ** 130
PATTERN = "[0-9A-Za-z]{22}"
_ID = re.compile(PATTERN + r"\Z")


def new_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def is_id(text: str) -> bool:
    return bool(_ID.match(text))
