"""The package's imports run with the request's flow: no cycle, and none from a lower
layer up to a higher one (shared/DESIGN.md). Read from the source, so a new import
that breaks the shape fails here rather than in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "imgproxy"

# Lowest first. A module may import its own layer or lower ones; a prefix names a package.
LAYERS = [
    ["imgproxy", "imgproxy.errors", "imgproxy.plan"],
    ["imgproxy.urls", "imgproxy.signature", "imgproxy.options.values", "imgproxy.options.query",
     "imgproxy.imaging", "imgproxy.storage"],
    ["imgproxy.config"],
    ["imgproxy.options", "imgproxy.security", "imgproxy.sources", "imgproxy.pool", "imgproxy.metrics"],
    ["imgproxy.render"],
    ["imgproxy.delivery", "imgproxy.jobs", "imgproxy.store"],
    ["imgproxy.server", "imgproxy.cli", "imgproxy.__main__", "imgproxy.image", "imgproxy.worker_preload"],
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Modules of the package that `path` imports, TYPE_CHECKING imports included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "imgproxy")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "imgproxy":
                target = node.module
            else:
                continue
            for alias in node.names:  # `from . import x` may name a module
                sub = f"{target}.{alias.name}"
                found.add(sub if _exists(sub) else target)
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def layer(module: str) -> int:
    best, depth = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and name.count(".") > depth:
                best, depth = i, name.count(".")
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """Every module's imports; parsed when a test asks (not at collection, in every xdist worker)."""
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer(graph):
    for module in graph:
        layer(module)


def test_no_import_runs_against_the_flow(graph):
    upward = [f"{m} -> {t}" for m, targets in graph.items() for t in targets if layer(t) > layer(m)]
    assert not upward


def test_no_import_cycle(graph):
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_check_sees_imports(graph):
    # the checker itself: these edges exist in the code
    assert "imgproxy.render" in graph["imgproxy.delivery.results"]
    assert "imgproxy.options.values" in graph["imgproxy.config"]
    assert "imgproxy.config" in graph["imgproxy.options.build"]  # a TYPE_CHECKING import counts
