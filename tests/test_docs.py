"""The README's promises that code can check: its two set-up commands, and CI running one."""

import re

from support import ROOT

from imgproxy.config import Settings

README = (ROOT / "README.rst").read_text()


def setup_commands() -> list[str]:
    return [line.strip() for line in README.splitlines() if line.strip().startswith("python3 -m venv")]


def test_exactly_two_setup_commands_and_ci_runs_the_test_one():
    run, test = setup_commands()
    assert run.endswith(".venv/bin/imgproxy")
    assert "pytest" in test
    assert test in (ROOT / ".ci" / "run").read_text()


def test_every_option_is_documented():
    documented = set(re.findall(r"^``(\w+)``", README, re.M))
    missing = set(Settings.__dataclass_fields__) - documented
    assert not missing, missing


def test_every_query_parameter_is_documented():
    for name in ("url", "op", "w", "h", "mode", "filter", "pos", "retain", "bg", "deg", "expand",
                 "rect", "fmt", "q", "opt", "prog", "exif", "client", "sig"):
        assert re.search(rf"^``{name}``\s", README, re.M), name


def test_the_readme_is_valid_restructuredtext():
    """A malformed table renders as an error block on PyPI and GitHub: none, and no warnings."""
    import docutils.core
    import docutils.utils

    reports = []
    doctree = docutils.core.publish_doctree(README, settings_overrides={
        "report_level": 5, "halt_level": 5, "_disable_config": True})
    for node in doctree.findall(lambda n: n.tagname == "system_message"):
        if node["level"] >= docutils.utils.Reporter.WARNING_LEVEL:
            reports.append(f"line {node.get('line')}: {node.astext()[:200]}")
    assert not reports, reports
