"""Run identity: a run's hash changes when, and only when, a field that changes its results changes.

Every field of TrainConfig, EvalConfig and GridConfig is classified here by hand; a new field fails
``test_every_field_is_classified`` until someone decides whether it changes results.
"""
import json
import os
from dataclasses import fields, replace

import pytest

from declip.pipeline.evaluate.evaluation import EvalConfig
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import eval_finished, plan_cells
from declip.pipeline.train.training import TrainConfig

TRAIN_BASE = TrainConfig(store="s.zarr", source="bb@random-0/layer1", dataset="d", train_subsets=("lama",), out="o")
TRAIN_CHANGES = {  # field -> (another value, changes results?)
    "store": ("t.zarr", True), "source": ("bb@random-0/layer2", True), "dataset": ("e", True),
    "train_subsets": (("lama", "ldm"), True), "decoder": ("linear", True), "width": (0.5, True),
    "faithful": (True, True), "mode": ("detection", True), "lr": (1e-4, True), "batch_size": (32, True),
    "max_epochs": (10, True), "patience": (3, True), "min_lr": (1e-7, True), "seed": (1, True),
    "train_split": ("valid", True), "valid_split": ("test", True), "train_views": (("jpeg:75",), True),
    "min_steps_per_epoch": (20, True), "collapse_patience": (5, True), "precision": ("bf16", True),
    "channels_last": (True, False), "compile": (True, False), "device_memory_gb": (1.0, False),
    "out": ("elsewhere", False), "device": ("cuda", False), "memory_gb": (2.0, False), "progress": (False, False),
}

EVAL_BASE = EvalConfig(store="s.zarr", checkpoint="run/best", dataset="d", test_subsets=("lama",), out="o")
EVAL_CHANGES = {
    "store": ("t.zarr", True), "checkpoint": ("run2/best", True), "dataset": ("e", True),
    "test_subsets": (("ldm",), True), "source": ("bb@random-0/layer2", True), "split": ("valid", True),
    "metrics": (("iou",), True), "image_score_rule": ("max_prob", True), "include_reals": (False, True),
    "view": ("jpeg:75", True),
    "out": ("elsewhere", False), "save_maps": (True, False), "batch_size": (8, False), "device": ("cuda", False),
    "memory_gb": (2.0, False),
}

GRID_BASE = dict(store="s.zarr", dataset="d", out="/grid", backbones=["bb@random-0"], layers=["layer1"],
                 decoders=["linear"], train_sets=["lama"], test_sets=["lama"])
TRAINED, EVALUATED, NEITHER = "changes trained cells", "changes evaluations only", "changes no result"
GRID_CHANGES = {
    "store": ("t.zarr", TRAINED), "dataset": ("e", TRAINED), "backbones": (["bb@random-1"], TRAINED),
    "layers": (["layer2"], TRAINED), "decoders": (["conv-4"], TRAINED), "train_sets": (["ldm"], TRAINED),
    "seeds": ([1], TRAINED), "fused": (["bb@random-0/layer1+rn@random-0/layer3"], TRAINED),
    "width": (0.5, TRAINED), "faithful": (True, TRAINED), "mode": ("detection", TRAINED),
    "batch_size": (32, TRAINED), "max_epochs": (10, TRAINED), "patience": (3, TRAINED), "lr": (1e-4, TRAINED),
    "test_sets": (["ldm"], EVALUATED), "metrics": (["iou"], EVALUATED),
    "extra_sources": (["srm@fixed/layer0"], TRAINED), "min_steps_per_epoch": (20, TRAINED),
    "collapse_patience": (5, TRAINED), "eval_splits": (["test"], EVALUATED), "progress": (False, NEITHER),
    # a layer holds one storage dtype (mixing is refused), so it cannot silently change what a cell read
    "storage_dtype": ("int8", NEITHER), "max_store_gb": (10.0, NEITHER), "keep_features": (True, NEITHER),
    "precision": ("bf16", TRAINED), "device_memory_gb": (1.0, NEITHER), "compile": (True, NEITHER),
    "out": ("/elsewhere", NEITHER), "manifest": ("m.parquet", NEITHER), "extract_batch_size": (8, NEITHER),
    "device": ("cuda", NEITHER), "task_runner": ("dask", NEITHER), "max_workers": (3, NEITHER),
    "dask_address": ("tcp://h:8786", NEITHER), "baselines": (False, NEITHER), "save_maps": (2, NEITHER),
    "train_views": (["jpeg:75"], TRAINED), "augment_copies": (2, TRAINED), "test_views": (["jpeg:75"], EVALUATED),
    "augment": ("blur", NEITHER),  # only read when augment_copies > 0: see test_grid_augment_kind_changes_cells
}


