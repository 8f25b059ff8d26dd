"""How a grid runs a cell, without Prefect: a failed training leaves failed.json (status, run, error, traceback,
config) and a record instead of an exception; a later success removes it; evaluations of a failed cell are
skipped, and a failing evaluation is returned, not raised."""
import json
import logging
from pathlib import Path

import pytest

from tests.fixtures import TINY_BACKBONE
from declip.pipeline.grid.cells import FAILED_RECORD, evaluate_cell, evaluate_cells, train_cell
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import plan_cells


@pytest.fixture(scope="module")
def cells(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("cells")
    g = GridConfig.from_dict(dict(store=str(tiny_store), dataset="dolos-celebahq", out=str(out),
                                  backbones=[TINY_BACKBONE], layers=["layer1"], decoders=["linear", "conv-7"],
                                  train_sets=["tint"], test_sets=["tint"], max_epochs=1, batch_size=8, width=0.25))
    return {c.train.decoder: c for c in plan_cells(g)}


def test_a_failed_cell_is_recorded_and_a_later_success_clears_it(cells, caplog):
    broken = cells["conv-7"].train  # no such decoder: fails when the run builds it
    with caplog.at_level(logging.WARNING, logger="declip.grid"):
        record = train_cell(broken)
    assert record["status"] == "failed" and record["run"] == Path(broken.out).name
    assert "conv-7" in record["error"] and "Traceback" in record["traceback"]
    on_disk = json.loads((Path(broken.out) / FAILED_RECORD).read_text())
    assert on_disk == json.loads(json.dumps(record, default=str)) and on_disk["config"] == broken.to_json()
    assert f"cell {Path(broken.out).name}" in caplog.text

    good = cells["linear"].train
    Path(good.out).mkdir(parents=True, exist_ok=True)
    (Path(good.out) / FAILED_RECORD).write_text("{}")  # a failure of an earlier run of this cell
    record = train_cell(good)
    assert record["status"] == "ok" and record["run"] == Path(good.out).name and record["epochs"] == 1
    assert not (Path(good.out) / FAILED_RECORD).exists()


def test_evaluations_of_failed_cells_are_skipped_and_failures_returned(cells, caplog):
    linear, broken = cells["linear"], cells["conv-7"]
    ev = broken.evals[0]
    failed = [{"status": "failed", "run": broken.run_id}]
    assert evaluate_cell(ev, failed, broken.run_id)["status"] == "skipped"
    assert evaluate_cell(ev, [], broken.run_id)["status"] == "skipped"  # its run produced no record at all
    record = evaluate_cell(ev, None, broken.run_id)  # trained "before", but there is no checkpoint
    assert record["status"] == "failed" and "not found" in record["error"] and record["out"] == ev.out

    if not (Path(linear.train.out) / "summary.json").exists():
        train_cell(linear.train)
    with caplog.at_level(logging.INFO, logger="declip.grid"):
        record = evaluate_cell(linear.evals[-1], [{"status": "ok", "run": linear.run_id}], linear.run_id, "my-eval")
    assert record == {"status": "ok", "out": linear.evals[-1].out}
    assert "evaluated my-eval: IoU" in caplog.text


def test_one_failing_evaluation_does_not_stop_the_others(cells):
    """The grid evaluates a training run's cells in one task (every test set, split and view): each evaluation keeps
    its own record naming its cell, in order, and one that fails (a test set the store lacks) neither raises nor
    hides the ones after it; a cell whose training failed is skipped while the others are evaluated."""
    from dataclasses import replace

    linear, broken = cells["linear"], cells["conv-7"]
    if not (Path(linear.train.out) / "summary.json").exists():
        train_cell(linear.train)
    valid, test = linear.evals  # (valid, test) on tint
    missing = replace(test, test_subsets=("no-such-set",), out=test.out + "-missing")
    trained = [{"status": "ok", "run": linear.run_id}, {"status": "failed", "run": broken.run_id}]
    records = evaluate_cells([(linear.run_id, [valid, missing]), (broken.run_id, list(broken.evals)),
                              (linear.run_id, [test])], trained)
    assert [(r["run"], r["status"]) for r in records] == [
        (linear.run_id, "ok"), (linear.run_id, "failed"), (broken.run_id, "skipped"), (broken.run_id, "skipped"),
        (linear.run_id, "ok")]
    assert [r["out"] for r in records] == [valid.out, missing.out, *(ev.out for ev in broken.evals), test.out]
    assert "no-such-set" in records[1]["error"]
    assert all((Path(ev.out) / "tint" / "summary.parquet").exists() for ev in (valid, test))
