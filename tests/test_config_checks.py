"""Options checked at start-up for what they will be used for, and shown as a user writes them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import ROOT

from imgproxy.config import ConfigError, Settings, load, usage
from imgproxy.options.build import build_plan
from imgproxy.options.query import parse_query
from imgproxy.plan import Resize, Rotate


@pytest.mark.parametrize("argv, named", [
    (["--quality_webp=keep"], "quality_webp"),
    (["--quality_avif=KEEP"], "quality_avif"),
    (["--port=99999"], "port"),
    (["--port=-1"], "port"),
    (["--port=0"], "port"),
    (["--proxy_port=70000"], "proxy_port"),
])
def test_values_unusable_for_their_purpose_are_refused(argv, named):
    with pytest.raises(ConfigError) as e:
        load(argv)
    assert f"'{named}'" in str(e.value) and "\n" not in str(e.value)


def test_port_edges_are_accepted():
    assert load(["--port=1"]).port == 1 and load(["--port=65535"]).port == 65535
    assert load(["--quality=keep"]).quality == "keep"  # JPEG's own default may keep tables


def test_out_of_range_port_stops_the_server_naming_it():
    r = subprocess.run([sys.executable, "-m", "imgproxy", "--port=-1"], capture_output=True,
                       text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "'port'" in r.stderr and r.stderr.strip().count("\n") == 0


def test_help_shows_defaults_as_a_user_writes_them():
    text = usage()
    lines = {line.split()[0]: line for line in text.splitlines()[2:]}
    assert lines["--background"].endswith("(default: 00ffffff)")
    assert lines["--position"].endswith("(default: center)")
    assert lines["--client_key"].endswith("(default: unset)")
    assert lines["--operation"].endswith("(default: resize)")
    assert "(255, 255, 255, 0)" not in text and "(0.5, 0.5)" not in text and "()" not in text
    # and what it shows is accepted back
    assert load(["--background=00ffffff", "--position=center"]) == Settings()


@pytest.mark.parametrize("query, expected", [
    ("op=RESIZE&w=10&mode=CROP&filter=Nearest&pos=Top-Left&fmt=JPEG&q=KEEP",
     "op=resize&w=10&mode=crop&filter=nearest&pos=top-left&fmt=jpeg&q=keep"),
    ("op=Rotate&deg=AUTO", "op=rotate&deg=auto"),
    ("op=resize&w=10&pos=FACE", "op=resize&w=10&pos=face"),
])
def test_enumerated_values_ignore_case(query, expected):
    s = Settings()
    assert build_plan(parse_query(query), s) == build_plan(parse_query(expected), s)


def test_case_rule_reaches_the_operations():
    plan = build_plan(parse_query("op=Resize,ROTATE&w=10&deg=90&mode=Fill"), Settings())
    assert isinstance(plan.operations[0], Resize) and plan.operations[0].mode == "fill"
    assert isinstance(plan.operations[1], Rotate)
