"""Typed errors. Each carries an HTTP status, a machine code and a one-line reason.

Codes below 300 follow Pilbox so that its clients keep working; the server turns
these into JSON answers in exactly one place (server.py).
"""

from enum import IntEnum


class Code(IntEnum):
    BACKGROUND = 1
    DIMENSIONS = 2
    FILTER = 3
    FORMAT = 4
    MODE = 5
    POSITION = 6
    QUALITY = 7
    URL = 8
    DEGREE = 9
    OPERATION = 10
    RECTANGLE = 11
    OPTIMIZE = 12
    PROGRESSIVE = 13
    RETAIN = 14
    EXIF = 15
    SIGNATURE = 101
    CLIENT = 102
    HOST = 103
    IMAGE_FORMAT = 201
    IMAGE_SAVE = 202
    IMAGE_TOO_LARGE = 203
    IMAGE_BROKEN = 204
    FETCH = 301
    BUSY = 501
    WORKER_FAILED = 502
    DEADLINE = 504


class ProxyError(Exception):
    """An answer other than an image: status, code and a one-line reason."""

    def __init__(self, status: int, code: int, reason: str):
        # Keep the reason on one line whatever went into it.
        reason = " ".join(str(reason).split())
        super().__init__(status, int(code), reason)
        self.status = status
        self.code = int(code)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} ({self.code}): {self.reason}"


def bad_request(code: Code, reason: str) -> ProxyError:
    return ProxyError(400, code, reason)


def forbidden(code: Code, reason: str) -> ProxyError:
    return ProxyError(403, code, reason)