@pytest.mark.parametrize("cls,changes", [(TrainConfig, TRAIN_CHANGES), (EvalConfig, EVAL_CHANGES),
                                         (GridConfig, GRID_CHANGES)])
def test_every_field_is_classified(cls, changes):
    assert {f.name for f in fields(cls)} == set(changes)


@pytest.mark.parametrize("name", sorted(TRAIN_CHANGES))
def test_train_identity_changes_exactly_with_results(name):
    value, changes = TRAIN_CHANGES[name]
    other = replace(TRAIN_BASE, **{name: value})
    assert (other.identity() != TRAIN_BASE.identity()) is changes, name


def test_train_identity_is_stable_and_not_the_python_hash():
    again = TrainConfig(**json.loads(json.dumps(TRAIN_BASE.to_json())) | {"train_subsets": ("lama",)})
    assert again.identity() == TRAIN_BASE.identity() and len(TRAIN_BASE.identity()) == 16


@pytest.mark.parametrize("name", sorted(EVAL_CHANGES))
def test_eval_identity_changes_exactly_with_results(name):
    value, changes = EVAL_CHANGES[name]
    other = replace(EVAL_BASE, **{name: value})
    assert (other.identity() != EVAL_BASE.identity()) is changes, name


def _plan(raw: dict) -> tuple[set, set]:
    """(run ids, evaluation identities) of a grid; checkpoints taken relative to the grid (a moved grid is the same)."""
    g = GridConfig.from_dict(raw)
    cells = plan_cells(g)
    evals = {replace(ev, checkpoint=os.path.relpath(ev.checkpoint, g.out)).identity() for c in cells for ev in c.evals}
    return {c.run_id for c in cells}, evals


@pytest.mark.parametrize("name", sorted(GRID_CHANGES))
def test_grid_cells_change_exactly_with_results(name):
    value, effect = GRID_CHANGES[name]
    base = dict(GRID_BASE, manifest="m.parquet") if name == "max_store_gb" else GRID_BASE  # a budget needs one
    runs, evals = _plan(base)
    runs2, evals2 = _plan(dict(base, **{name: value}))
    assert (runs2 != runs) is (effect == TRAINED), name
    assert (evals2 != evals) is (effect != NEITHER), name


def test_grid_augment_kind_changes_cells():
    base = dict(GRID_BASE, augment_copies=2)
    runs, evals = _plan(base)
    runs2, evals2 = _plan(dict(base, augment="blur"))
    assert runs2 != runs and evals2 != evals


def test_clean_view_keeps_identities_made_before_views():
    """Runs and evaluations written before views existed keep their directory names and eval.json identities."""
    import hashlib

    from declip.pipeline.train.training import _LATER_OPTIONS

    def without(cfg, names):
        keep = {k: v for k, v in json.loads(json.dumps(cfg.to_json())).items() if k not in cfg.NOT_RESULTS + names}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]

    assert "train_views" in _LATER_OPTIONS
    assert TRAIN_BASE.identity() == without(TRAIN_BASE, _LATER_OPTIONS + ("precision",))
    assert EVAL_BASE.identity() == without(EVAL_BASE, ("view",))


def test_grid_cell_trains_what_the_grid_says():
    g = GridConfig.from_dict(dict(GRID_BASE, width=0.5, faithful=True, mode="detection", lr=1e-4, batch_size=32,
                                  max_epochs=10, patience=3, seeds=[7]))
    (cell,) = plan_cells(g)
    t = cell.train
    assert (t.width, t.faithful, t.mode, t.lr, t.batch_size, t.max_epochs, t.patience, t.seed) == (
        0.5, True, "detection", 1e-4, 32, 10, 3, 7)
    assert cell.run_id == t.identity() and os.path.basename(t.out) == t.identity()


def test_grid_reevaluates_when_the_evaluation_identity_changes(tmp_path):
    from declip.pipeline.evaluate.evaluation import EVAL_RECORD

    g = GridConfig.from_dict(dict(GRID_BASE, out=str(tmp_path), eval_splits=["test"]))
    (ev,) = plan_cells(g)[0].evals
    assert not eval_finished(ev)
    subset_dir = tmp_path / "runs" / plan_cells(g)[0].run_id / "eval" / "lama"
    subset_dir.mkdir(parents=True)
    (subset_dir / "summary.parquet").write_bytes(b"")
    assert not eval_finished(ev)  # a summary without its identity record (e.g. an interrupted write) is redone
    (subset_dir / EVAL_RECORD).write_text(json.dumps({"identity": ev.subset_identity("lama")}))
    assert eval_finished(ev)
    (ev2,) = plan_cells(GridConfig.from_dict(dict(GRID_BASE, out=str(tmp_path), metrics=["iou"],
                                                  eval_splits=["test"])))[0].evals
    assert not eval_finished(ev2)
