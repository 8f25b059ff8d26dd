"""A grid's feature-free baselines (:mod:`declip.pipeline.evaluate.baselines`), kept in ``<out>/baselines.parquet``
with their per-image tables under ``<out>/baselines/<split>/<train set>/<test set>/<name>/`` (what their intervals and
``declip compare baseline:NAME`` resample).

Baselines depend only on the dataset, the train set (the mask prior's), the test set and the split, so a grid
computes the (train set, test set, split) combinations the file lacks and keeps every row it has: re-running costs
nothing, and adding a test set computes only its rows. A combination computed again replaces its old rows.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from declip.core.io import atomic_path
from declip.pipeline.evaluate.baselines import BASELINES, baseline_rows
from declip.pipeline.evaluate.evaluation import write_per_image
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.report.grid_files import PER_IMAGE, baseline_dir

BASELINES_FILE = "baselines.parquet"
#: A combination counts as present when its all-fake row is (every baseline is computed together).
MARKER = "baseline:all-fake"


def missing_combinations(old: pd.DataFrame, g: GridConfig) -> list[tuple[str, str, list[str]]]:
    """(split, train set, [test sets]) of the grid that ``old`` has no baseline rows for, or whose per-image tables
    are missing (baselines written before intervals existed: recomputed, they cost seconds)."""
    have = set(zip(old["train_set"], old["test_set"], old["split"], old["decoder"]))
    todo = []
    for split in g.eval_splits or ("test",):
        for train_set in g.train_sets:
            missing = [t for t in g.test_sets if (train_set, t, split, MARKER) not in have
                       or not all((baseline_dir(g.out, name, train_set, t, split) / PER_IMAGE).exists()
                                  for name in BASELINES)]
            if missing:
                todo.append((split, train_set, missing))
    return todo


def update_baselines(g: GridConfig) -> Path:
    """Add the grid's missing baseline rows to ``<out>/baselines.parquet`` (written whole, atomically); its path."""
    out = Path(g.out) / BASELINES_FILE
    old = pd.read_parquet(out) if out.exists() else pd.DataFrame(columns=["train_set", "test_set", "split", "decoder"])
    kept, added = old, []
    for split, train_set, missing in missing_combinations(old, g):
        def keep(name: str, train: str, test: str, acc, split: str = split) -> None:
            write_per_image(acc, baseline_dir(g.out, name, train, test, split))

        added.append(baseline_rows(g.store, g.dataset, [train_set], missing, g.metrics, split, keep))
        stale = (kept["train_set"] == train_set) & kept["test_set"].isin(missing) & (kept["split"] == split)
        kept = kept[~stale]  # rows of a half-written combination, replaced by the new ones
    if added or not out.exists():
        frames = ([kept] if len(kept) else []) + added
        with atomic_path(out) as tmp:
            (pd.concat(frames, ignore_index=True) if frames else kept).to_parquet(tmp, index=False)
    return out
