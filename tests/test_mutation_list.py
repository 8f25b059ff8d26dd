"""No mutant of tests/mutation is retired silently: every anchor is found exactly once and every test it names exists.

A mutant whose anchor text no longer occurs (the code moved on) is skipped by the mutation check; one whose test
selection names a file or test that is gone, or only tests the check deselects (it runs ``-m "not flow"``), runs
nothing. These fail here, naming the mutant, so whoever moves the code re-points the mutant in the same change.
"""
from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

from tests.fixtures import REPO
from tests.mutation.mutants import MUTANTS, Mutant, anchor_state

IDS = [m.id for m in MUTANTS]


def _tests_and_flow_marks(path: Path) -> tuple[dict[str, bool], bool]:
    """({test function: marked flow}, the module's ``pytestmark`` says flow), read without importing the file."""
    source = path.read_text()
    tree = ast.parse(source)
    module_flow = any(isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
                      and "flow" in ast.get_source_segment(source, node.value) for node in tree.body)
    tests = {node.name: any("mark.flow" in ast.get_source_segment(source, d) for d in node.decorator_list)
             for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")}
    return tests, module_flow


def test_mutant_ids_are_unique():
    assert len(IDS) == len(set(IDS)), sorted({i for i in IDS if IDS.count(i) > 1})


@pytest.mark.parametrize("mutant", MUTANTS, ids=IDS)
def test_anchor_is_found_exactly_once(mutant: Mutant):
    assert anchor_state(REPO, mutant) == "ok", (
        f"{mutant.id} ({mutant.what}): {anchor_state(REPO, mutant)} in {mutant.file}; re-point it in "
        "tests/mutation/mutants.py at the code that now does that job")
    assert mutant.new != mutant.old


@pytest.mark.parametrize("mutant", MUTANTS, ids=IDS)
def test_every_named_test_exists_and_runs_without_flows(mutant: Mutant):
    for selection in mutant.tests:
        file, _, name = selection.partition("::")
        assert (REPO / file).is_file(), f"{mutant.id}: {file} does not exist"
        tests, module_flow = _tests_and_flow_marks(REPO / file)
        assert not module_flow, f"{mutant.id}: every test of {file} is marked flow, which the mutation check skips"
        if name:
            name = name.split("[")[0]
            assert name in tests, f"{mutant.id}: {selection} does not exist"
            assert not tests[name], f"{mutant.id}: {selection} is marked flow, which the mutation check skips"
        else:
            assert not all(tests.values()), f"{mutant.id}: every test of {file} is marked flow"


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


def test_area_table_counts_kills_per_area_lowest_first():
    rows = [{"area": "locks", "verdict": "killed"}, {"area": "locks", "verdict": "survived"},
            {"area": "srm", "verdict": "killed"}, {"area": "srm", "verdict": "killed"}]
    table = _runner().area_table(rows).splitlines()
    assert table[1].split() == ["locks", "1/2", "50.0%"]
    assert table[2].split() == ["srm", "2/2", "100.0%"]
