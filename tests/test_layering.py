"""One floor per role: no module imports from a floor above its own, and no import circle (function-local imports
count; imports under ``if TYPE_CHECKING`` do not, since they never run).

Floors, bottom to top: core < features < store, decoders < pipeline.data, pipeline.metrics < pipeline.extract,
pipeline.evaluate < pipeline.infer, pipeline.report < pipeline.train < pipeline.grid < flows < cli. Two packages on one
floor do not import each other. The oracle is the source text (``ast``), not the package's own import machinery.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.fixtures import REPO

FLOORS = [
    ("core",),
    ("features",),
    ("store", "decoders"),
    ("pipeline.data", "pipeline.metrics"),
    ("pipeline.extract", "pipeline.evaluate"),
    ("pipeline.infer", "pipeline.report"),
    ("pipeline.train",),
    ("pipeline.grid",),
    ("flows",),
    ("cli",),
]
UNITS = {unit: rank for rank, units in enumerate(FLOORS) for unit in units}
PACKAGES = ("core", "features", "store", "decoders", "pipeline", "flows", "cli")


def unit_of(module: str) -> str:
    """The floor unit a dotted module (without the ``declip.`` prefix) belongs to: the longest listed prefix."""
    parts = module.split(".")
    for n in (2, 1):
        if ".".join(parts[:n]) in UNITS:
            return ".".join(parts[:n])
    return module  # e.g. the bare ``pipeline`` package


def modules() -> dict[str, Path]:
    found = {}
    for top in PACKAGES:
        for path in (REPO / top).rglob("*.py"):
            dotted = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found[dotted.removesuffix(".__init__")] = path
    return found


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules ``path`` imports (``declip.x.y`` → ``x.y``; ``from declip.x import y`` resolves ``y``)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    out = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]  # a name that is no module resolves to node.module
        for name in names:
            if not name.startswith("declip."):
                continue
            name = name.removeprefix("declip.")
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports_of(p, set(mods)) - {m} for m, p in mods.items()}


def test_every_package_is_on_a_floor():
    for module in modules():
        assert unit_of(module) in UNITS or module == "pipeline", f"{module} is on no floor; add its package to FLOORS"


def test_no_module_imports_from_its_own_floor_or_above():
    upward = []
    for module, deps in graph().items():
        mine = unit_of(module)
        for dep in deps:
            theirs = unit_of(dep)
            if theirs == mine or dep == "pipeline":
                continue
            if UNITS.get(theirs, -1) >= UNITS.get(mine, -1):
                upward.append(f"{module} -> {dep}")
    assert not upward, "imports that do not point down a floor:\n" + "\n".join(sorted(upward))


def test_no_import_circles():
    g = graph()
    index, low, stack, on_stack, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in list(g):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


@pytest.mark.parametrize("package", ["core", "features", "store", "decoders"])
def test_library_floors_never_import_prefect(package):
    offenders = [str(p.relative_to(REPO)) for p in (REPO / package).rglob("*.py")
                 if any(line.strip().startswith(("import prefect", "from prefect")) for line in p.read_text().splitlines())]
    assert not offenders


def test_checker_sees_an_upward_import(tmp_path):
    """The oracle itself: a hand-written upward import is found."""
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from declip.flows.grid import grid_flow\n")
    assert imports_of(bad, {"flows.grid", "flows"}) == {"flows.grid"}
    guarded = tmp_path / "y.py"
    guarded.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from declip.cli.app import main\n")
    assert imports_of(guarded, {"cli.app"}) == set()
