"""Every dataset shape a researcher brings runs scan → extract → grid (SRM control, dry run first) → report → predict
through the CLI, as a user types it: exit code 0, no traceback on stderr, a report page with every panel (issue 19).

Shapes (tests/acceptance/shapes.py): pairs without split folders (mixed JPEG/PNG, non-square and 2000×1200 images,
greyscale/RGB/palette masks), pairs with split folders, a CocoGlide-style test list (test-only, then split to train
on it), Dolos with two generators and with one. Tiny random-weight ViT, a linear head, one epoch: the suite checks
that the commands work on each shape, not what they learn. Its five tests took 3.8 minutes on 2 shared cores
(35-56 s each), longer on a loaded machine.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.shapes import write_dolos, write_list, write_pairs
from tests.fixtures import REPO, TINY_BACKBONE

pytestmark = [pytest.mark.slow, pytest.mark.flow]  # CLI subprocesses that run Prefect flows

PANELS = ("summary", "iou_layer_decoder_heatmap", "iou_by_layer", "train_test_matrix", "train_test_matrices",
          "per_image_iou", "overlays")


class User:
    """Runs `declip` commands in a working folder, as a user at a terminal would, against the session's Prefect API."""

    def __init__(self, cwd: Path, api: str):
        self.cwd = cwd
        self.env = dict(os.environ, OMP_NUM_THREADS="1", PREFECT_API_URL=api, TQDM_DISABLE="1")

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "declip.cli", *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=600)
        shown = f"declip {' '.join(args)}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, shown
        if ok:
            assert done.returncode == 0, shown
        return done


def _grid_toml(path: Path, dataset: str, train: list[str], test: list[str]) -> Path:
    path.write_text(f'''store = "feats.zarr"
dataset = "{dataset}"
manifest = "manifest.parquet"
out = "grid"
backbones = ["{TINY_BACKBONE}"]
layers = ["layer1"]
extra_sources = ["srm@fixed/layer0"]
decoders = ["linear"]
train_sets = {train!r}
test_sets = {test!r}
max_epochs = 1
batch_size = 4
min_steps_per_epoch = 4
device = "cpu"
progress = false
'''.replace("'", '"'))
    return path


def _pipeline(user: User, root: Path, scan_args: list[str], dataset: str, train: list[str], test: list[str]) -> None:
    """scan → extract → grid --dry-run → grid → report → predict, each checked."""
    scan = user.run("data", "scan", str(root), "--out", "manifest.parquet", "--no-progress", *scan_args)
    assert f"dataset: {dataset}" in scan.stdout and "WARNING: no split" not in scan.stdout, scan.stdout
    assert "problems: none" in scan.stdout, scan.stdout  # every mask mode, format and size is accepted
    user.run("extract", "--manifest", "manifest.parquet", "--store", "feats.zarr", "--backbone", TINY_BACKBONE,
             "--layers", "layer1", "--batch-size", "8", "--no-progress")
    toml = str(_grid_toml(user.cwd / "grid.toml", dataset, train, test))
    plan = user.run("grid", "--config", toml, "--dry-run")
    assert "srm@fixed/layer0" in plan.stdout
    grid = user.run("grid", "--config", toml)
    assert "results in" in grid.stdout and "FAILED" not in grid.stdout, grid.stdout
    report = user.run("report", "grid/results.parquet")
    page = user.cwd / "grid" / "report" / "index.html"
    assert "index.html" in report.stdout, report.stdout
    html = page.read_text()
    for panel in PANELS:
        assert (page.parent / f"{panel}.png").stat().st_size > 0 and f'src="{panel}.png"' in html, panel
    assert "No overlay" not in html
    checkpoint = next((user.cwd / "grid" / "by-name").glob("test-vit-tiny_layer1_linear_*")) / "best"
    user.run("predict", str(root), "--ckpt", str(checkpoint), "--out", "predictions", "--batch-size", "8")
    with open(user.cwd / "predictions" / "scores.csv") as f:
        scores = list(csv.DictReader(f))
    assert scores and all(s["status"] == "ok" for s in scores), scores


@pytest.fixture
def user(tmp_path, prefect_harness) -> User:
    return User(tmp_path, prefect_harness)


def test_pairs_without_split_folders_mixed_formats_sizes_and_mask_modes(user, tmp_path):
    root = tmp_path / "photos"
    write_pairs(root, None, n=10)
    plain = user.run("data", "scan", str(root), "--out", "manifest.parquet", "--no-progress")
    assert "WARNING: no split" in plain.stdout and "--split-ratios 0.6,0.2,0.2 --seed 0" in plain.stdout
    toml = str(_grid_toml(tmp_path / "grid.toml", "photos", ["fake"], ["fake"]))
    refused = user.run("grid", "--config", toml, "--dry-run", ok=False)
    assert refused.returncode == 2 and "has no split" in refused.stderr and "--split-ratios" in refused.stderr
    assert not (tmp_path / "feats.zarr").exists()
    _pipeline(user, root, ["--split-ratios", "0.6,0.2,0.2", "--seed", "3"], "photos", ["fake"], ["fake"])
    import pandas as pd

    rows = pd.read_parquet(tmp_path / "manifest.parquet")
    assert set(rows.loc[rows["width"] >= 2000, "split"]) == {"valid", "test"}  # evaluated at 2000×1200 (seed 3)


def test_pairs_with_split_folders(user, tmp_path):
    write_pairs(tmp_path / "mine", {"train": 6, "valid": 2, "test": 2})
    _pipeline(user, tmp_path / "mine", ["--layout", "pairs"], "mine", ["fake"], ["fake"])


def test_a_test_only_list_then_split_to_train_on_it(user, tmp_path):
    root = tmp_path / "glide"
    write_list(root, fakes=10, reals=2)
    only = user.run("data", "scan", str(root), "--layout", "list", "--list-file", "test.txt", "--split", "test",
                    "--out", "test-only.parquet", "--dataset", "glide-test", "--no-progress")
    assert "every row in split 'test'" in only.stdout
    user.run("extract", "--manifest", "test-only.parquet", "--store", "feats.zarr", "--backbone", TINY_BACKBONE,
             "--layers", "layer1", "--no-progress")
    refused = user.run("train", "--store", "feats.zarr", "--dataset", "glide-test", "--source",
                       f"{TINY_BACKBONE}/layer1", "--decoders", "linear", "--train-sets", "fake", "--out", "r",
                       "--no-flow", ok=False)
    assert refused.returncode == 2 and "is test-only" in refused.stderr
    _pipeline(user, root, ["--layout", "list", "--list-file", "test.txt", "--split-ratios", "0.6,0.2,0.2"], "glide",
              ["fake"], ["fake"])
    checkpoint = next((tmp_path / "grid" / "by-name").glob("test-vit-tiny_layer1_linear_*")) / "best"
    done = user.run("evaluate", "--store", "feats.zarr", "--dataset", "glide-test", "--ckpt", str(checkpoint),
                    "--test-sets", "fake", "--out", "test-only-eval", "--no-flow")
    assert "fake" in done.stdout


def test_dolos_with_several_generators(user, tmp_path):
    write_dolos(tmp_path / "dolos", ("tint", "fill"))
    _pipeline(user, tmp_path / "dolos", ["--layout", "dolos"], "dolos-celebahq", ["tint", "fill"], ["tint", "fill"])


def test_dolos_with_one_generator(user, tmp_path):
    write_dolos(tmp_path / "dolos", ("tint",))
    _pipeline(user, tmp_path / "dolos", ["--layout", "dolos"], "dolos-celebahq", ["tint"], ["tint"])
