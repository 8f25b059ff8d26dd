"""The test suite's own layout: test modules share helpers through helper modules, never through each other."""
from __future__ import annotations

import ast

from tests.fixtures import REPO


def test_no_test_module_imports_another():
    offenders = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            offenders += [f"{path.relative_to(REPO)} imports {name}" for name in names
                          if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_")]
    assert offenders == [], "move the shared helpers into tests/fixtures.py or a helper module beside them"


def test_each_conftest_defines_a_fixture_once():
    """A second definition silently replaces the first (two merged branches each moved the Prefect harness here)."""
    for conftest in sorted((REPO / "tests").rglob("conftest.py")):
        names = [node.name for node in ast.parse(conftest.read_text()).body
                 if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        assert len(names) == len(set(names)), (conftest, sorted({n for n in names if names.count(n) > 1}))
