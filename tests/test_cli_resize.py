"""imgproxy-resize / python -m imgproxy.image: same parameters, same pipeline as the server."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from support import blocks, encoded

from imgproxy.cli import resize
from imgproxy.config import Settings
from imgproxy.imaging.pipeline import process
from imgproxy.options.build import build_plan
from imgproxy.options.query import parse_query
from imgproxy.plan import Plan
from imgproxy.render import imaging_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "blocks.jpg"
    path.write_bytes(encoded(blocks()))
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imgproxy.image", *args], cwd=ROOT,
                          capture_output=True, timeout=60)


def decoded(body: bytes) -> Image.Image:
    img = Image.open(BytesIO(body))
    img.load()
    return img


# --- as a subprocess ----------------------------------------------------------------

def test_writes_the_image_to_a_file(source, tmp_path):
    out = tmp_path / "out.jpg"
    done = cli(str(source), "--w", "100", "--h", "80", "--mode", "crop", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"" and done.stderr == b""
    img = decoded(out.read_bytes())
    assert (img.format, img.size) == ("JPEG", (100, 80))


def test_writes_the_image_to_stdout(source):
    done = cli(str(source), "--width=120", "--height=120", "--mode=clip", "--fmt=png")
    assert done.returncode == 0, done.stderr
    img = decoded(done.stdout)
    assert (img.format, img.size) == ("PNG", (120, 80))


@pytest.mark.parametrize("args, reason", [
    (["--w", "100", "--mode", "sideways"], "Invalid mode: sideways"),
    (["--w", "0"], "Invalid width: 0"),
    (["--w", "10", "--q", "100"], "Invalid quality: 100"),
    (["--op", "region", "--rect", "0,0,9999,10"], "Region out-of-bounds"),
    (["--op", "resize"], "Missing dimensions"),
    (["--w", "10", "--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_parameters_exit_2_with_one_line(source, args, reason):
    done = cli(str(source), *args)
    assert done.returncode == 2
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgproxy-resize: ")
    assert reason in lines[0]


@pytest.mark.parametrize("make, reason", [
    (lambda p: p / "missing.jpg", "No such file or directory"),
    (lambda p: (p / "text.jpg", (p / "text.jpg").write_text("not an image"))[0],
     "Unsupported image format"),
    (lambda p: (p / "half.jpg", (p / "half.jpg").write_bytes(encoded(blocks())[:2000]))[0],
     "Broken image data"),
])
def test_bad_sources_exit_2_with_one_line(tmp_path, make, reason):
    done = cli(str(make(tmp_path)), "--w", "10")
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgproxy-resize: ") and reason in lines[0]


def test_no_source_is_a_one_line_usage_error():
    done = cli()
    assert done.returncode == 2 and len(done.stderr.decode().splitlines()) == 1


def test_help_exits_0():
    done = cli("--help")
    assert done.returncode == 0 and b"--w" in done.stdout


# --- in process: the same plan and bytes as the server ------------------------------

def _server_plan(query: str) -> Plan:
    return build_plan(parse_query(query), Settings())


@pytest.mark.parametrize("argv, query", [
    (["--w", "100", "--h", "80"], "w=100&h=80"),
    (["--width", "200", "--mode", "fill", "--bg", "f00", "--pos", "top-left"],
     "w=200&mode=fill&bg=f00&pos=top-left"),
    (["--h", "50", "--filter", "nearest", "--format", "webp", "--quality", "40"],
     "h=50&filter=nearest&fmt=webp&q=40"),
    (["--op", "rotate,resize", "--degree", "45", "--expand", "--w", "64", "--retain", "80",
      "--position", "0.2,0.7", "--background", "8000ff00"],
     "op=rotate,resize&deg=45&expand=1&w=64&retain=80&pos=0.2,0.7&bg=8000ff00"),
    (["--op", "region", "--rect", "10,20,30,40", "--fmt", "png", "--opt", "--prog", "0"],
     "op=region&rect=10,20,30,40&fmt=png&opt=1&prog=0"),
    (["--w", "90", "--q", "keep", "--exif", "1", "--preserve-exif", "--optimize", "1",
      "--progressive"], "w=90&q=keep&exif=1&opt=1&prog=1"),
    (["--op", "rotate", "--deg", "auto"], "op=rotate&deg=auto"),
    (["--op", "noop"], "op=noop"),
])
def test_flags_build_the_servers_plan_and_bytes(source, argv, query, tmp_path):
    args = resize.build_parser().parse_args([str(source), *argv])
    plan = resize.make_plan(args, Settings())
    assert plan == _server_plan(query)
    out = tmp_path / "out"
    assert resize.main([str(source), *argv, "-o", str(out)]) == 0
    assert out.read_bytes() == process(source.read_bytes(), plan, imaging_settings(Settings())).body


def test_stdout_gets_exactly_the_body(source, capsysbinary):
    assert resize.main([str(source), "--w", "50"]) == 0
    captured = capsysbinary.readouterr()
    assert decoded(captured.out).size == (50, 33) and captured.err == b""


# --- URLs --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def origin(source):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(source.parent), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetches_an_http_source(origin, tmp_path):
    out = tmp_path / "out.png"
    done = cli(f"{origin}/blocks.jpg", "--w", "64", "--h", "64", "--fmt", "png", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert decoded(out.read_bytes()).size == (64, 64)


def test_http_errors_exit_2_with_one_line(origin, capsys):
    assert resize.main([f"{origin}/missing.jpg", "--w", "10"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "HTTP 404" in err[0]


def test_http_source_is_capped_in_bytes(origin):
    with pytest.raises(ValueError, match="larger than 100 bytes"):
        resize.read_source(f"{origin}/blocks.jpg", max_bytes=100)
    assert len(resize.read_source(f"{origin}/blocks.jpg", max_bytes=10**7)) > 100


def test_urls_are_checked_like_the_servers(capsys):
    assert resize.main(["http://user@example.com/x.jpg", "--w", "10"]) == 2
    assert "user info" in capsys.readouterr().err
