"""Run identity: a run's hash changes when, and only when, a field that changes its results changes; and runs,
config.json files and grid cells written before TrainOptions keep their identities byte for byte.

Every key of TrainConfig, EvalConfig and GridConfig is classified here by hand; a new field fails
``test_every_field_is_classified`` until someone decides whether it changes results. The byte-identity oracle is
``golden/run_identity.json``, written once by the code before TrainOptions (``golden/make_identity_golden.py``).
"""
import hashlib
import json
import os
from dataclasses import fields, replace
from pathlib import Path

import pytest

from declip.core.configs import leaves
from declip.pipeline.evaluate.evaluation import EvalConfig
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.demo import DEMO_TRAINING, DemoConfig, grid_config
from declip.pipeline.grid.plan import eval_finished, plan_cells
from declip.pipeline.train.config import TrainConfig

GOLDEN = json.loads((Path(__file__).parent / "golden" / "run_identity.json").read_text())

#: A run with every machine-dependent default pinned (device, and the width that follows it).
TRAIN_FLAT = dict(store="s.zarr", source="bb@random-0/layer1", dataset="d", train_subsets=["lama"], out="o",
                  width=1.0, device="cpu")
TRAIN_BASE = TrainConfig.from_json(TRAIN_FLAT)
TRAIN_CHANGES = {  # key -> (another value, changes results?)
    "store": ("t.zarr", True), "source": ("bb@random-0/layer2", True), "dataset": ("e", True),
    "train_subsets": (["lama", "ldm"], True), "decoder": ("linear", True), "width": (0.5, True),
    "faithful": (True, True), "mode": ("detection", True), "lr": (1e-4, True), "batch_size": (32, True),
    "max_epochs": (10, True), "patience": (3, True), "min_lr": (1e-7, True), "seed": (1, True),
    "train_split": ("valid", True), "valid_split": ("test", True), "train_views": (["jpeg:75"], True),
    "min_steps_per_epoch": (0, True), "collapse_patience": (0, True), "precision": ("bf16", True),
    "augment_copies": (2, True), "augment": ("blur", False),  # the kind matters only with copies (below)
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
    "memory_gb": (2.0, False), "maps_dir": ("maps", False),
}

GRID_BASE = dict(store="/data/s.zarr", dataset="d", out="/grid", backbones=["bb@random-0"], layers=["layer1"],
                 decoders=["linear"], train_sets=["lama"], test_sets=["lama"], width=1.0, device="cpu")
TRAINED, EVALUATED, NEITHER = "changes trained cells", "changes evaluations only", "changes no result"
GRID_CHANGES = {
    "store": ("t.zarr", TRAINED), "dataset": ("e", TRAINED), "backbones": (["bb@random-1"], TRAINED),
    "layers": (["layer2"], TRAINED), "decoders": (["conv-4"], TRAINED), "train_sets": (["ldm"], TRAINED),
    "seeds": ([1], TRAINED), "fused": (["bb@random-0/layer1+rn@random-0/layer3"], TRAINED),
    "width": (0.5, TRAINED), "faithful": (True, TRAINED), "mode": ("detection", TRAINED),
    "batch_size": (32, TRAINED), "max_epochs": (10, TRAINED), "patience": (3, TRAINED), "lr": (1e-4, TRAINED),
    "min_lr": (1e-7, TRAINED), "train_split": ("trainB", TRAINED), "valid_split": ("validB", TRAINED),
    "test_sets": (["ldm"], EVALUATED), "metrics": (["iou"], EVALUATED),
    "extra_sources": (["srm@fixed/layer0"], TRAINED), "min_steps_per_epoch": (0, TRAINED),
    "collapse_patience": (0, TRAINED), "eval_splits": (["test"], EVALUATED), "progress": (False, NEITHER),
    # a layer holds one storage dtype (mixing is refused), so it cannot silently change what a cell read
    "storage_dtype": ("int8", NEITHER), "max_store_gb": (10.0, NEITHER), "keep_features": (True, NEITHER),
    "precision": ("bf16", TRAINED), "device_memory_gb": (1.0, NEITHER), "compile": (True, NEITHER),
    "channels_last": (True, NEITHER), "memory_gb": (2.0, NEITHER),
    "out": ("/elsewhere", NEITHER), "manifest": ("m.parquet", NEITHER), "extract_batch_size": (8, NEITHER),
    "device": ("cuda", NEITHER), "task_runner": ("dask", NEITHER), "max_workers": (3, NEITHER),
    "dask_address": ("tcp://h:8786", NEITHER), "baselines": (False, NEITHER), "save_maps": (2, NEITHER),
    "train_views": (["jpeg:75"], TRAINED), "augment_copies": (2, TRAINED), "test_views": (["jpeg:75"], EVALUATED),
    "augment": ("blur", NEITHER),  # only read when augment_copies > 0: see test_grid_augment_kind_changes_cells
    # where the work runs: a sharded extraction is byte-identical to one task's, SLURM jobs change no result
    "extract_shards": (3, NEITHER), "cluster.partition": ("gpu", NEITHER), "cluster.cores": (8, NEITHER),
    "cluster.memory": ("64GB", NEITHER), "cluster.walltime": ("10:00:00", NEITHER), "cluster.jobs": (4, NEITHER),
    "cluster.min_jobs": (1, NEITHER), "cluster.max_jobs": (9, NEITHER), "cluster.job_directives": (["-A x"], NEITHER),
    "cluster.prologue": (["module load cuda"], NEITHER), "cluster.python": ("/p/python", NEITHER),
    "cluster.interface": ("ib0", NEITHER), "cluster.log_directory": ("/logs", NEITHER),
    "cluster.job_name": ("w", NEITHER),
    # with device = "cpu" pinned (as here) GPUs per job change nothing; with device = "auto" they set the width
    "cluster.gpus": (2, NEITHER),
}


