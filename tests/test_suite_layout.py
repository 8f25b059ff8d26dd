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
