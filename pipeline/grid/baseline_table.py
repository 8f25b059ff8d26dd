"""A grid's feature-free baselines (:mod:`declip.pipeline.evaluate.baselines`), kept in ``<out>/baselines.parquet``.

Baselines depend only on the dataset, the train set (the mask prior's), the test set and the split, so a grid
computes the (train set, test set, split) combinations the file lacks and keeps every row it has: re-running costs
nothing, and adding a test set computes only its rows. A combination computed again replaces its old rows.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from declip.core.io import atomic_path
from declip.pipeline.evaluate.baselines import baseline_rows
from declip.pipeline.grid.config import GridConfig

BASELINES_FILE = "baselines.parquet"
#: A combination counts as present when its all-fake row is (every baseline is computed together).
MARKER = "baseline:all-fake"


def missing_combinations(old: pd.DataFrame, g: GridConfig) -> list[tuple[str, str, list[str]]]:
    """(split, train set, [test sets]) of the grid that ``old`` has no baseline rows for."""
    have = set(zip(old["train_set"], old["test_set"], old["split"], old["decoder"]))
    todo = []
    for split in g.eval_splits or ("test",):
        for train_set in g.train_sets:
            missing = [t for t in g.test_sets if (train_set, t, split, MARKER) not in have]
            if missing:
                todo.append((split, train_set, missing))
    return todo


def update_baselines(g: GridConfig) -> Path:
    """Add the grid's missing baseline rows to ``<out>/baselines.parquet`` (written whole, atomically); its path."""
    out = Path(g.out) / BASELINES_FILE
    old = pd.read_parquet(out) if out.exists() else pd.DataFrame(columns=["train_set", "test_set", "split", "decoder"])
    kept, added = old, []
    for split, train_set, missing in missing_combinations(old, g):
        added.append(baseline_rows(g.store, g.dataset, [train_set], missing, g.metrics, split))
        stale = (kept["train_set"] == train_set) & kept["test_set"].isin(missing) & (kept["split"] == split)
        kept = kept[~stale]  # rows of a half-written combination, replaced by the new ones
    if added or not out.exists():
        frames = ([kept] if len(kept) else []) + added
        with atomic_path(out) as tmp:
            (pd.concat(frames, ignore_index=True) if frames else kept).to_parquet(tmp, index=False)
    return out
