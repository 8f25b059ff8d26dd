"""The acceptance suite: every dataset shape a researcher brings runs scan → extract → grid (SRM control, dry run
first) → report → predict through the CLI, as a user types it: exit code 0, no traceback on stderr, a report page
with every panel (issue 19). This module runs the commands; the shapes are written by tests/acceptance/shapes.py and
driven by one test file per family of shapes (pairs, lists, Dolos), so the suite's two processes share them.

Tiny random-weight ViT, a linear head, one epoch: the suite checks that the commands work on each shape, not what
they learn. Its five tests take 3-4 minutes on 2 cores."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures import TINY_BACKBONE

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


def grid_toml(path: Path, dataset: str, train: list[str], test: list[str]) -> Path:
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


def run_pipeline(user: User, root: Path, scan_args: list[str], dataset: str, train: list[str],
                 test: list[str]) -> None:
    """scan → extract → grid --dry-run → grid → report → predict, each checked."""
    scan = user.run("data", "scan", str(root), "--out", "manifest.parquet", "--no-progress", *scan_args)
    assert f"dataset: {dataset}" in scan.stdout and "WARNING: no split" not in scan.stdout, scan.stdout
    assert "problems: none" in scan.stdout, scan.stdout  # every mask mode, format and size is accepted
    user.run("extract", "--manifest", "manifest.parquet", "--store", "feats.zarr", "--backbone", TINY_BACKBONE,
             "--layers", "layer1", "--batch-size", "8", "--no-progress")
    toml = str(grid_toml(user.cwd / "grid.toml", dataset, train, test))
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