@pytest.mark.parametrize("keys,changes", [({leaf.key for leaf in leaves(TrainConfig)}, TRAIN_CHANGES),
                                          ({f.name for f in fields(EvalConfig)}, EVAL_CHANGES),
                                          ({leaf.key for leaf in leaves(GridConfig)}, GRID_CHANGES)],
                         ids=["train", "eval", "grid"])
def test_every_field_is_classified(keys, changes):
    assert keys == set(changes)


@pytest.mark.parametrize("name", sorted(TRAIN_CHANGES))
def test_train_identity_changes_exactly_with_results(name):
    value, changes = TRAIN_CHANGES[name]
    other = TrainConfig.from_json({**TRAIN_FLAT, name: value})
    assert (other.identity() != TRAIN_BASE.identity()) is changes, name


def test_train_identity_is_stable_and_not_the_python_hash():
    again = TrainConfig.from_json(json.loads(json.dumps(TRAIN_BASE.to_json())))
    assert again == TRAIN_BASE and again.identity() == TRAIN_BASE.identity() and len(TRAIN_BASE.identity()) == 16


def test_the_augment_kind_changes_the_identity_only_with_copies():
    copies = TrainConfig.from_json({**TRAIN_FLAT, "augment_copies": 2})
    assert TrainConfig.from_json({**TRAIN_FLAT, "augment_copies": 2, "augment": "blur"}).identity() != copies.identity()
    # the shorthand is folded into train_views: the same run as listing the copies, and it is never stored
    listed = TrainConfig.from_json({**TRAIN_FLAT, "train_views": ["augment:all+copy:0", "augment:all+copy:1"]})
    assert copies.identity() == listed.identity() and "augment_copies" not in copies.to_json()


def test_an_unset_width_follows_the_device(monkeypatch):
    import torch

    unset = {k: v for k, v in TRAIN_FLAT.items() if k not in ("width", "device")}
    assert TrainConfig.from_json({**unset, "device": "cpu"}).options.width == 0.125
    assert TrainConfig.from_json({**unset, "device": "cuda:1"}).options.width == 1.0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    auto = TrainConfig.from_json(unset)
    assert (auto.options.device, auto.options.width) == ("cuda", 1.0)
    assert auto.to_json()["device"] == "cuda"  # recorded resolved, in config.json
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert TrainConfig.from_json(unset).to_json()["device"] == "cpu"


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


