"""DeCLIP's recipe is pinned to the method description, and every default reads it from one place.

The numbers are parsed from the quoted text of declip-method.md §5.3–5.4 (kept here verbatim so the suite runs
without the spec); when the spec is on disk, the quote is also checked against it.
"""
import re
from dataclasses import fields
from pathlib import Path

import pytest

from declip.cli.app import build_parser
from declip.cli.train import build_configs
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.train.recipe import RECIPE
from declip.pipeline.train.schedule import PlateauSchedule
from declip.pipeline.train.training import TrainConfig

SPEC = Path("/work/shared/declip-method.md")
QUOTED = {
    "optimiser": "- Optimiser (`--optim adam`, the default): **AdamW**, lr **1e-3**, betas (0.9, 0.999) with beta1 from",
    "weight_decay": "`--beta1`, weight_decay **0.0** (so it is effectively Adam).",
    "batch": "- Batch size **64**. 4 data-loader workers. Single GPU (`--gpu_ids 0`).",
    "niter": "1. Run at most `--niter` = 400 epochs.",
    "patience": "   - Patience `--earlystop_epoch` = 5 epochs.",
    "first_margin": "   - An epoch counts as an improvement only if IoU ≥ best + 0.001. IoU is in percent.",
    "later_margin": "restarted counter uses a margin of 0.002, and its first epoch becomes the new reference.",
    "factor": "   - After 5 epochs without improvement, divide lr by 10 and restart the early-stopping counter. The",
    "min_lr": "   - Stop once the divided lr falls below 1e-6.",
    "targets": "`Resize((256,256))` (bilinear, antialiased) and ToTensor, giving values in [0,1], flattened to 65,536.",
}


def _number(key: str, pattern: str) -> float:
    match = re.search(pattern, QUOTED[key])
    assert match, (key, pattern)
    return float(match.group(1))


def test_quotes_are_verbatim_in_the_method_description():
    if not SPEC.exists():
        pytest.skip(f"{SPEC} not on this machine (the quotes above carry the numbers)")
    text = SPEC.read_text()
    for key, line in QUOTED.items():
        assert line in text, key


def test_recipe_numbers_match_the_method_description():
    assert RECIPE.lr == _number("optimiser", r"lr \*\*([0-9.e-]+)\*\*")
    assert RECIPE.betas == tuple(float(x) for x in re.search(r"betas \(([^)]*)\)", QUOTED["optimiser"])
                                 .group(1).split(","))
    assert RECIPE.weight_decay == _number("weight_decay", r"weight_decay \*\*([0-9.]+)\*\*")
    assert RECIPE.batch_size == _number("batch", r"Batch size \*\*(\d+)\*\*")
    assert RECIPE.max_epochs == _number("niter", r"= (\d+) epochs")
    assert RECIPE.patience == _number("patience", r"= (\d+) epochs")
    assert RECIPE.first_margin == _number("first_margin", r"best \+ ([0-9.]+)\.")
    assert RECIPE.later_margin == _number("later_margin", r"margin of ([0-9.]+),")
    assert RECIPE.lr_factor == 1 / _number("factor", r"divide lr by (\d+)")
    assert RECIPE.min_lr == _number("min_lr", r"below ([0-9.e-]+)\.")
    assert RECIPE.target_size == _number("targets", r"Resize\(\((\d+),")


def _defaults(cls) -> dict:
    return {f.name: f.default for f in fields(cls)}


def test_train_config_schedule_and_grid_defaults_are_the_recipe():
    train = _defaults(TrainConfig)
    assert (train["lr"], train["batch_size"], train["max_epochs"], train["patience"], train["min_lr"]) == (
        RECIPE.lr, RECIPE.batch_size, RECIPE.max_epochs, RECIPE.patience, RECIPE.min_lr)
    s = PlateauSchedule()
    assert (s.lr, s.patience, s.first_delta, s.later_delta, s.factor, s.min_lr, s.max_epochs) == (
        RECIPE.lr, RECIPE.patience, RECIPE.first_margin, RECIPE.later_margin, RECIPE.lr_factor, RECIPE.min_lr,
        RECIPE.max_epochs)
    grid = _defaults(GridConfig)
    assert (grid["lr"], grid["batch_size"], grid["max_epochs"], grid["patience"]) == (
        RECIPE.lr, RECIPE.batch_size, RECIPE.max_epochs, RECIPE.patience)


def test_cli_defaults_are_the_recipe():
    args = build_parser().parse_args(["train", "--store", "s.zarr", "--dataset", "d", "--source", "bb@random-0/layer1",
                                      "--train", "lama", "--out", "o", "--device", "cuda"])
    (cfg,) = build_configs(args)
    assert (cfg["lr"], cfg["batch_size"], cfg["max_epochs"], cfg["patience"], cfg["min_lr"]) == (
        RECIPE.lr, RECIPE.batch_size, RECIPE.max_epochs, RECIPE.patience, RECIPE.min_lr)
    assert cfg["mode"] == "localization" and cfg["decoder"] == "conv-20" and cfg["width"] == 1.0
    # the one stated CPU deviation: decoders are 1/8 wide on the CPU unless --width says otherwise
    (cpu,) = build_configs(build_parser().parse_args(["train", "--store", "s.zarr", "--dataset", "d", "--source",
                                                      "bb@random-0/layer1", "--train", "lama", "--out", "o"]))
    assert cpu["width"] == 0.125 and cpu["lr"] == RECIPE.lr
    assert cfg["faithful"] is False


def test_grid_cells_train_with_the_recipe():
    from declip.pipeline.grid.plan import plan_cells

    g = GridConfig.from_dict({"store": "s.zarr", "dataset": "d", "out": "o", "backbones": ["bb@random-0"],
                              "layers": ["layer1"], "decoders": ["linear"], "train_sets": ["a"], "test_sets": ["a"]})
    (cell,) = plan_cells(g)
    t = cell.train
    assert (t.lr, t.batch_size, t.max_epochs, t.patience, t.min_lr) == (
        RECIPE.lr, RECIPE.batch_size, RECIPE.max_epochs, RECIPE.patience, RECIPE.min_lr)
