"""No mutant of tests/mutation is retired silently: every anchor is found exactly once and every test it names exists.

A mutant whose anchor text no longer occurs (the code moved on) is skipped by the mutation check; one whose test
selection names a file or test that is gone would be counted as killed by pytest's usage error. Both fail here,
naming the mutant, so whoever moves the code re-points the mutant in the same change.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from tests.fixtures import REPO
from tests.mutation.mutants import MUTANTS, Mutant, anchor_state

IDS = [m.id for m in MUTANTS]


def _test_names(path: Path) -> set[str]:
    """The test functions a test file defines (module level and in classes), read without importing it."""
    tree = ast.parse(path.read_text())
    return {node.name for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")}


def test_mutant_ids_are_unique():
    assert len(IDS) == len(set(IDS)), sorted({i for i in IDS if IDS.count(i) > 1})


@pytest.mark.parametrize("mutant", MUTANTS, ids=IDS)
def test_anchor_is_found_exactly_once(mutant: Mutant):
    assert anchor_state(REPO, mutant) == "ok", (
        f"{mutant.id} ({mutant.what}): {anchor_state(REPO, mutant)} in {mutant.file}; re-point it in "
        "tests/mutation/mutants.py at the code that now does that job")
    assert mutant.new != mutant.old


@pytest.mark.parametrize("mutant", MUTANTS, ids=IDS)
def test_every_named_test_exists(mutant: Mutant):
    for selection in mutant.tests:
        file, _, name = selection.partition("::")
        assert (REPO / file).is_file(), f"{mutant.id}: {file} does not exist"
        if name:
            assert name.split("[")[0] in _test_names(REPO / file), f"{mutant.id}: {selection} does not exist"


def test_anchor_state_tells_missing_from_ambiguous(tmp_path):
    (tmp_path / "m.py").write_text("x = 1\ny = 2\ny = 2\n")
    case = Mutant("Z", "area", "what", "m.py", "x = 1", "x = 0", ())
    assert anchor_state(tmp_path, case) == "ok"
    assert anchor_state(tmp_path, Mutant("Z", "a", "w", "m.py", "y = 2", "y = 3", ())) == "anchor-ambiguous(2)"
    assert anchor_state(tmp_path, Mutant("Z", "a", "w", "m.py", "z = 3", "z = 4", ())) == "anchor-missing"
    assert anchor_state(tmp_path, Mutant("Z", "a", "w", "gone.py", "x = 1", "x = 0", ())) == "anchor-missing"


def _runner():
    spec = importlib.util.spec_from_file_location("mutation_run", REPO / "tests" / "mutation" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_list_exits_nonzero_when_an_anchor_is_missing(monkeypatch, capsys):
    run = _runner()
    assert run.main(["--list"]) == 0
    gone = Mutant("Z1", "metrics", "an anchor that is not in the code", "pipeline/metrics/pixel.py",
                  "no such text in pixel.py", "x", ())
    monkeypatch.setattr(run, "MUTANTS", [*run.MUTANTS, gone])
    assert run.main(["--list"]) == 1
    out, err = capsys.readouterr()
    assert "Z1" in err and "anchor-missing" in out
