"""imgproxy-resize / python -m imgproxy.image: same parameters, same pipeline as the server."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from support import Origin, blocks, encoded

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


# Most tests run the command in this process (a fresh interpreter costs ~0.3 s of CPU per
# call); a few below run the real `python -m imgproxy.image` end to end.

def cli_process(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """The real command in a process of its own."""
    return subprocess.run([sys.executable, "-m", "imgproxy.image", *args], cwd=ROOT,
                          input=input, capture_output=True, timeout=60)


@dataclass
class Ran:
    """What cli() gives back: the fields of subprocess.CompletedProcess that the tests read."""
    returncode: int
    stdout: bytes
    stderr: bytes


class _ThisThread:
    """A standard stream that is `own` for the thread that made it, `other` for the rest: the
    loopback origin's threads print their tracebacks (a fetch cut short) to sys.stderr, which
    in a real run is not the command's stderr."""

    def __init__(self, own: io.TextIOWrapper, other):
        self._own, self._other, self._thread = own, other, threading.get_ident()

    def __getattr__(self, name: str):
        return getattr(self._own if threading.get_ident() == self._thread else self._other, name)


def cli(*args: str, input: bytes = b"") -> Ran:
    """resize.main(args) in this process, as `sys.exit(main())` in imgproxy/image.py runs it:
    stdin, stdout and stderr are byte streams of its own (stdin holds `input`; none is a
    terminal), and logging is as in a fresh interpreter, where a record that no handler takes
    goes to stderr (pytest's own handlers on the root logger would swallow it). The command
    runs in this thread (asyncio.run for URLs too): its streams are this thread's only."""
    def stream(data: bytes = b"") -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", write_through=True)

    streams = sys.stdin, sys.stdout, sys.stderr
    root_handlers = logging.root.handlers[:]
    stdin, out, err = stream(input), stream(), stream()
    sys.stdin, sys.stdout, sys.stderr = (_ThisThread(own, other) for own, other in zip((stdin, out, err), streams))
    logging.root.handlers.clear()
    try:
        code = resize.main(list(args))
    finally:
        sys.stdin, sys.stdout, sys.stderr = streams
        logging.root.handlers[:] = root_handlers
    out.flush()
    err.flush()
    return Ran(code, out.buffer.getvalue(), err.buffer.getvalue())


@pytest.fixture(autouse=True)
def no_leaks(monkeypatch, tmp_path):
    """main() runs in this process: what it changes goes back, and what it must not change is
    checked. Its NullHandler on the "imgproxy" logger is taken off again; the working directory
    is a temporary one (every path given is absolute; a stray relative one lands there)."""
    logger = logging.getLogger("imgproxy")
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.chdir(tmp_path)
    environ = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    path = sys.path[:]
    yield
    assert {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} == environ
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert sys.path == path


def decoded(body: bytes) -> Image.Image:
    img = Image.open(BytesIO(body))
    img.load()
    return img


# --- as a subprocess: the real entry point, end to end -------------------------------

