"""The grid's one results table, rebuilt from the per-evaluation summaries on disk so it never disagrees with what
was computed, and merged with the table already in ``out`` by (run id, train set, test set, split, view, metric):
re-running a narrower config into the same folder replaces the rows it recomputed and keeps every other row, so
results never shrink.

Every row carries ``n_images`` and a 95 % bootstrap interval over its test images (``ci_low``, ``ci_high``, with
``ci_method``, ``ci_resamples``, ``ci_level``, ``ci_seed`` saying how it was drawn, or ``ci_note`` why there is none),
resampled from the evaluation's per-image table (:mod:`declip.pipeline.report.intervals`). A row whose value is
unchanged keeps the interval it was written with (the draws depend only on the seed and the test images), so a
re-run bootstraps only what is new, and rows of grids written before intervals existed gain them.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from declip.core.io import atomic_path
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import Cell, eval_summary_path
from declip.pipeline.report.intervals import INTERVAL_COLUMNS
from declip.pipeline.report.results_file import ROW_KEY, fill_intervals


RESULT_COLUMNS = [
    "backbone", "layer", "source", "decoder", "faithful", "width", "train_set", "train_views", "test_set", "view",
    "dataset", "split",
    "seed", "metric", "value", "level", "threshold_rule", "aggregation", "scale", "n_images", "n_undefined",
    "image_score_rule", "random_weights", "run_id", "checkpoint", "code_version", "collapsed", "collapse_reason",
    *(c for c in INTERVAL_COLUMNS if c != "n_images"),
]


MERGE_KEY = list(ROW_KEY)


def collect_results(cfg: GridConfig, cells: list[Cell], code_version: str) -> pd.DataFrame:
    """The one results table: a row per (cell, test set, metric), plus the baseline rows."""
    frames = []
    for cell in cells:
        for ev in cell.evals:
            path = eval_summary_path(ev)
            if not path.exists():
                continue
            df = pd.read_parquet(path)
            df["train_set"] = ",".join(cell.train.train_sets)
            df["train_views"] = "+".join(cell.train.options.train_views) or "clean"
            df["run_id"] = cell.run_id
            df["seed"] = cell.train.seed
            frames.append(df)
    baseline = Path(cfg.out) / "baselines.parquet"
    if baseline.exists():
        frames.append(pd.read_parquet(baseline))
    if not frames:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    table["code_version"] = code_version
    return _conform(table)


def _conform(table: pd.DataFrame) -> pd.DataFrame:
    """RESULT_COLUMNS in order (tables written before a column existed get its neutral value), sorted."""
    table = table.copy()
    for col in RESULT_COLUMNS:
        if col not in table.columns:
            table[col] = None
    table["view"] = table["view"].fillna("clean")  # summaries written before views existed, baselines
    table["train_views"] = table["train_views"].fillna("clean")
    table["collapsed"] = table["collapsed"].fillna(False).astype(bool)
    table["collapse_reason"] = table["collapse_reason"].fillna("").astype(str)
    table["split"] = table["split"].fillna("test")
    table["ci_note"] = table["ci_note"].fillna("").astype(str)
    table["ci_method"] = table["ci_method"].fillna("").astype(str)
    return table[RESULT_COLUMNS].sort_values(
        ["decoder", "layer", "train_set", "test_set", "split", "view", "seed", "metric"],
        kind="stable").reset_index(drop=True)


def merge_results(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``new`` plus every row of ``old`` whose (run id, train set, test set, split, view, metric) ``new`` lacks."""
    if old.empty:
        return _conform(new)
    old = _conform(old)
    new = _conform(new)
    key = lambda df: pd.MultiIndex.from_frame(df[MERGE_KEY].astype(str))  # noqa: E731
    kept = old[~key(old).isin(key(new))]
    return _conform(pd.concat([new, kept], ignore_index=True)) if len(kept) else new


def write_results(table: pd.DataFrame, out: Path) -> Path:
    """Write ``out/results.{parquet,csv}``, merged with the table already there (see :func:`merge_results`), every
    row with its interval (:func:`~declip.pipeline.report.results_file.fill_intervals`)."""
    out.mkdir(parents=True, exist_ok=True)
    existing = out / "results.parquet"
    previous = pd.read_parquet(existing) if existing.exists() else None
    if previous is not None:
        table = merge_results(previous, table)
    table = _conform(fill_intervals(_conform(table), out, previous=previous))
    for suffix, writer in ((".parquet", lambda p: table.to_parquet(p, index=False)),
                           (".csv", lambda p: table.to_csv(p, index=False))):
        with atomic_path(out / f"results{suffix}") as tmp:
            writer(tmp)
    return out / "results.parquet"
