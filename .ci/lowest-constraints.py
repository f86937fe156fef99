#!/usr/bin/env python3
"""Print pip constraints pinning every dependency of pyproject.toml to its lower bound.

    python .ci/lowest-constraints.py [OUT]     (stdout without OUT)

Each `name>=X` of [project] dependencies and of the optional extras becomes
`name==X`, so `pip install -c OUT -e '.[test]'` installs the lowest versions the
project claims to work with; the pins are read from pyproject.toml each time and
cannot drift from it. A dependency without a `>=` bound is an error: its lowest
version would be untested.
"""

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*?)\s*(?:;.*)?$")


def lowest_pins(pyproject: dict) -> list[str]:
    project = pyproject["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins = []
    for requirement in requirements:
        match = REQUIREMENT.match(requirement)
        if not match:
            raise SystemExit(f"cannot read requirement {requirement!r}")
        name, specifiers = match.groups()
        lower = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
        if len(lower) != 1:
            raise SystemExit(f"{requirement!r}: needs exactly one '>=' lower bound")
        pins.append(f"{name}=={lower[0]}")
    return pins


def main() -> None:
    with PYPROJECT.open("rb") as f:
        text = "\n".join(lowest_pins(tomllib.load(f))) + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
