"""The CLI's option names: one canonical kebab-case name per option in every command, DeCLIP's names as aliases."""
import argparse
import re

import pytest

from declip.cli.app import build_parser
from declip.cli.option_names import ALIASES, COMMAND_ALIASES, split_values
from tests.cli.cli_parsers import options, walk

KEBAB = re.compile(r"^(-[a-z]|--[a-z0-9]+(-[a-z0-9]+)*)$")


def test_canonical_names_are_kebab_case_and_aliases_come_from_the_table():
    seen: dict[str, str] = {}
    for path, parser in walk(build_parser()):
        command = " ".join(path)
        for action in options(parser):
            negated = isinstance(action, argparse.BooleanOptionalAction)  # --x/--no-x: the --no- forms are its own
            long = [o for o in action.option_strings if o.startswith("--") and not (negated and o.startswith("--no-"))]
            canonical, aliases = long[0], tuple(long[1:])
            assert KEBAB.match(canonical), f"{command}: {canonical} is not kebab-case"
            expected = ALIASES.get(canonical, ()) + COMMAND_ALIASES.get((command, canonical), ())
            assert aliases == expected, f"{command} {canonical}: aliases {aliases}, the table says {expected}"
            if isinstance(action, argparse._StoreConstAction) or action.dest == argparse.SUPPRESS:
                continue  # a shorthand for another option's value, or a print-and-exit flag
            seen.setdefault(action.dest, canonical)
            assert seen[action.dest] == canonical, (
                f"{command}: destination {action.dest!r} is spelled {canonical} here and {seen[action.dest]} elsewhere")


@pytest.mark.parametrize("argv, dest, value", [
    (["train", "--store", "s", "--dataset", "d", "--out", "o", "--feature_layer", "layer20", "--decoder_type",
      "linear", "--train_dataset", "lama", "--niter", "3", "--batch_size", "8", "--earlystop_epoch", "2"],
     "layers", ["layer20"]),
    (["train", "--store", "s", "--dataset", "d", "--out", "o", "--layers", "layer1,layer2", "--layers", "layer3",
      "--train-sets", "lama"], "layers", ["layer1,layer2", "layer3"]),
    (["evaluate", "--store", "s", "--dataset", "d", "--checkpoint", "c", "--test", "a,b", "--result_folder", "r"],
     "test_sets", "a,b"),
    (["extract", "--manifest", "m", "--store", "s", "--feature_layer", "layer20", "--batch_size", "4"],
     "batch_size", 4),
    (["grid", "--decoder_type", "linear", "--decoders", "conv-4"], "decoders", ["linear", "conv-4"]),
])
def test_declip_spellings_reach_the_canonical_option(argv, dest, value):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value


def test_split_values_accepts_repeated_and_comma_separated():
    assert split_values(["a,b", " c ", "d,"]) == ["a", "b", "c", "d"]
    assert split_values("x,y") == ["x", "y"]
    assert split_values(None) == []
