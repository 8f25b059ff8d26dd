"""The grid trains cells that share their backbone (every decoder and layer of it), train set and seed as one
multi-head run, with the results of separate runs; interrupted cells and failing cells stay on their own."""
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from tests.fixtures import TINY_BACKBONE, grid_json
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import evaluation_groups, plan_cells, training_groups


def _grid(store, out, **kw):
    return GridConfig.from_dict(grid_json(store, out, **{
        "layers": ["layer1"], "decoders": ["linear", "attention", "conv-4"], "max_epochs": 4, "patience": 1,
        "width": 0.25, **kw}))


def test_groups_share_backbone_train_set_and_seed(tmp_path):
    g = _grid("s", tmp_path, backbones=(TINY_BACKBONE, "test-rn-tiny@random-0"), layers=("layer1", "layer2"),
              train_sets=("tint", "bright"), seeds=(0, 1))
    cells = plan_cells(g)
    groups = training_groups(cells)
    assert len(cells) == 2 * 2 * 3 * 2 * 2 and len(groups) == 2 * 2 * 2
    for group in groups:
        assert sorted((c.train.source.layer, c.train.decoder) for c in group) == \
            [(layer, d) for layer in ("layer1", "layer2") for d in ("attention", "conv-4", "linear")]
        assert len({(str(c.train.source.backbone), c.train.train_sets, c.train.seed) for c in group}) == 1
    done, resuming = groups[0][0], groups[1][0]
    Path(done.train.out).mkdir(parents=True)
    (Path(done.train.out) / "summary.json").write_text("{}")
    Path(resuming.train.out).mkdir(parents=True)
    (Path(resuming.train.out) / "state.pt").write_bytes(b"")
    regrouped = training_groups(cells)
    assert all(done not in group for group in regrouped)
    assert [resuming] in regrouped and len(regrouped) == len(groups) + 1
    assert sum(len(group) for group in regrouped) == len(cells) - 1


def test_evaluations_run_one_task_per_training_run_and_one_per_earlier_cell_missing_some(tmp_path):
    """A training run's cells are evaluated in one task (all their test sets and splits: they train anew); a cell
    that trained before gets a task only for the evaluations it lacks (a test set added since); a finished cell none."""
    cells = plan_cells(_grid("s", tmp_path, layers=("layer0", "layer1"), decoders=("linear",),
                             test_sets=("tint", "bright")))
    assert len(cells) == 2 and all(len(c.evals) == 2 * 2 for c in cells)  # (valid, test) × (tint, bright)
    before, finished = cells
    for ev in finished.evals + before.evals[:3]:  # evaluated in an earlier run, except before's last evaluation
        (Path(ev.out) / ev.test_subsets[0]).mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"x": [1]}).to_parquet(Path(ev.out) / ev.test_subsets[0] / "summary.parquet")
        (Path(ev.out) / ev.test_subsets[0] / "eval.json").write_text(
            json.dumps({"identity": ev.subset_identity(ev.test_subsets[0])}))
    # neither has a finished training (its checkpoint is gone): both train anew, so every evaluation runs again
    fresh = evaluation_groups(cells, training_groups(cells))
    assert [[(c.run_id, evals) for c, evals in task] for task in fresh] == [[(c.run_id, list(c.evals)) for c in cells]]
    for cell in cells:  # both trained
        Path(cell.train.out).mkdir(parents=True, exist_ok=True)
        (Path(cell.train.out) / "summary.json").write_text("{}")
    assert training_groups(cells) == []
    assert evaluation_groups(cells, []) == [[(before, [before.evals[3]])]]


def test_groups_are_split_for_parallel_workers(tmp_path):
    cells = plan_cells(_grid("s", tmp_path, layers=("layer0", "layer1", "layer2")))
    assert [len(g) for g in training_groups(cells)] == [9]
    split = training_groups(cells, parallel=4)
    assert len(split) == 4 and sorted(c.run_id for g in split for c in g) == sorted(c.run_id for c in cells)
    assert sorted(map(len, split)) == [2, 2, 2, 3]
    assert len(training_groups(cells[:2], parallel=8)) == 2  # never more runs than cells


def _state(run):
    return torch.load(Path(run) / "best" / "decoder.pt", weights_only=True)["state_dict"]


def test_grouped_cells_equal_separate_runs(tiny_store, tmp_path):
    from declip.pipeline.grid.cells import train_cells
    from declip.pipeline.train.training import train

    grid = _grid(tiny_store, tmp_path / "grid", layers=("layer1", "layer2"), decoders=("linear", "attention"),
                 width=0.125)
    groups = training_groups(plan_cells(grid))
    assert len(groups) == 1 and len(groups[0]) == 4
    # heads that stop at different epochs: the run goes on for the others, which must not change anything
    cfgs = [c.train.with_options(max_epochs=n) for c, n in zip(groups[0], (3, 1, 2, 1))]
    records = train_cells(cfgs)
    assert [r["status"] for r in records] == ["ok"] * 4 and [r["epochs"] for r in records] == [3, 1, 2, 1]
    for cfg, record in zip(cfgs, records):
        alone = train(replace(cfg, out=str(tmp_path / "alone" / f"{cfg.source.layer}-{cfg.decoder}")))
        assert {k: alone[k] for k in ("best_epoch", "best_val", "epochs", "final_lr")} == \
            {k: record[k] for k in ("best_epoch", "best_val", "epochs", "final_lr")}
        together_state, alone_state = _state(cfg.out), _state(alone["out"])
        assert together_state.keys() == alone_state.keys()
        for k in together_state:
            torch.testing.assert_close(together_state[k], alone_state[k], rtol=0, atol=0)
        drop = ["seconds"]
        pd.testing.assert_frame_equal(pd.read_csv(Path(cfg.out) / "epochs.csv").drop(columns=drop),
                                      pd.read_csv(Path(alone["out"]) / "epochs.csv").drop(columns=drop))


def test_a_failing_cell_does_not_take_its_group_down(tiny_store, tmp_path):
    from declip.pipeline.grid.cells import train_cells

    groups = training_groups(plan_cells(_grid(tiny_store, tmp_path, decoders=("linear", "conv-7"), max_epochs=1)))
    records = train_cells([c.train for c in groups[0]])
    assert [r["status"] for r in records] == ["ok", "failed"] and "conv-7" in records[1]["error"]
    failed = json.loads((Path(groups[0][1].train.out) / "failed.json").read_text())
    assert failed["status"] == "failed" and not (Path(groups[0][0].train.out) / "failed.json").exists()