def test_writes_the_image_to_a_file(source, tmp_path):
    out = tmp_path / "out.jpg"
    done = cli_process(str(source), "--w", "100", "--h", "80", "--mode", "crop", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"" and done.stderr == b""
    img = decoded(out.read_bytes())
    assert (img.format, img.size) == ("JPEG", (100, 80))


def test_writes_the_image_to_stdout(source):
    done = cli_process(str(source), "--width=120", "--height=120", "--mode=clip", "--fmt=png")
    assert done.returncode == 0, done.stderr
    img = decoded(done.stdout)
    assert (img.format, img.size) == ("PNG", (120, 80))


def test_a_bad_argument_exits_2_with_one_line_from_the_real_command(source):
    one_line_error(cli_process(str(source), "--w", "10", "--frobnicate"),
                   "unrecognized arguments: --frobnicate")


# --- in process: the same command, run by resize.main ---------------------------------

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
    (["--op", "region", "--rect", "10,20,30,40", "--fmt", "png", "--opt", "--no-prog"],
     "op=region&rect=10,20,30,40&fmt=png&opt=1&prog=0"),
    (["--w", "90", "--q", "keep", "--exif", "--preserve-exif", "--optimize",
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


# --- URLs ---------------------------------------------------------------------------

def test_urls_are_checked_like_the_servers(capsys):
    assert resize.main(["http://user@example.com/x.jpg", "--w", "10"]) == 2
    assert "user info" in capsys.readouterr().err


# --- issue 10, item 13 --------------------------------------------------------------

def one_line_error(done: subprocess.CompletedProcess | Ran, *reasons: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert done.stdout == b""
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imgproxy-resize: "), lines
    for reason in reasons:
        assert reason in lines[0], lines[0]
    return lines[0]


def test_a_switch_does_not_swallow_the_source(source, tmp_path):
    out = tmp_path / "out.jpg"
    done = cli("--w", "40", "--exif", str(source), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert decoded(out.read_bytes()).size == (40, 26)


@pytest.mark.parametrize("argv, query", [
    (["--exif", "--no-opt", "--prog"], "exif=1&opt=0&prog=1"),
    (["--no-exif", "--optimize", "--no-progressive", "--op", "rotate", "--deg", "90", "--expand"],
     "exif=0&opt=1&prog=0&op=rotate&deg=90&expand=1"),
    (["--op", "rotate", "--deg", "90", "--no-expand"], "op=rotate&deg=90&expand=0"),
])
def test_switches_are_on_and_off_flags(source, argv, query):
    query = query if "op=" in query else f"w=10&{query}"
    argv = argv if "--op" in argv else ["--w", "10", *argv]
    args = resize.build_parser().parse_args([str(source), *argv])
    assert resize.make_plan(args, Settings()) == _server_plan(query)


def test_a_switch_value_is_a_usage_error(source):
    one_line_error(cli(str(source), "--w", "10", "--exif=1"), "--exif")


@pytest.mark.parametrize("name, fmt", [
    ("t.png", "PNG"), ("t.PNG", "PNG"), ("t.webp", "WEBP"), ("t.gif", "GIF"), ("t.jpeg", "JPEG"),
    ("t.tif", "TIFF"), ("t.tiff", "TIFF"),
])
def test_the_output_format_follows_the_file_extension(source, tmp_path, name, fmt):
    out = tmp_path / name
    done = cli(str(source), "--w", "30", "-o", str(out))
    assert done.returncode == 0, done.stderr
    img = decoded(out.read_bytes())
    assert (img.format, img.size) == (fmt, (30, 20))


def test_fmt_overrides_the_extension(source, tmp_path):
    out = tmp_path / "t.png"
    done = cli(str(source), "--w", "30", "--fmt", "webp", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert decoded(out.read_bytes()).format == "WEBP"


def test_no_extension_keeps_the_source_format(tmp_path):
    src = tmp_path / "src.png"
    src.write_bytes(encoded(blocks(), "PNG"))
    out = tmp_path / "thumb"
    done = cli(str(src), "--w", "30", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert decoded(out.read_bytes()).format == "PNG"


def test_an_unknown_extension_without_fmt_is_an_error(source, tmp_path):
    out = tmp_path / "t.bmp"
    one_line_error(cli(str(source), "--w", "30", "-o", str(out)), "'.bmp'", "--fmt")
    assert not out.exists()
    done = cli(str(source), "--w", "30", "--fmt", "png", "-o", str(out))
    assert done.returncode == 0 and decoded(out.read_bytes()).format == "PNG"


def test_dash_reads_stdin_and_writes_stdout(source):  # the real command: its own stdin and stdout
    done = cli_process("-", "--w", "60", "--fmt", "png", "-o", "-", input=source.read_bytes())
    assert done.returncode == 0, done.stderr
    img = decoded(done.stdout)
    assert (img.format, img.size) == ("PNG", (60, 40))


def test_stdin_is_capped_at_max_source_bytes(source):
    one_line_error(cli("-", "--w", "60", "--set", "max_source_bytes=100", input=source.read_bytes()),
                   "larger than max_source_bytes")


def test_a_file_is_capped_at_max_source_bytes(source):
    one_line_error(cli(str(source), "--w", "60", "--set", "max_source_bytes=100"),
                   "larger than max_source_bytes")


def test_every_option_has_a_one_line_help():
    parser = resize.build_parser()
    for action in parser._actions:
        assert action.help and "\n" not in action.help, action.option_strings
    text = cli("--help").stdout.decode()
    for flag in ("--no-exif", "--config", "--set", "-o"):
        assert flag in text


def test_limits_come_from_set(source):
    one_line_error(cli(str(source), "--w", "60", "--set", "max_source_pixels=1000"),
                   "Source image 640x428 is more than 1000 pixels")
    one_line_error(cli(str(source), "--w", "600", "--set", "max-output-pixels=1000"),
                   "more than 1000 pixels")


def test_limits_and_defaults_come_from_a_config_file(source, tmp_path):
    config = tmp_path / "imgproxy.conf.py"
    config.write_text("max_output_pixels = 1000\nformat = 'png'\n")
    one_line_error(cli(str(source), "--w", "600", "--config", str(config)), "more than 1000 pixels")
    done = cli(str(source), "--w", "20", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert decoded(done.stdout).format == "PNG"
    # --set comes after the file, as flags do for the server
    done = cli(str(source), "--w", "600", "--config", str(config), "--set", "max_output_pixels=10000000")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("args, reason", [
    (["--set", "frobnicate=1"], "unknown option 'frobnicate'"),
    (["--set", "max_source_bytes=lots"], "bad value for option 'max_source_bytes'"),
    (["--set", "max_source_bytes"], "NAME=VALUE"),
    (["--config", "/nonexistent/imgproxy.py"], "config file not found"),
])
def test_bad_settings_exit_2_with_one_line(source, args, reason):
    one_line_error(cli(str(source), "--w", "10", *args), reason)


def test_a_broken_config_file_is_one_line(source, tmp_path):
    config = tmp_path / "broken.py"
    config.write_text("max_source_bytes = (\n")
    one_line_error(cli(str(source), "--w", "10", "--config", str(config)), "cannot read config file")
    config.write_text("max_source_bytes = -1\n")
    one_line_error(cli(str(source), "--w", "10", "--config", str(config)), "max_source_bytes")


@pytest.fixture
def loopback_origin(source):
    origin = Origin().start()
    origin.serve("/blocks.jpg", source.read_bytes())
    yield origin
    origin.stop()


def test_a_loopback_url_is_refused_by_default(loopback_origin):
    one_line_error(cli(loopback_origin.url("/blocks.jpg"), "--w", "10"),
                   "to allowed_hosts to fetch from it")
    assert loopback_origin.hits.get("/blocks.jpg", 0) == 0


def test_a_loopback_url_is_fetched_when_its_host_is_allowed(loopback_origin, tmp_path):
    out = tmp_path / "out.png"
    done = cli(loopback_origin.url("/blocks.jpg"), "--w", "64", "--h", "64", "-o", str(out),
               "--set", "allowed_hosts=127.0.0.1")
    assert done.returncode == 0, done.stderr
    img = decoded(out.read_bytes())
    assert (img.format, img.size) == ("PNG", (64, 64))
    assert loopback_origin.hits["/blocks.jpg"] == 1


def test_a_host_outside_allowed_hosts_is_refused(loopback_origin):
    one_line_error(cli(loopback_origin.url("/blocks.jpg"), "--w", "10", "--set", "allowed_hosts=example.com"),
                   "Invalid host")
    assert loopback_origin.hits.get("/blocks.jpg", 0) == 0


def test_a_url_is_capped_at_max_source_bytes(loopback_origin):
    one_line_error(cli(loopback_origin.url("/blocks.jpg"), "--w", "10",
                       "--set", "allowed_hosts=127.0.0.1", "--set", "max_source_bytes=100"),
                   "larger than max_source_bytes")


def test_a_redirect_to_a_host_not_allowed_is_refused(loopback_origin):
    loopback_origin.serve("/hop", b"", status=302, headers={"Location": "http://localhost:1/x.jpg"})
    one_line_error(cli(loopback_origin.url("/hop"), "--w", "10", "--set", "allowed_hosts=127.0.0.1"),
                   "redirected to a host that is not allowed")


def test_a_missing_url_is_one_line(loopback_origin):
    one_line_error(cli(loopback_origin.url("/missing.jpg"), "--w", "10", "--set", "allowed_hosts=127.0.0.1"),
                   "Source not found (origin answered 404)")
