"""Flags generated from config fields: every GridConfig key is a ``declip grid`` flag, a flag overrides the grid
file only when typed, lists repeat and split as documented, and the device/width resolution is said before
training starts."""
from __future__ import annotations

import pytest

from declip.cli.app import build_parser, main
from declip.cli.grid import grid_values
from declip.core.configs import leaves
from declip.core.errors import DeclipError
from declip.pipeline.grid.config import GridConfig
from tests.cli.cli_parsers import walk


def _flag(leaf) -> str:
    """The flag a key should have, written out here (not cli.config_flags.flag_of): --key-with-dashes, or its own."""
    return leaf.meta.flag or "--" + leaf.key.replace("_", "-").replace(".", "-")


def _strings(command: str) -> set[str]:
    parser = dict((" ".join(p), sub) for p, sub in walk(build_parser()))[command]
    return {s for a in parser._actions for s in a.option_strings}


def test_every_grid_key_is_a_grid_flag():
    strings = _strings("grid")
    missing = [leaf.key for leaf in leaves(GridConfig)  # [cluster] keys are dotted: cluster.gpus -> --cluster-gpus
               if _flag(leaf) not in strings]
    assert missing == [] and len(leaves(GridConfig)) >= 41


def _grid(argv: list[str]) -> GridConfig:
    raw, source = grid_values(build_parser().parse_args(["grid", *argv]))
    return GridConfig.from_dict(raw, source)


GRID_FILE = """store = "/s.zarr"
dataset = "d"
out = "/g"
backbones = ["b@random-0"]
layers = ["layer1"]
train_sets = ["a"]
test_sets = ["a"]
max_epochs = 7
progress = false
keep_features = true
baselines = false
seeds = [3]
"""


def test_a_flag_overrides_the_file_only_when_typed(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(GRID_FILE)
    cfg = _grid(["--config", str(path)])
    assert (cfg.options.max_epochs, cfg.options.progress, cfg.keep_features, cfg.baselines, cfg.seeds) == (
        7, False, True, False, (3,))
    cfg = _grid(["--config", str(path), "--max-epochs", "9", "--progress", "--no-keep-features", "--seeds", "1,2"])
    assert (cfg.options.max_epochs, cfg.options.progress, cfg.keep_features, cfg.seeds) == (9, True, False, (1, 2))


def test_list_flags_repeat_and_split_except_views():
    cfg = _grid(["--store", "/s", "--dataset", "d", "--out", "/o", "--backbones", "b@random-0", "--layers",
                 "layer1,layer2", "--feature_layer", "layer3", "--train-sets", "a", "--test-sets", "a,b", "--test-view",
                 "jitter:0.3,0.3,0.3,0.3", "--test-view", "jpeg:75", "--train-view", "blur:1", "--seeds", "0",
                 "--seeds", "4", "--extra-sources", "srm@fixed/layer0"])
    assert cfg.layers == ("layer1", "layer2", "layer3") and cfg.test_sets == ("a", "b") and cfg.seeds == (0, 4)
    assert cfg.test_views == ("jitter:0.3,0.3,0.3,0.3", "jpeg:75") and cfg.options.train_views == ("blur:1",)
    assert [str(s) for s in cfg.extra_sources] == ["srm@fixed/layer0"]
    with pytest.raises(DeclipError, match="--seeds takes int values"):
        _grid(["--seeds", "x"])


def test_fully_supervised_and_data_aug_spellings_reach_their_options():
    from declip.cli.train import given_options

    args = build_parser().parse_args(["train", "--store", "s", "--dataset", "d", "--source", "b@random-0/layer1",
                                      "--train-sets", "a", "--out", "o", "--mode", "detection", "--fully_supervised",
                                      "--data_aug", "blur", "--augment-copies", "2"])
    options = given_options(args)
    assert options.mode == "localization" and options.augment == "blur"
    assert options.resolved().train_views == ("augment:blur+copy:0", "augment:blur+copy:1")


def test_the_cpu_width_is_said_before_training_starts(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = main(["train", "--store", str(tmp_path / "none.zarr"), "--dataset", "d", "--source", "b@random-0/layer1",
                 "--train-sets", "a", "--out", str(tmp_path / "o"), "--no-flow"])
    out, err = capsys.readouterr()
    assert code == 2 and "none.zarr" in err  # training never started, yet the deviation was stated
    assert "NOTE: device auto → cpu" in out and "width 0.125, DeCLIP's is 1.0: pass --width 1" in out
    capsys.readouterr()
    main(["train", "--store", str(tmp_path / "none.zarr"), "--dataset", "d", "--source", "b@random-0/layer1",
          "--train-sets", "a", "--out", str(tmp_path / "o"), "--no-flow", "--device", "cpu", "--width", "1"])
    assert "NOTE" not in capsys.readouterr().out  # nothing resolved, nothing to say


def test_grid_help_names_every_key():
    help_text = " ".join(dict((" ".join(p), sub) for p, sub in walk(build_parser()))["grid"].format_help().split())
    for leaf in leaves(GridConfig):
        assert _flag(leaf) in help_text
