"""Writes ``run_identity.json``: run identities, stored config.json text and grid run ids as the code BEFORE issue 18's
TrainOptions wrote them. It must run against that old code, never the current one:

    git archive ad5d602 | tar -x -C /tmp/old/src && ln -s /tmp/old/src /tmp/old/pkg/declip
    PYTHONPATH=/tmp/old/pkg python tests/pipeline/train/golden/make_identity_golden.py

Kept for the record; the JSON it wrote is the fixture (tests/pipeline/train/test_run_identity.py reads it).
"""
import json
import os
import sys
from pathlib import Path

from declip.pipeline.evaluate.evaluation import EvalConfig
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.demo import DemoConfig, grid_config
from declip.pipeline.grid.plan import plan_cells
from declip.pipeline.train.training import TrainConfig

assert "/tmp/" in sys.modules[TrainConfig.__module__].__file__, "run on the OLD code (see the docstring)"

TRAIN = [
    dict(store="s.zarr", source="bb@random-0/layer1", dataset="d", train_subsets=("lama",), out="o"),
    dict(store="/abs/feats.zarr", source="ViT-L-14@openai/layer20", dataset="dolos-celebahq", train_subsets=("lama",),
         out="/abs/run", decoder="conv-20", width=0.125, min_steps_per_epoch=20, collapse_patience=10),
    dict(store="s.zarr", source="bb@random-0/layer2", dataset="d", train_subsets=("lama", "ldm"), out="o",
         decoder="linear", mode="detection", lr=1e-4, batch_size=32, max_epochs=10, patience=3, min_lr=1e-7, seed=3,
         train_split="trainA", valid_split="val"),
    dict(store="s.zarr", source="ViT-L-14@openai/layer20+RN50@openai/layer3", dataset="d", train_subsets=("all",),
         out="o", decoder="attention", faithful=True),
    dict(store="s3://bucket/f.zarr", source="srm@fixed/layer0", dataset="d", train_subsets=("lama",), out="o",
         decoder="conv-4", train_views=("jpeg:75", "augment:all+copy:0"), precision="bf16", device="cuda:1",
         memory_gb=2.0, channels_last=True, compile=True, device_memory_gb=1.5, progress=False),
    dict(store="s.zarr", source="bb@random-0/layer1[jpeg:75]", dataset="d", train_subsets=("lama",), out="o",
         collapse_patience=6, min_steps_per_epoch=0, precision="fp32", train_views=()),
]

EVAL = [
    dict(store="s.zarr", checkpoint="run/best", dataset="d", test_subsets=("lama",), out="o"),
    dict(store="s.zarr", checkpoint="run/best", dataset="d", test_subsets=("lama", "ldm"), out="o",
         source="bb@random-0/layer2", split="valid", metrics=("iou", "ap"), image_score_rule="max_prob",
         include_reals=False, save_maps=True, batch_size=8, device="cuda", memory_gb=2.0, view="jpeg:75"),
]

FIXED = dict(width=1.0, device="cpu", min_steps_per_epoch=0, collapse_patience=0)  # the old grid defaults, spelt out
GRID = [
    dict(FIXED, store="/data/s.zarr", dataset="d", out="/grid", backbones=["bb@random-0"], layers=["layer1"],
         decoders=["linear"], train_sets=["lama"], test_sets=["lama"]),
    dict(FIXED, store="/data/s.zarr", dataset="d", out="/grid", backbones=["bb@random-0", "bb@random-1"],
         layers=["layer1", "layer2"], decoders=["linear", "conv-4"], train_sets=["lama", "ldm"],
         test_sets=["lama", "ldm", "x"], seeds=[0, 1], fused=["bb@random-0/layer1+rn@random-0/layer3"],
         extra_sources=["srm@fixed/layer0"], mode="detection", lr=1e-4, batch_size=16, max_epochs=7, patience=2,
         faithful=True, metrics=["iou", "ap"], eval_splits=["test"], precision="bf16", train_views=["jpeg:75"],
         augment_copies=2, augment="blur", test_views=["jpeg:50", "resize:0.5"], save_maps=1),
    dict(store="/data/s.zarr", dataset="d", out="/grid", backbones=["bb@random-0"], layers=["layer1"],
         decoders=["conv-4"], train_sets=["lama"], test_sets=["lama"], width=0.5, device="cuda",
         min_steps_per_epoch=20, collapse_patience=10),
]


def train_record(kw):
    cfg = TrainConfig(**kw)
    text = json.dumps(dict(cfg.to_json(), identity=cfg.identity()), indent=2)
    return {"input": json.loads(json.dumps(kw)), "identity": cfg.identity(), "config_json": text}


def grid_record(raw):
    g = GridConfig.from_dict(raw)
    cells = plan_cells(g)
    return {"input": raw, "runs": [c.run_id for c in cells],
            "config_json": [json.dumps(dict(c.train.to_json(), identity=c.run_id), indent=2) for c in cells[:3]],
            "evals": [[ev.identity() for ev in c.evals] for c in cells]}


demo = DemoConfig(out="/demo")
golden = {
    "made_by": "tests/pipeline/train/golden/make_identity_golden.py on commit ad5d602 (before TrainOptions)",
    "train": [train_record(kw) for kw in TRAIN],
    "eval": [{"input": json.loads(json.dumps(kw)), "identity": EvalConfig(**kw).identity(),
              "to_json": json.loads(json.dumps(EvalConfig(**kw).to_json()))} for kw in EVAL],
    "grid": [grid_record(raw) for raw in GRID],
    "demo": {"out": demo.out, **grid_record(grid_config(demo, "demo-set", ["ns", "telea"], ("layer4", "layer7")))},
}
out = Path(__file__).with_name("run_identity.json")
out.write_text(json.dumps(golden, indent=1) + "\n")
print(f"wrote {out}: {len(golden['train'])} train, {len(golden['grid'])} grid cases")
