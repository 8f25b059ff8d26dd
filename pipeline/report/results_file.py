"""A grid's results table as the report, ``declip compare`` and the closing summary read it: every row with its
interval, computed on demand from the per-image tables for tables written before intervals existed.

The grid writes intervals with its table (:func:`fill_intervals` in ``pipeline.grid.results``); a results table
of an older grid has no ``ci_*`` columns, and :func:`load_results` fills them from the per-image tables beside it
(not written back: reading never changes a grid's files). A row whose value is unchanged keeps the interval it was
written with, since the draws depend only on the options and the test images.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from declip.core.errors import DeclipError
from declip.pipeline.metrics.resampling import BootstrapOptions
from declip.pipeline.report.grid_files import PerImageTables
from declip.pipeline.report.intervals import INTERVAL_COLUMNS, add_intervals

#: One results row: an evaluation (run, train set, test set, split, view) and a metric.
ROW_KEY = ("run_id", "train_set", "test_set", "split", "view", "metric")


def needs_interval(table: pd.DataFrame) -> pd.Series:
    """Rows with neither an interval nor a note saying why there is none (new rows, or an older grid's)."""
    method = table["ci_method"] if "ci_method" in table else pd.Series("", index=table.index)
    note = table["ci_note"] if "ci_note" in table else pd.Series("", index=table.index)
    return (method.fillna("").astype(str) == "") & (note.fillna("").astype(str) == "")


def fill_intervals(table: pd.DataFrame, grid_dir: str | Path, options: BootstrapOptions = BootstrapOptions(),
                   previous: pd.DataFrame | None = None) -> pd.DataFrame:
    """``table`` (index reset) with :data:`INTERVAL_COLUMNS` for every row: copied from ``previous`` where the row
    (:data:`ROW_KEY`) and its value are unchanged, bootstrapped from the per-image tables under ``grid_dir`` where
    it has none yet."""
    table = table.reset_index(drop=True).copy()
    for col in INTERVAL_COLUMNS:
        if col not in table:
            table[col] = None
    key = [c for c in (*ROW_KEY, "value") if c in table]
    if previous is not None and len(previous) and "ci_method" in previous and set(key) <= set(previous):
        prev = previous[previous["ci_method"].fillna("").astype(str) != ""].drop_duplicates(key)
        prev = prev.reset_index(drop=True)
        found = table[key].astype(str).merge(prev[key].astype(str).assign(_at=prev.index), how="left", on=key)
        hit = found["_at"].notna().to_numpy()
        taken = prev.loc[found.loc[hit, "_at"].astype(int)]
        for col in INTERVAL_COLUMNS:
            table[col] = table[col].astype(object)
            table.loc[hit, col] = taken[col].to_numpy()
    todo = needs_interval(table).to_numpy()
    if todo.any():
        done = add_intervals(table[todo].reset_index(drop=True), PerImageTables(grid_dir), options)
        for col in INTERVAL_COLUMNS:
            table[col] = table[col].astype(object)
            table.loc[todo, col] = done[col].to_numpy()
    for col in ("n_images", "ci_low", "ci_high", "ci_resamples", "ci_level", "ci_seed"):
        table[col] = pd.to_numeric(table[col], errors="coerce")
    for col in ("ci_method", "ci_note"):
        table[col] = table[col].fillna("").astype(str)
    return table


def results_path(path: str | Path) -> Path:
    """``path`` itself, or a grid folder's ``results.parquet`` (a folder read as parquet would read every per-image
    file under it as one dataset)."""
    path = Path(path)
    return path / "results.parquet" if path.is_dir() else path


def load_results(path: str | Path, options: BootstrapOptions = BootstrapOptions()) -> pd.DataFrame:
    """A grid's ``results.parquet`` (or its folder) with every row's interval (computed from the per-image tables
    beside it where the file has none: a table written before intervals existed)."""
    path = results_path(path)
    if not path.exists():
        raise DeclipError(f"{path} not found; run `declip grid` first (it writes results.parquet)")
    table = pd.read_parquet(path)
    if table.empty:
        return table
    return fill_intervals(table, path.parent, options)
