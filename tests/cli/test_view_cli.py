"""``declip extract --view`` (repeatable, --split) and ``declip evaluate --view`` from the command line."""
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.fixtures import TINY_BACKBONE, train_config

from tests.fixtures import REPO  # noqa: E402

pytestmark = pytest.mark.slow  # CLI subprocesses (extraction with --no-flow)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "declip.cli", *args], cwd=REPO, capture_output=True, text=True)


def test_extract_and_evaluate_views_from_the_command_line(tiny_manifest, tmp_path):
    store = tmp_path / "s.zarr"
    proc = _cli("extract", "--manifest", str(tiny_manifest), "--store", str(store), "--backbone", TINY_BACKBONE,
                "--layers", "1", "--view", "clean", "--view", "jpeg:50;blur:1.0", "--view", "blur:1",
                "--batch-size", "4", "--no-flow", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("→ dolos-celebahq:" in line for line in lines)
    assert any("→ dolos-celebahq@jpeg:50:" in line for line in lines)
    assert sum("→ dolos-celebahq@blur:1:" in line for line in lines) == 1  # one canonical view, encoded once
    proc = _cli("extract", "--manifest", str(tiny_manifest), "--store", str(store), "--backbone", TINY_BACKBONE,
                "--layers", "1", "--view", "noise:0.1", "--split", "test", "--batch-size", "4", "--no-flow",
                "--no-progress")
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.split("layers, ")[1].split(" blocks run")[0]  # e.g. "12 rows, 3/14"
    run, total = (int(x) for x in blocks.split(", ")[1].split("/"))
    assert 0 < run < total

    from declip.pipeline.train.training import train

    train(train_config(store, tmp_path / "run", batch_size=8, max_epochs=1))
    proc = _cli("evaluate", "--store", str(store), "--dataset", "dolos-celebahq", "--ckpt", str(tmp_path / "run/best"),
                "--test", "tint", "--view", "clean", "--view", "noise:0.1", "--out", str(tmp_path / "ev"), "--no-flow")
    assert proc.returncode == 0, proc.stderr
    assert "noise:0.1" in proc.stdout and "clean" in proc.stdout
    for view in ("clean", "noise:0.1"):
        summary = pd.read_parquet(tmp_path / "ev" / view / "tint" / "summary.parquet")
        assert set(summary["view"]) == {view}


def test_bad_view_is_one_clear_error(tiny_manifest, tmp_path):
    proc = _cli("extract", "--manifest", str(tiny_manifest), "--store", str(tmp_path / "s.zarr"), "--backbone",
                TINY_BACKBONE, "--layers", "1", "--view", "jpeg:500", "--no-flow", "--no-progress")
    assert proc.returncode == 2
    assert "jpeg" in proc.stderr and "[1, 100]" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.zarr").exists()  # refused before anything was written


def test_view_and_dtype_flags_list_exactly_the_registries(monkeypatch):
    """A view operation or storage dtype registered in its one file shows up in the CLI with no edit there."""
    from declip.cli.app import build_parser
    from declip.features.view_ops import VIEW_OPS, OpSpec
    from declip.store.quantize import STORAGE_DTYPES, StorageDtype

    def flag(command, dest):
        sub = build_parser()._subparsers._group_actions[0].choices[command]
        return next(a for a in sub._actions if a.dest == dest)

    assert flag("extract", "storage_dtype").choices == ["float16", "float32", "int8", "float8_e4m3"]
    assert flag("extract", "storage_dtype").default == "float16"
    for command in ("extract", "evaluate"):
        assert "jpeg:Q" in flag(command, "view").help and "copy:K" in flag(command, "view").help
    monkeypatch.setitem(VIEW_OPS._entries, "flip", OpSpec("flip", lambda t: (), lambda im, p, rng: im, "mirror", (),
                                                          "flip:H", "flip"))
    monkeypatch.setitem(STORAGE_DTYPES._entries, "bfloat16", StorageDtype("bfloat16", "uint16", "bfloat16",
                                                                          "float16", "test entry"))
    assert "bfloat16" in flag("extract", "storage_dtype").choices
    assert all("flip:H" in flag(command, "view").help for command in ("extract", "evaluate"))
