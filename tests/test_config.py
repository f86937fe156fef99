"""Option loading: defaults < config file < flags; bad options stop start-up."""

import subprocess
import sys

import pytest
from support import ROOT

from imgproxy.config import ConfigError, Settings, load, usage


def test_defaults_match_pilbox():
    s = Settings()
    assert (s.port, s.address, s.max_operations, s.max_requests) == (8888, "127.0.0.1", 10, 40)
    assert (s.max_resize_width, s.max_resize_height, s.timeout) == (15000, 15000, 10.0)
    assert s.validate_cert is True and s.workers == 0 and s.worker_count >= 1
    assert s.allowed_operations == ("noop", "region", "resize", "rotate")


def test_flags_override_file_and_later_flags_win(tmp_path):
    cfg = tmp_path / "conf.py"
    cfg.write_text("import os\nport = 9001\nallowed_hosts = ['a.com', 'b.com:8080']\n"
                   "quality = 80\nvalidate_cert = False\n_private = 1\n")
    s = load([f"--config={cfg}", "--quality=70", "--port=9002", "--port=9003"])
    assert s.port == 9003 and s.quality == 70
    assert s.allowed_hosts == ("a.com", "b.com:8080") and s.validate_cert is False
    assert load([f"--config={cfg}"]).port == 9001
    assert load(["--allowed_hosts=a.com, b.com"]).allowed_hosts == ("a.com", "b.com")
    assert load(["--debug"]).debug is True
    assert load(["--timeout", "2.5"]).timeout == 2.5


@pytest.mark.parametrize("argv, named", [
    (["--bogus=1"], "bogus"),
    (["--port=eighty"], "port"),
    (["--workers=-1"], "workers"),
    (["--quality=101"], "quality"),
    (["--mode=zoom"], "mode"),
    (["--operation=resize,explode"], "operation"),
    (["--background=xyz"], "background"),
    (["--validate_cert=maybe"], "validate_cert"),
    (["--implicit_base_url=ftp://x"], "implicit_base_url"),
    (["--input_formats=JPEG,NOPE"], "input_formats"),
])
def test_bad_options_name_themselves(argv, named):
    with pytest.raises(ConfigError) as e:
        load(argv)
    assert named in str(e.value) and "\n" not in str(e.value)


def test_unknown_variable_in_config_file(tmp_path):
    cfg = tmp_path / "conf.py"
    cfg.write_text("prot = 8080\n")
    with pytest.raises(ConfigError, match="prot"):
        load([f"--config={cfg}"])


def test_missing_config_file():
    with pytest.raises(ConfigError, match="not found"):
        load(["--config=/nonexistent/imgproxy.conf"])


def test_example_config_documents_every_option_with_its_default():
    import ast
    import re
    text = (ROOT / "config.example.py").read_text()
    documented = {}
    for m in re.finditer(r"^# (\w+) = (.+?)(?:[ \t]+#.*)?$", text, re.M):
        documented[m.group(1)] = ast.literal_eval(m.group(2))
    assert set(documented) == set(Settings.__dataclass_fields__)
    for name, value in documented.items():
        if name != "config":
            assert getattr(load([], **{name: value}), name) == getattr(Settings(), name), name
    # and it is itself a valid config file
    assert load([f"--config={ROOT / 'config.example.py'}"]) == Settings(config=str(ROOT / "config.example.py"))


def test_bad_option_stops_the_server_with_one_line():
    r = subprocess.run([sys.executable, "-m", "imgproxy", "--port=x"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "port" in r.stderr


def test_help_lists_options():
    assert "--max_resize_width" in usage()


def test_job_options(tmp_path):
    cfg = tmp_path / "conf.py"
    cfg.write_text("job_credentials = {'FTP.example.com': 'pw-one', 'ftp.example.com:2121': 'pw=two'}\n"
                   f"job_file_root = {str(tmp_path)!r}\n"
                   "job_allowed_destinations = ['ftp://bob@ftp.example.com/in/', 'file:///srv/out/']\n")
    s = load([f"--config={cfg}"])
    assert s.job_credentials == (("ftp.example.com", "pw-one"), ("ftp.example.com:2121", "pw=two"))
    assert s.job_file_root == str(tmp_path)
    assert s.job_allowed_destinations == ("ftp://bob@ftp.example.com/in/", "file:///srv/out/")
    assert load(["--job_credentials=a.example=x=y, b.example:21=z"]).job_credentials == (
        ("a.example", "x=y"), ("b.example:21", "z"))


@pytest.mark.parametrize("argv, named", [
    (["--job_allowed_destinations=gopher://x/"], "job_allowed_destinations"),
    (["--job_allowed_destinations=ftp://u:hunter2@x/"], "job_allowed_destinations"),
    (["--job_allowed_destinations=http://x/?q=1"], "job_allowed_destinations"),
    (["--job_allowed_destinations=file://host/x"], "job_allowed_destinations"),
    (["--job_credentials=hunter2"], "job_credentials"),
    (["--job_credentials=bad host=hunter2"], "job_credentials"),
    (["--job_file_root=relative/dir"], "job_file_root"),
    (["--job_file_root=/nonexistent/dir"], "job_file_root"),
])
def test_bad_job_options_never_echo_a_password(argv, named):
    with pytest.raises(ConfigError) as e:
        load(argv)
    assert named in str(e.value) and "hunter2" not in str(e.value)


def test_passwords_are_never_shown():
    s = load(["--job_credentials=ftp.example.com=hunter2"])
    assert "hunter2" not in repr(s) and "hunter2" not in usage()
    assert "job_credentials" in usage() and "(default: unset)" in usage().split("--job_credentials")[1].split("\n")[0]
