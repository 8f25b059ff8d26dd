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
from declip.pipeline.train.options import TrainOptions
from declip.pipeline.train.recipe import DECLIP_TRAINING
from declip.pipeline.train.schedule import PlateauSchedule
from declip.pipeline.train.config import TrainConfig

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
    assert DECLIP_TRAINING.lr == _number("optimiser", r"lr \*\*([0-9.e-]+)\*\*")
    assert DECLIP_TRAINING.betas == tuple(float(x) for x in re.search(r"betas \(([^)]*)\)", QUOTED["optimiser"])
                                 .group(1).split(","))
    assert DECLIP_TRAINING.weight_decay == _number("weight_decay", r"weight_decay \*\*([0-9.]+)\*\*")
    assert DECLIP_TRAINING.batch_size == _number("batch", r"Batch size \*\*(\d+)\*\*")
    assert DECLIP_TRAINING.max_epochs == _number("niter", r"= (\d+) epochs")
    assert DECLIP_TRAINING.patience == _number("patience", r"= (\d+) epochs")
    assert DECLIP_TRAINING.first_margin == _number("first_margin", r"best \+ ([0-9.]+)\.")
    assert DECLIP_TRAINING.later_margin == _number("later_margin", r"margin of ([0-9.]+),")
    assert DECLIP_TRAINING.lr_factor == 1 / _number("factor", r"divide lr by (\d+)")
    assert DECLIP_TRAINING.min_lr == _number("min_lr", r"below ([0-9.e-]+)\.")
    assert DECLIP_TRAINING.target_size == _number("targets", r"Resize\(\((\d+),")


def _defaults(cls) -> dict:
    return {f.name: f.default for f in fields(cls)}


def test_options_schedule_grid_and_demo_defaults_are_the_recipe():
    train = _defaults(TrainOptions)
    assert (train["lr"], train["batch_size"], train["max_epochs"], train["patience"], train["min_lr"]) == (
        DECLIP_TRAINING.lr, DECLIP_TRAINING.batch_size, DECLIP_TRAINING.max_epochs, DECLIP_TRAINING.patience,
        DECLIP_TRAINING.min_lr)
    s = PlateauSchedule()
    assert (s.lr, s.patience, s.first_delta, s.later_delta, s.factor, s.min_lr, s.max_epochs) == (
        DECLIP_TRAINING.lr, DECLIP_TRAINING.patience, DECLIP_TRAINING.first_margin, DECLIP_TRAINING.later_margin,
        DECLIP_TRAINING.lr_factor, DECLIP_TRAINING.min_lr, DECLIP_TRAINING.max_epochs)
    grid = GridConfig.from_dict({"store": "s.zarr", "dataset": "d", "out": "o", "backbones": ["b@random-0"],
                                 "layers": ["layer1"], "train_sets": ["a"], "test_sets": ["a"]}).options
    assert (grid.lr, grid.batch_size, grid.max_epochs, grid.patience, grid.min_lr) == (
        DECLIP_TRAINING.lr, DECLIP_TRAINING.batch_size, DECLIP_TRAINING.max_epochs, DECLIP_TRAINING.patience,
        DECLIP_TRAINING.min_lr)
    from declip.pipeline.grid.demo import DEMO_TRAINING

    assert DEMO_TRAINING.lr == DECLIP_TRAINING.lr and DEMO_TRAINING.min_lr == DECLIP_TRAINING.min_lr


def _train_cli(*extra: str) -> TrainConfig:
    args = build_parser().parse_args(["train", "--store", "s.zarr", "--dataset", "d", "--source", "bb@random-0/layer1",
                                      "--train", "lama", "--out", "o", *extra])
    (cfg,) = build_configs(args)
    return cfg


def test_cli_defaults_are_the_recipe():
    cfg = _train_cli("--device", "cuda")
    o = cfg.options
    assert (o.lr, o.batch_size, o.max_epochs, o.patience, o.min_lr) == (
        DECLIP_TRAINING.lr, DECLIP_TRAINING.batch_size, DECLIP_TRAINING.max_epochs, DECLIP_TRAINING.patience,
        DECLIP_TRAINING.min_lr)
    assert o.mode == "localization" and cfg.decoder == "conv-20" and o.width == 1.0
    # the one stated CPU deviation: decoders are 1/8 wide on the CPU unless --width says otherwise
    cpu = _train_cli("--device", "cpu").options
    assert cpu.width == 0.125 and cpu.lr == DECLIP_TRAINING.lr
    assert o.faithful is False


def test_cli_passes_declip_recipe_flags_through():
    o = _train_cli("--earlystop_epoch", "7", "--niter", "9", "--batch_size", "16", "--lr", "0.002",
                   "--min-lr", "1e-5").options
    assert (o.patience, o.max_epochs, o.batch_size, o.lr, o.min_lr) == (7, 9, 16, 0.002, 1e-5)


def test_grid_cells_train_with_the_recipe():
    from declip.pipeline.grid.plan import plan_cells

    g = GridConfig.from_dict({"store": "s.zarr", "dataset": "d", "out": "o", "backbones": ["bb@random-0"],
                              "layers": ["layer1"], "decoders": ["linear"], "train_sets": ["a"], "test_sets": ["a"]})
    (cell,) = plan_cells(g)
    t = cell.train.options
    assert (t.lr, t.batch_size, t.max_epochs, t.patience, t.min_lr) == (
        DECLIP_TRAINING.lr, DECLIP_TRAINING.batch_size, DECLIP_TRAINING.max_epochs, DECLIP_TRAINING.patience,
        DECLIP_TRAINING.min_lr)
