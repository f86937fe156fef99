"""The servers throughput.py can drive: ours, and thumbor as a peer, doing the same work.

Each knows its command line (2 image processes, listening on 127.0.0.1 only) and how to ask
for a 300x300 centred crop at quality 85 of a source URL.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from bench import common

THUMBOR_VERSION = "7.8.0"
THUMBOR_VENV = common.CACHE / "thumbor-venv"


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    cwd: Path = common.REPO

    def path(self, source_url: str) -> str:
        raise NotImplementedError


class Imgproxy(Server):
    """python -m imgproxy with 2 workers, run in `repo` (so its imgproxy package is the one
    imported), with the benchmark's Python."""

    def __init__(self, port: int, repo: Path = common.REPO, workers: int = 2, name: str = "imgproxy"):
        super().__init__(name, [
            sys.executable, "-m", "imgproxy", f"--port={port}", "--address=127.0.0.1",
            f"--workers={workers}", "--allowed_hosts=127.0.0.1"], port, repo.resolve())

    def path(self, source_url: str) -> str:
        return f"/?url={quote(source_url, safe='')}&{common.QUERY}"


class ImgproxyCached(Imgproxy):
    """imgproxy with its filesystem result cache, fully warmed before the load: every
    request is a hit, answered without fetching or decoding."""

    warm_all = True

    def __init__(self, port: int, repo: Path = common.REPO, workers: int = 2):
        super().__init__(port, repo, workers)
        cache = common.CACHE / "result-cache" / str(port)
        self.command.append(f"--cache_dir={cache}")
        self.name = "imgproxy+cache"


class ImgproxyPaths(Imgproxy):
    """imgproxy asked by path URL (`/300x300!/vK/name.jpg?q=85`: the same centred 300x300 crop
    at q=85 as the query API's QUERY), with `origin` as its one origin and a cache of originals
    big enough for the whole workload, warmed by one request per URL before the load. The
    result cache stays off: every request is rendered, only the fetch is saved."""

    warm_all = True
    SOURCE_CACHE_BYTES = 400_000_000  # the 13 photos under 8 URLs each are about 146 MB

    def __init__(self, port: int, origin: str, repo: Path = common.REPO, workers: int = 2):
        super().__init__(port, repo, workers)
        self.origin = origin.rstrip("/") + "/"
        self.command += [f"--origins={self.origin}", f"--source_cache_bytes={self.SOURCE_CACHE_BYTES}"]
        self.name = "imgproxy+paths"

    def path(self, source_url: str) -> str:
        assert source_url.startswith(self.origin), (source_url, self.origin)
        w, h = common.SIZE
        return f"/{w}x{h}!/{source_url.removeprefix(self.origin)}?q={common.QUALITY}"


# No storage of sources or results (every request fetches and renders, as ours does),
# baseline JPEG at our quality, PIL engine and HTTP loader as by default.
THUMBOR_CONF = f"""\
ALLOW_UNSAFE_URL = True
QUALITY = {common.QUALITY}
PROGRESSIVE_JPEG = False
STORAGE = 'thumbor.storages.no_storage'
RESULT_STORAGE = None
LOADER = 'thumbor.loaders.http_loader'
ENGINE = 'thumbor.engines.pil'
AUTO_WEBP = False
"""


class Thumbor(Server):
    """thumbor from PyPI in its own venv, --processes=2; /unsafe/300x300/<url> is a centred crop."""

    def __init__(self, port: int, repo: Path | None = None, processes: int = 2):
        conf = common.CACHE / "thumbor.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(THUMBOR_CONF)
        super().__init__("thumbor", [
            str(THUMBOR_VENV / "bin" / "thumbor"), f"--port={port}", "--ip=127.0.0.1",
            f"--conf={conf}", f"--processes={processes}", "--log-level=warning"], port)

    def path(self, source_url: str) -> str:
        w, h = common.SIZE
        return f"/unsafe/{w}x{h}/{quote(source_url.removeprefix('http://'), safe='/:')}"


def ensure_thumbor(version: str = THUMBOR_VERSION) -> Path:
    """Install thumbor==version into bench/.cache/thumbor-venv once; returns the venv."""
    marker = THUMBOR_VENV / f".installed-thumbor-{version}"
    if marker.exists():
        return THUMBOR_VENV
    print(f"installing thumbor {version} into {THUMBOR_VENV} ...", flush=True)
    if not (THUMBOR_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True)
    subprocess.run([str(THUMBOR_VENV / "bin" / "pip"), "install", "--quiet",
                    f"thumbor=={version}"], check=True)
    marker.touch()
    return THUMBOR_VENV


def thumbor_versions() -> str:
    """thumbor's and its Pillow's versions, for the report."""
    code = ("import thumbor, PIL; print('thumbor', thumbor.__version__, 'Pillow', PIL.__version__)")
    out = subprocess.run([str(THUMBOR_VENV / "bin" / "python"), "-c", code],
                         capture_output=True, text=True)
    return out.stdout.strip() or "thumbor (version unknown)"
