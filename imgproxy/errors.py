"""Typed errors, and the one place an HTTP status is chosen.

Each failure has a constructor below that names it; a stage raises one where it
finds the problem and the server turns it into a JSON answer (server/replies.py).
Codes below 300 follow Pilbox so that its clients keep working; every failure to
get the source keeps Pilbox's one fetch code (301) and differs by status.
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
    TOKEN = 104
    IMAGE_FORMAT = 201
    IMAGE_SAVE = 202
    IMAGE_TOO_LARGE = 203
    IMAGE_BROKEN = 204
    IMAGE_UNSAFE = 205
    FETCH = 301
    DESTINATION = 302
    JOB_PARSE = 600
    BUSY = 501
    WORKER_FAILED = 502
    DEADLINE = 504
    JOB = 601
    STORE = 701


class ProxyError(Exception):
    """An answer other than an image: status, code and a one-line reason."""
    msg: str | None = None  # imgserve's "msg" field, for job API answers

    def __init__(self, status: int, code: int, reason: str):
        # Keep the reason on one line whatever went into it.
        reason = " ".join(str(reason).split())
        super().__init__(status, int(code), reason)  # args: so it pickles back from a worker
        self.status = status
        self.code = int(code)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.status} ({self.code}): {self.reason}"


# --- the client's request -----------------------------------------------------------

def bad_request(code: Code, reason: str) -> ProxyError:
    return ProxyError(400, code, reason)


def forbidden(code: Code, reason: str) -> ProxyError:
    return ProxyError(403, code, reason)


def unauthorized(reason: str) -> ProxyError:
    """A write to the store without its token (the reply says Bearer)."""
    return ProxyError(401, Code.TOKEN, reason)


def upload_too_large(reason: str) -> ProxyError:
    return ProxyError(413, Code.STORE, reason)


def job_unparsable(reason: str) -> ProxyError:
    """A job body that is not JSON (imgserve's "request parse error")."""
    error = ProxyError(400, Code.JOB_PARSE, reason)
    error.msg = "request parse error"
    return error


def job_invalid(reason: str, code: int = Code.JOB) -> ProxyError:
    """JSON, but not a valid job (imgserve's "request invalid")."""
    error = ProxyError(400, code, reason)
    error.msg = "request invalid"
    return error


def job_too_large(reason: str) -> ProxyError:
    return ProxyError(413, Code.JOB, reason)


def not_found(reason: str) -> ProxyError:
    """No such route, preset, size form or job (a source missing at its origin is source_not_found)."""
    return ProxyError(404, 0, reason)


# --- the source and its origin ---------------------------------------------------------

def source_not_found(reason: str) -> ProxyError:
    return ProxyError(404, Code.FETCH, reason)


def source_too_large(reason: str) -> ProxyError:
    return ProxyError(413, Code.FETCH, reason)


def origin_failed(reason: str) -> ProxyError:
    return ProxyError(502, Code.FETCH, reason)


def origin_timeout(reason: str) -> ProxyError:
    return ProxyError(504, Code.FETCH, reason)


# --- a job's destinations ----------------------------------------------------------------

def destination_failed(reason: str) -> ProxyError:
    """An upload to a job's destination failed (jobs/destinations.py says if it is worth retrying)."""
    return ProxyError(502, Code.DESTINATION, reason)


# --- the image ---------------------------------------------------------------------------

def image_too_large(reason: str) -> ProxyError:
    return ProxyError(413, Code.IMAGE_TOO_LARGE, reason)


def unsupported_image(reason: str) -> ProxyError:
    return ProxyError(415, Code.IMAGE_FORMAT, reason)


def cannot_save(reason: str) -> ProxyError:
    return ProxyError(415, Code.IMAGE_SAVE, reason)


def broken_image(reason: str) -> ProxyError:
    return ProxyError(422, Code.IMAGE_BROKEN, reason)


def unsafe_image(reason: str) -> ProxyError:
    """Well-formed, but refused for what it holds (an SVG's DTD, script or external reference)."""
    return ProxyError(422, Code.IMAGE_UNSAFE, reason)


# --- the server ----------------------------------------------------------------------------

def internal(reason: str) -> ProxyError:
    return ProxyError(500, 0, reason)


def worker_failed(reason: str) -> ProxyError:
    return ProxyError(502, Code.WORKER_FAILED, reason)


def busy(reason: str) -> ProxyError:
    return ProxyError(503, Code.BUSY, reason)


def deadline(reason: str) -> ProxyError:
    return ProxyError(504, Code.DEADLINE, reason)
