"""Where a grid keeps each evaluation's per-image table, and the loader that finds it for a results row.

A results row names its evaluation by (run id, test set, split, view); a baseline row by its name, train set, test
set and split. The per-image tables are the ground truth of every interval and comparison the report shows, so the
same paths serve the grid (which writes them), the results table (whose intervals are drawn from them) and the
report, ``declip compare`` and the closing summary (which read them).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from declip.core.keys import CLEAN_VIEW
from declip.pipeline.report.intervals import read_per_image

BASELINE_PREFIX = "baseline:"
BASELINES_DIR = "baselines"
PER_IMAGE = "per_image.parquet"


def run_eval_dir(run_dir: Path, view: str = CLEAN_VIEW, split: str = "test") -> Path:
    """Where a cell's evaluations on ``view`` and ``split`` go: clean test ones stay in ``eval/`` as before views
    and validation evaluations existed, clean validation ones in ``eval-valid/``, views in ``eval-views/<view>/``."""
    if view == CLEAN_VIEW:
        return run_dir / ("eval" if split == "test" else f"eval-{split}")
    return run_dir / "eval-views" / (view if split == "test" else f"{view}@{split}")


def eval_dir(grid_dir: Path, run_id: str, test_set: str, view: str = CLEAN_VIEW, split: str = "test") -> Path:
    """Where a grid cell's evaluation on ``test_set`` lies (per-image table, pixel histograms, saved maps)."""
    return run_eval_dir(Path(grid_dir) / "runs" / str(run_id), view, split) / test_set


def baseline_dir(grid_dir: Path, name: str, train_set: str, test_set: str, split: str = "test") -> Path:
    """Where a feature-free baseline's per-image table on (train set, test set, split) lies; ``name`` with or without
    the ``baseline:`` prefix."""
    return Path(grid_dir) / BASELINES_DIR / split / train_set / test_set / name.removeprefix(BASELINE_PREFIX)


def per_image_path(grid_dir: Path, row: Mapping[str, Any]) -> Path:
    """The per-image table of the evaluation that wrote results row ``row``."""
    split = str(row.get("split") or "test")
    decoder = str(row.get("decoder") or "")
    if decoder.startswith(BASELINE_PREFIX):
        return baseline_dir(grid_dir, decoder, str(row["train_set"]), str(row["test_set"]), split) / PER_IMAGE
    view = row.get("view")
    view = CLEAN_VIEW if view is None or pd.isna(view) or view == "" else str(view)
    return eval_dir(grid_dir, str(row["run_id"]), str(row["test_set"]), view, split) / PER_IMAGE


class PerImageTables:
    """``load(row)`` for a grid folder: each per-image table read once (None where the file does not exist)."""

    def __init__(self, grid_dir: str | Path) -> None:
        self.grid_dir = Path(grid_dir)
        self._read: dict[Path, pd.DataFrame | None] = {}

    def __call__(self, row: Mapping[str, Any]) -> pd.DataFrame | None:
        path = per_image_path(self.grid_dir, row)
        if path not in self._read:
            self._read[path] = read_per_image(path)
        return self._read[path]
