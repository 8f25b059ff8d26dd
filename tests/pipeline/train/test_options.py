"""Adding a training option is one field: every TrainOptions field is a flag of ``train``, ``grid`` and ``demo``, a
grid TOML key, a line of the example config, and classified for the run identity; a value typed for it reaches the
run. A field added without a classification fails here."""
from __future__ import annotations

import re
from dataclasses import MISSING, fields, make_dataclass

import pytest

from declip.cli.app import build_parser
from declip.cli.config_flags import add_config_flags
from declip.core.config_toml import annotated_toml
from declip.core.configs import UNSET, meta, option
from declip.core.validation import whole
from declip.pipeline.grid.config import GridConfig, example_config
from declip.pipeline.train.options import IDENTITY_KINDS, LATER, TrainOptions
from tests.cli.cli_parsers import walk

NAMES = [f.name for f in fields(TrainOptions)]
COMMANDS = {" ".join(path): parser for path, parser in walk(build_parser())}
GRID_REQUIRED = dict(store="/s.zarr", dataset="d", out="/o", backbones=["b@random-0"], layers=["layer1"],
                     train_sets=["a"], test_sets=["a"])


def classification_problems(cls: type) -> list[str]:
    """What is missing for ``cls``'s fields to enter run identities knowingly (the rule a new option must pass)."""
    out = []
    for f in fields(cls):
        m = meta(f)
        if m is None or m.identity not in IDENTITY_KINDS:
            out.append(f"{f.name}: no identity kind (one of {IDENTITY_KINDS})")
        elif m.identity == LATER and m.neutral is UNSET:
            out.append(f"{f.name}: a 'later' option needs the neutral value runs had before it existed")
        if m is None or len(m.help) < 15:
            out.append(f"{f.name}: no help text")
    return out


def test_every_option_is_classified_and_documented():
    assert classification_problems(TrainOptions) == []


def test_an_option_added_without_a_classification_fails():
    added = make_dataclass("Added", [("warmup", int, option(0, help="warmup epochs before the schedule starts"))],
                           bases=(TrainOptions,), frozen=True)
    assert classification_problems(added) == ["warmup: no identity kind (one of ('result', 'later', 'not-result', "
                                              "'shorthand'))"]
    later = make_dataclass("Later", [("warmup", int, option(0, help="warmup epochs before the schedule",
                                                            identity=LATER))], bases=(TrainOptions,), frozen=True)
    assert "neutral value" in classification_problems(later)[0]


def _sample(name: str):
    """A valid value for the option that differs from its default (typed as a user would type it)."""
    special = {"device": ("cpu", "cpu"), "train_views": ("jpeg:75", ("jpeg:75",)), "augment": ("blur", "blur"),
               "train_split": ("trainB", "trainB"), "valid_split": ("validB", "validB")}
    if name in special:
        return special[name]
    f = TrainOptions.__dataclass_fields__[name]
    m = meta(f)
    if m.choices:
        value = next(c for c in m.choices if c != f.default)
        return value, value
    if f.type in ("bool", "bool | None"):
        value = not f.default if f.default is not None else True
        return None, value
    if f.type in ("int",):
        return str(f.default + 3), f.default + 3
    return "0.375", 0.375


@pytest.mark.parametrize("name", NAMES)
def test_each_option_is_a_flag_of_train_grid_and_demo_and_a_grid_key(name):
    leaf_flag = meta(TrainOptions.__dataclass_fields__[name]).flag or "--" + name.replace("_", "-")
    typed, value = _sample(name)
    argv = [leaf_flag] if typed is None else [leaf_flag, typed]
    if typed is None and value is False:
        argv = ["--no-" + leaf_flag[2:]]
    from declip.cli.grid import grid_values
    from declip.cli.train import given_options

    for command in ("train", "grid", "demo"):
        strings = {s for a in COMMANDS[command]._actions for s in a.option_strings}
        assert leaf_flag in strings, f"declip {command} has no {leaf_flag}"
    train = build_parser().parse_args(["train", "--store", "s", "--dataset", "d", "--source", "b@random-0/layer1",
                                       "--train-sets", "a", "--out", "o", *argv])
    assert getattr(given_options(train), name) == value
    grid = build_parser().parse_args(["grid", *argv])
    raw, _ = grid_values(grid)
    assert raw[name] in (value, list(value) if isinstance(value, tuple) else value)
    from_file = GridConfig.from_dict({**GRID_REQUIRED, name: list(value) if isinstance(value, tuple) else value})
    assert getattr(from_file.options, name) == value
    assert re.search(rf"^#? ?{name} = ", example_config(), re.M), f"{name} is not in the example config"


def test_a_new_field_reaches_flags_and_the_annotated_file_without_another_line():
    """Why 'one field': flags and the annotated TOML are made from the fields, so a subclass's new field has both."""
    import argparse

    added = make_dataclass("Added", [("warmup", int, option(0, help="warmup epochs before the schedule starts",
                                                            identity=LATER, neutral=0, rule=whole(0), metavar="N"))],
                           bases=(TrainOptions,), frozen=True)
    parser = argparse.ArgumentParser()
    add_config_flags(parser, added, "train")
    assert parser.parse_args(["--warmup", "2"]).warmup == 2
    assert "\nwarmup = 0\n" in annotated_toml(added, "header")
    assert added.from_json({"warmup": 2}).warmup == 2


def test_one_default_per_option_for_train_grid_and_demo():
    from declip.cli.train import given_options
    from declip.pipeline.grid.demo import DEMO_TRAINING

    train = given_options(build_parser().parse_args(["train", "--store", "s", "--dataset", "d", "--source",
                                                     "b@random-0/layer1", "--train-sets", "a", "--out", "o"]))
    assert train == TrainOptions()
    assert (train.min_steps_per_epoch, train.collapse_patience, train.device, train.width) == (20, 10, "auto", None)
    grid = GridConfig.from_dict(GRID_REQUIRED)
    assert grid.options == TrainOptions().on_device()  # the grid holds them resolved on this machine
    # the demo changes the budget only (tiny data), never a default it does not name
    changed = {f.name for f in fields(TrainOptions) if getattr(DEMO_TRAINING, f.name) != f.default}
    assert changed == {"max_epochs", "patience", "batch_size", "collapse_patience"}
    assert all(f.default is not MISSING for f in fields(TrainOptions))
