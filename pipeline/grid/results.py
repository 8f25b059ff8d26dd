"""The grid's one results table, rebuilt from the per-evaluation summaries on disk so it never disagrees with what
was computed, and merged with the table already in ``out`` by (run id, train set, test set, split, view, metric):
re-running a narrower config into the same folder replaces the rows it recomputed and keeps every other row, so
results never shrink.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from declip.core.io import atomic_path
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import Cell, eval_summary_path


RESULT_COLUMNS = [
    "backbone", "layer", "source", "decoder", "faithful", "width", "train_set", "train_views", "test_set", "view",
    "dataset", "split",
    "seed", "metric", "value", "level", "threshold_rule", "aggregation", "scale", "n_images", "n_undefined",
    "image_score_rule", "random_weights", "run_id", "checkpoint", "code_version", "collapsed", "collapse_reason",
]


MERGE_KEY = ["run_id", "train_set", "test_set", "split", "view", "metric"]


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
    """Write ``out/results.{parquet,csv}``, merged with the table already there (see :func:`merge_results`)."""
    out.mkdir(parents=True, exist_ok=True)
    existing = out / "results.parquet"
    if existing.exists():
        table = merge_results(pd.read_parquet(existing), table)
    for suffix, writer in ((".parquet", lambda p: table.to_parquet(p, index=False)),
                           (".csv", lambda p: table.to_csv(p, index=False))):
        with atomic_path(out / f"results{suffix}") as tmp:
            writer(tmp)
    return out / "results.parquet"