def test_neutral_later_options_leave_the_hash_as_before_they_existed():
    """The hash of a run at the neutral values is the hash of the keys a run had before those options existed."""
    neutral = TrainConfig.from_json({**TRAIN_FLAT, "min_steps_per_epoch": 0, "collapse_patience": 0})
    before = ("store", "source", "dataset", "train_subsets", "decoder", "width", "faithful", "mode", "lr",
              "batch_size", "max_epochs", "patience", "min_lr", "seed", "train_split", "valid_split")
    keep = {k: v for k, v in neutral.to_json().items() if k in before}
    assert neutral.identity() == hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]
    assert EVAL_BASE.identity() == hashlib.sha256(json.dumps(
        {k: v for k, v in json.loads(json.dumps(EVAL_BASE.to_json())).items()
         if k not in ("out", "save_maps", "batch_size", "device", "memory_gb", "view")},
        sort_keys=True).encode()).hexdigest()[:16]


# ---- byte identity with what the code before TrainOptions wrote (golden/run_identity.json) ----------------------

@pytest.mark.parametrize("case", GOLDEN["train"], ids=lambda c: c["identity"])
def test_stored_configs_read_back_byte_identical(case):
    """config.json as written before (flat, old key order): read, it writes the same bytes and the same identity."""
    cfg = TrainConfig.from_json(json.loads(case["config_json"]))
    assert json.dumps(dict(cfg.to_json(), identity=cfg.identity()), indent=2) == case["config_json"]
    assert cfg.identity() == case["identity"]


@pytest.mark.parametrize("case", GOLDEN["train"], ids=lambda c: c["identity"])
def test_the_old_flat_arguments_and_the_nested_form_make_the_same_run(case):
    flat = dict(case["input"])
    pinned = {"width": 1.0, "device": "cpu", "min_steps_per_epoch": 0, "collapse_patience": 0}  # the old defaults
    old_style = TrainConfig.from_json({**pinned, **flat})
    option_keys = {leaf.key for leaf in leaves(TrainConfig) if leaf.path[0] == "options"}
    nested = {k: v for k, v in {**pinned, **flat}.items() if k not in option_keys}
    nested["options"] = {k: v for k, v in {**pinned, **flat}.items() if k in option_keys}
    assert old_style.identity() == TrainConfig.from_json(nested).identity() == case["identity"]


@pytest.mark.parametrize("case", GOLDEN["grid"], ids=lambda c: c["runs"][0])
def test_grid_cells_keep_their_run_ids_and_configs(case):
    cells = plan_cells(GridConfig.from_dict(case["input"]))
    assert [c.run_id for c in cells] == case["runs"]
    assert [json.dumps(dict(c.train.to_json(), identity=c.run_id), indent=2)
            for c in cells[:len(case["config_json"])]] == case["config_json"]
    assert [[ev.identity() for ev in c.evals] for c in cells] == case["evals"]


def test_demo_cells_keep_their_run_ids_on_the_cpu():
    demo = DemoConfig(out=GOLDEN["demo"]["out"], options=replace(DEMO_TRAINING, device="cpu"))
    cells = plan_cells(GridConfig.from_dict(grid_config(demo, "demo-set", ["ns", "telea"], ("layer4", "layer7"))))
    assert [c.run_id for c in cells] == GOLDEN["demo"]["runs"]


@pytest.mark.parametrize("case", GOLDEN["eval"], ids=lambda c: c["identity"])
def test_evaluation_identities_and_json_unchanged(case):
    cfg = EvalConfig.from_json(case["input"])
    assert cfg.identity() == case["identity"] and json.loads(json.dumps(cfg.to_json())) == case["to_json"]


def test_grid_cell_trains_what_the_grid_says():
    g = GridConfig.from_dict(dict(GRID_BASE, width=0.5, faithful=True, mode="detection", lr=1e-4, batch_size=32,
                                  max_epochs=10, patience=3, seeds=[7], min_lr=1e-5, train_split="tr",
                                  valid_split="va", collapse_patience=4, min_steps_per_epoch=5, precision="bf16",
                                  memory_gb=3.0, channels_last=False, compile=True, device_memory_gb=2.0))
    (cell,) = plan_cells(g)
    t = cell.train
    assert t.options == replace(g.options, progress=False)  # every option reaches the cell, not a hand copy
    assert (t.options.width, t.options.faithful, t.options.mode, t.options.lr, t.options.batch_size,
            t.options.max_epochs, t.options.patience, t.seed) == (0.5, True, "detection", 1e-4, 32, 10, 3, 7)
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
