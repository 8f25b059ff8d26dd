"""Readable names: Prefect flow-run names and tags derived from configs, and a grid's runs/index.csv + by-name links."""
import json
import os
import re
from pathlib import Path

import pandas as pd

from declip.pipeline.grid import run_names as rn
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import plan_cells
from declip.pipeline.grid.run_index import write_index

GRID = {"dataset": "dolos-demo", "backbones": ["demo-vit-small@random-0"], "layers": ["layer1", "layer4", "layer7"],
        "decoders": ["linear", "attention", "conv-4"], "fused": []}


def test_flow_run_names_say_what_the_run_does():
    assert rn.grid_run_name(GRID) == "grid-dolos-demo-demo-vit-small-3x3"
    assert rn.extract_run_name({"backbone": "ViT-L-14@openai", "dataset": "dolos-celebahq"}) == \
        "extract-ViT-L-14-dolos-celebahq"
    assert rn.extract_run_name({"backbone": "x", "dataset": "d"},
                               [{"backbone": "ViT-L-14@openai"}, {"backbone": "RN50@openai"}]) == "extract-ViT-L-14+RN50-d"
    one = {"source": "ViT-L-14@openai/layer20", "decoder": "conv-20", "train_subsets": ["lama"], "dataset": "d"}
    assert rn.train_run_name([one]) == "train-conv-20-layer20-lama"
    assert rn.train_run_name([one, dict(one, decoder="linear")]) == "train-2heads-lama"
    assert rn.evaluate_run_name({"checkpoint": "runs/lama-conv20/best", "test_subsets": ["lama", "ldm"]}) == \
        "evaluate-lama-conv20-on-lama+ldm"


def test_names_show_the_architecture_of_any_backbone_text(tmp_path):
    assert rn.arch(f"ViT-L-14-quickgelu@{tmp_path / 'absent.pt'}") == "ViT-L-14-quickgelu"  # no file is read
    assert rn.arch("CLIP:ViT-L/14") == "ViT-L-14"
    assert rn.arch("not a key") == "not a key"  # a name never stops a run


def test_tags_name_backbone_layer_decoder_dataset():
    assert rn.grid_tags(GRID) == [
        "backbone:demo-vit-small@random-0", "layer:layer1", "layer:layer4", "layer:layer7", "decoder:linear",
        "decoder:attention", "decoder:conv-4", "dataset:dolos-demo"]
    fused = {"source": "ViT-L-14@openai/layer20+RN50@openai/layer3", "decoder": "conv-20", "dataset": "d"}
    assert rn.train_tags([fused]) == ["backbone:ViT-L-14@openai", "backbone:RN50@openai", "layer:layer20",
                                      "layer:layer3", "decoder:conv-20", "dataset:d"]


def test_extract_name_reads_the_dataset_from_the_manifest(tiny_manifest):
    assert rn.extract_run_name({"backbone": "B@x", "dataset": None, "manifest": str(tiny_manifest)}) == \
        "extract-B-dolos-celebahq"


def test_slug_is_file_safe_and_bounded():
    assert rn.slug("a/b c:d") == "a_b-c-d"
    assert len(rn.slug("x" * 200, 50)) == 50


def test_index_csv_and_links_name_hash_directories(tmp_path):
    cfg = GridConfig.from_dict({**GRID, "store": str(tmp_path / "s"), "out": str(tmp_path / "g"),
                                "train_sets": ["telea", "ns"], "test_sets": ["telea"]})
    cells = plan_cells(cfg)
    done = Path(cells[0].train.out)
    done.mkdir(parents=True)
    (done / "summary.json").write_text("{}")
    path = write_index(cfg.out, [c.train for c in cells])
    index = pd.read_csv(path, dtype={"run_id": str})
    assert len(index) == 18 and index["name"].is_unique
    assert list(index["run_id"]) == [c.run_id for c in cells]
    first = index.iloc[0]
    assert first["status"] == "trained" and set(index["status"][1:]) == {"pending"}
    assert first["name"] == f"demo-vit-small_layer1_linear_telea_s0-{cells[0].run_id[:6]}"
    link = Path(cfg.out) / "by-name" / first["name"]
    assert link.is_symlink() and link.resolve() == done.resolve() and os.readlink(link).startswith("..")
    # a re-run with fewer cells keeps the other rows and refreshes the status of the ones it touched
    (Path(cells[1].train.out)).mkdir(parents=True)
    (Path(cells[1].train.out) / "failed.json").write_text("{}")
    write_index(cfg.out, [cells[1].train])
    again = pd.read_csv(path, dtype={"run_id": str})
    assert len(again) == 18 and again.set_index("run_id").loc[cells[1].run_id, "status"] == "failed"


def test_the_grid_name_counts_extra_sources_and_artifact_keys_differ_by_grid():
    """Issue 19 item 9: the grid run name ignored extra sources; two grids published under one artifact key."""
    with_srm = {**GRID, "extra_sources": ["srm@fixed/layer0"]}
    assert rn.grid_run_name(with_srm) == "grid-dolos-demo-demo-vit-small-3x3+srm"
    assert rn.grid_run_name({**GRID, "backbones": [], "layers": [], "extra_sources": ["srm@fixed/layer0"]}) == \
        "grid-dolos-demo-srm-1x3"
    assert "backbone:srm@fixed" in rn.grid_tags(with_srm)
    a, b = rn.grid_artifact_key({**GRID, "out": "/runs/a"}), rn.grid_artifact_key({**GRID, "out": "/runs/b"})
    assert a != b and a == rn.grid_artifact_key({**GRID, "out": "/runs/a"})
    assert re.fullmatch(r"[a-z0-9-]+", a) and a.startswith("grid-iou-dolos-demo-")  # Prefect's alphabet for keys


def test_evaluate_runs_are_tagged_with_the_checkpoints_source_and_decoder(tmp_path):
    ckpt = tmp_path / "best"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"name": "conv-20", "source": "ViT-L-14@openai/layer20"}))
    cfg = {"checkpoint": str(ckpt), "dataset": "d", "source": None, "test_subsets": ["lama"]}
    assert rn.evaluate_tags(cfg) == ["backbone:ViT-L-14@openai", "layer:layer20", "decoder:conv-20", "dataset:d"]
    assert rn.evaluate_tags({**cfg, "source": "RN50@openai/layer3"})[:2] == ["backbone:RN50@openai", "layer:layer3"]
    assert rn.evaluate_tags({**cfg, "checkpoint": str(tmp_path / "absent")}) == ["dataset:d"]  # names never fail
