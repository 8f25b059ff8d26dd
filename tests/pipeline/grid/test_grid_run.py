"""A grid run's bookkeeping, without Prefect: grid.json before any work, the summary the CLI prints (counts and
failures from the cell records), and the IoU table the Prefect UI shows. Expected values by hand."""
import json
from pathlib import Path

import pandas as pd

from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.grid_run import GridOutcome, iou_markdown, start_grid


def test_start_writes_grid_json_and_plans_every_cell(tmp_path):
    g = GridConfig.from_dict(dict(store=str(tmp_path / "s.zarr"), dataset="d", out=str(tmp_path / "g"),
                                  backbones=["b@random-0"], layers=["layer0", "layer3"], decoders=["linear"],
                                  train_sets=["a", "b"], test_sets=["a"]))
    cells = start_grid(g)
    assert json.loads((tmp_path / "g" / "grid.json").read_text()) == g.to_json()
    assert len(cells) == 2 * 2 and not (tmp_path / "g" / "runs").exists()  # run directories come with training


def test_outcome_counts_and_failures():
    outcome = GridOutcome(cells=5, groups=2)
    outcome.extracted.append({"backbone": "b", "dataset": "d", "blocks_run": 3, "images_encoded": 40, "rows": 60})
    outcome.add_cells([{"status": "ok", "run": "r1"}, {"status": "failed", "run": "r2", "error": "E: x"}],
                      [{"status": "ok", "out": "o1"}, {"status": "skipped", "out": "o2"},
                       {"status": "failed", "out": "o3", "error": "F: y"}], skipped=2, runs=1)
    outcome.add_cells([{"status": "ok", "run": "r3"}], [{"status": "ok", "out": "o4"}], skipped=0, runs=1)
    outcome.skipped += 1
    outcome.evicted.append("b/layer0")
    summary = outcome.as_dict(Path("/g/results.parquet"), 17)
    where = summary.pop("where")
    assert summary == {
        "cells": 5, "trained": 2, "training_runs": 2, "skipped_cells": 3, "evaluated": 2, "groups": 2,
        "evicted": ["b/layer0"],
        "failed": [{"run": "r2", "out": None, "error": "E: x"}, {"run": None, "out": "o3", "error": "F: y"}],
        "extracted": [{"backbone": "b", "dataset": "d", "blocks_run": 3, "images_encoded": 40}],
        "results": "/g/results.parquet", "rows": 17}
    assert outcome.done_line(Path("r.parquet")) == "grid done: 2 trained, 2 evaluations, 2 failed; results in r.parquet"
    # one placement row per training record and evaluation (none recorded where: those records carry no "where")
    assert [(w["task"], w["what"]) for w in where] == [("train", "r1"), ("train", "r2"), ("train", "r3"),
                                                       ("evaluate", "o1"), ("evaluate", "o2"), ("evaluate", "o3"),
                                                       ("evaluate", "o4")]


def test_outcome_says_where_each_task_ran():
    outcome = GridOutcome(cells=1, groups=1)
    host = {"host": "n1", "slurm_job_id": "41", "pid": 7, "device": "cuda:0"}
    shards = [{"blocks": [0, 1], "where": host}, {"blocks": [2, 2], "where": {"host": "n2"}}]
    outcome.extracted.append({"backbone": "b", "dataset": "d", "blocks_run": 3, "images_encoded": 40, "shards": shards})
    outcome.add_cells([{"status": "ok", "run": "r1", "where": dict(host, slurm_job_id="42")}],
                      [{"status": "ok", "out": "o1", "where": {"host": "n2", "slurm_job_id": "43"}}], skipped=0, runs=1)
    where = outcome.as_dict(Path("r.parquet"), 1)["where"]
    assert where == [dict(host, task="extract", what="b blocks 0-1"), {"host": "n2", "task": "extract",
                                                                        "what": "b blocks 2-2"},
                     dict(host, slurm_job_id="42", task="train", what="r1"),
                     {"host": "n2", "slurm_job_id": "43", "task": "evaluate", "what": "o1"}]


def test_iou_markdown_averages_train_sets_and_warns_about_random_weights():
    rows = [dict(metric="iou", split="test", view="clean", decoder="linear", layer="layer1", test_set="a",
                 train_set=t, value=v, random_weights=True) for t, v in (("a", 60.0), ("b", 40.0))]
    rows += [dict(rows[0], split="valid", value=99.0), dict(rows[0], view="jpeg:50", value=1.0),
             dict(rows[0], metric="ap", value=0.5)]
    text = iou_markdown(pd.DataFrame(rows))
    assert text.startswith("**backbone weights are random**")
    line = next(line for line in text.splitlines() if "linear" in line)
    assert line.replace(" ", "").endswith("|50|")  # (60 + 40) / 2 on clean test IoU only
    assert iou_markdown(pd.DataFrame(rows[2:3])) is None  # no clean test IoU: no artifact
