"""Every ``declip`` help page: defaults, an example that parses, help text for every flag; the discoverability flags
(``--version``, ``evaluate --list-metrics``, ``grid --example-config``) and the annotated grid file kept in sync."""
import argparse
import dataclasses
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from declip.cli.app import build_parser, main
from declip.cli.examples import EXAMPLES
from tests.cli.cli_parsers import options, walk

from tests.fixtures import REPO  # noqa: E402
COMMANDS = [(path, parser) for path, parser in walk(build_parser())]


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) or "declip" for p, _ in COMMANDS])
def test_every_command_has_an_example_and_every_flag_has_help(path, parser):
    text = parser.format_help()
    assert "examples:\n  declip" in text, f"`declip {' '.join(path)} --help` shows no example"
    for action in options(parser) + [a for a in parser._actions if not a.option_strings]:
        if isinstance(action, argparse._SubParsersAction):
            continue
        assert action.help and len(action.help) > 8, f"declip {' '.join(path)}: {action.option_strings or action.dest} has no help"


def test_help_shows_defaults_but_not_none_or_false():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    flat = " ".join(text.split())
    assert "--lr LR AdamW learning rate" in flat and "(default: 0.001)" in flat
    assert "(default: 64)" in flat and "(default: 0)" in flat  # batch size, seed
    assert "default: None" not in flat and "default: False" not in flat


@pytest.mark.parametrize("path, parser", COMMANDS, ids=[" ".join(p) or "declip" for p, _ in COMMANDS])
def test_help_never_shows_a_python_object_as_a_default(path, parser):
    text = parser.format_help()
    assert "object at 0x" not in text and "MISSING" not in text, f"declip {' '.join(path)} --help"
    if path == ("grid",):
        assert "(required)" in " ".join(text.split())  # --store, --dataset, --out: the file or the flag gives them


def _example_argv(command: str) -> list[list[str]]:
    joined = EXAMPLES[command].replace("\\\n", " ")
    out = []
    for line in joined.strip().splitlines():
        words = shlex.split(line.split("#")[0].split(">")[0])
        assert words[0] == "declip", line
        out.append(words[1:])
    return out


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_each_example_parses(command, capsys):
    parser = build_parser()
    for argv in _example_argv(command):
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --example-config / --list-metrics print and exit 0
            assert exc.code == 0, (command, argv, capsys.readouterr().err)
            continue
        assert callable(args.func), argv


def test_every_command_has_an_examples_entry():
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert paths <= set(EXAMPLES), f"commands without examples: {sorted(paths - set(EXAMPLES))}"
    assert set(EXAMPLES) <= paths, f"examples for commands that do not exist: {sorted(set(EXAMPLES) - paths)}"


def test_version_names_declip_and_its_libraries(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and re.match(r"declip \d+\.\d+", out) and "torch" in out and "prefect" in out


def test_list_metrics_lists_the_registry_and_evaluate_help_points_at_it(capsys):
    from declip.pipeline.metrics.registry import REGISTRY

    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--list-metrics"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    listed = [line.split()[0] for line in out.splitlines() if line and not line.startswith((" ", "metrics "))]
    assert listed == list(REGISTRY)
    assert REGISTRY["f1_best"].description[:40] in " ".join(out.split())
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["evaluate"].format_help().split())
    assert "declip evaluate --list-metrics" in help_text


def _commented_keys(text: str) -> dict[str, str]:
    """key -> the comment block right above it (``# key = ...`` lines count as keys; keys under a ``[table]`` header
    are dotted, ``table.key``, as TOML reads them)."""
    keys, block, prefix = {}, [], ""
    for line in text.splitlines():
        m = re.match(r"^#?\s*([a-z_]+) = ", line)
        if re.match(r"^\[([a-z_]+)\]$", line):
            prefix, block = line[1:-1] + ".", []
        elif m and not line.startswith("# ---"):
            keys[prefix + m.group(1)] = " ".join(block)
            block = []
        elif line.startswith("#"):
            block.append(line.lstrip("# "))
        else:
            block = []
    return keys


def test_example_grid_config_documents_every_key_with_its_true_default(tmp_path):
    from declip.core.configs import leaves
    from declip.pipeline.grid.config import GridConfig, example_config

    text = example_config()
    comments = _commented_keys(text)
    keys = {leaf.key: leaf for leaf in leaves(GridConfig)}  # the training options are flat keys, as in old files
    assert set(comments) == set(keys), f"undocumented: {set(keys) - set(comments)}; " \
                                       f"unknown: {set(comments) - set(keys)}"
    for name, leaf in keys.items():
        comment = comments[name]
        assert len(comment) > 20, f"{name}: no explanation"
        no_default = leaf.field.default is dataclasses.MISSING and leaf.field.default_factory is dataclasses.MISSING
        if no_default or name in ("train_sets", "test_sets"):  # from_dict demands these
            assert "Required" in comment, f"{name} has no default but its comment does not say Required"
            continue
        if leaf.default is None:
            assert "Unset:" in comment or "Default: unset" in comment, f"{name}: says nothing about being unset"
            continue
        m = re.search(r"Default: (.+?)\.?$", comment)
        assert m, f"{name}: comment states no default"
        value = tomllib.loads(f"v = {m.group(1)}")["v"]
        real = list(leaf.default) if isinstance(leaf.default, tuple) else leaf.default
        assert value == real, f"{name}: the example says default {m.group(1)}, GridConfig says {leaf.default!r}"
    with pytest.raises(Exception, match="train_sets and test_sets"):
        GridConfig.from_dict({k: v for k, v in tomllib.loads(text).items() if k != "train_sets"})
    path = tmp_path / "grid.toml"
    path.write_text(text)
    cfg = GridConfig.from_toml(str(path))
    assert cfg.dataset == "dolos-celebahq" and cfg.layers == ("layer12", "layer20")
    assert max(len(line) for line in text.splitlines()) <= 120


@pytest.mark.slow
def test_example_config_prints_the_file_through_the_cli():
    from declip.pipeline.grid.config import example_config

    run = subprocess.run([sys.executable, "-m", "declip.cli", "grid", "--example-config"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout == example_config()


@pytest.mark.slow  # a fresh interpreter: the parent test process has imported everything already
def test_building_the_command_line_imports_no_heavy_library():
    """Every command builds the whole parser first: importing torch there (a device-name check of the demo's default
    options did) cost each `declip` call ~1.2 s before it did anything, `--help` included."""
    code = ("import sys; from declip.cli.app import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'torchvision', 'prefect', 'pandas', 'zarr', 'open_clip') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert done.stdout.strip() == "[]", done.stdout


def test_device_names_are_still_checked():
    from declip.core.errors import DeclipError
    from declip.pipeline.train.options import TrainOptions

    assert TrainOptions(device="cuda:1").device == "cuda:1" and TrainOptions(device="cpu").device == "cpu"
    with pytest.raises(DeclipError, match="device"):
        TrainOptions(device="gpu7")
