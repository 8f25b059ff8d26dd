"""``declip evaluate``'s output: every printed metric on one scale, said (IoU was in percent beside F1/AP/AUC on 0-1);
DeCLIP's ``--output_save_path DIR`` puts the maps in DIR."""
from pathlib import Path

import pandas as pd
import pytest

from declip.cli.evaluate import percent_table
from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate
from declip.pipeline.train.training import train
from tests.fixtures import TINY_DATASET, train_config


def test_every_printed_metric_is_in_percent_and_says_so():
    wide = pd.DataFrame({"iou": [12.5], "f1_fixed": [0.3], "ap": [0.456], "image_auc": [0.5], "pixel_auc": [0.9]},
                        index=pd.Index(["tint"], name="test_set"))
    lines = percent_table(wide).splitlines()
    assert lines[0].startswith("metrics in % ")
    row = lines[-1].split()
    assert row == ["tint", "12.5", "30.0", "45.6", "50.0"]  # iou, f1_fixed, ap, image_auc; pixel_auc not shown


def test_maps_go_to_the_folder_given(tiny_store, tmp_path):
    run = tmp_path / "run"
    train(train_config(tiny_store, run, batch_size=8, max_epochs=1))
    cfg = EvalConfig(store=str(tiny_store), checkpoint=str(run / "best"), dataset=TINY_DATASET,
                     test_subsets=("tint",), out=str(tmp_path / "res"), save_maps=True, maps_dir=str(tmp_path / "m"))
    evaluate(cfg)
    maps = sorted((tmp_path / "m" / "tint").glob("*.png"))
    assert len(maps) == 4 + 2  # the tiny test split: 4 tint fakes and 2 reals, one map each
    assert not (tmp_path / "res" / "tint" / "maps").exists()
    assert cfg.identity() == EvalConfig(**{**cfg.__dict__, "maps_dir": None}).identity()  # where maps go: no result
