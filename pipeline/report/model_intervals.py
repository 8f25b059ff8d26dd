"""Intervals of the numbers the report shows: a model's mean over several evaluations (in-domain, out-of-domain, one
train × test cell) and over its seeds, with an interval that covers the test images and the seeds.

A report number such as "in-domain IoU of conv-4 @ layer20" is the mean over cells (train set, test set) and seeds of
each evaluation's per-image mean. Its interval resamples what could have come out differently:

* the test images of each test set, independently (scipy's multi-sample bootstrap, one stratum per test set): the
  evaluations of one test set share every draw, so a model evaluated on it after training on two generators is not
  counted as two independent samples;
* the seeds, first, when the model has several (the two-level bootstrap of
  :func:`declip.pipeline.metrics.resampling.with_seed_level`): a resample draws seeds, then images.

Groups with the same number of seeds on the same test sets are bootstrapped together, so models compared on the
same images share draws, and a single cell's interval is the one its results row carries (the same draws). The point value is the same mean computed from the per-image tables; where it disagrees with the results
table's (a stale per-image table) the group gets a note instead of an interval.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd

from declip.pipeline.metrics.registry import REGISTRY
from declip.pipeline.metrics.resampling import BootstrapOptions, bootstrap_counts, weighted_means, with_seed_level
from declip.pipeline.report.interval_cells import Aligner, ImageSet
from declip.pipeline.report.intervals import PerImageLoader

GROUP_COLUMNS = ("value", "n_cells", "n_seeds", "seed_std", "n_images", "ci_low", "ci_high", "interval", "ci_note")


def with_domain(rows: pd.DataFrame) -> pd.DataFrame:
    """``domain``: in-domain where the train set is the test set, else out-of-domain (DeCLIP's tables)."""
    return rows.assign(domain=np.where(rows["train_set"] == rows["test_set"], "in-domain", "out-of-domain"))


def _seed_means(part: pd.DataFrame) -> np.ndarray:
    """Per seed, the mean over the group's cells of the results table's values."""
    seeds = part["seed"].fillna(0).to_numpy() if "seed" in part else np.zeros(len(part))
    return part["value"].groupby(seeds).mean().to_numpy(dtype=np.float64)  # (not assign: it copies every column)


def group_intervals(rows: pd.DataFrame, by: Sequence[str], load: PerImageLoader,
                    options: BootstrapOptions = BootstrapOptions()) -> pd.DataFrame:
    """One row per group of ``rows`` (results rows of one per-image metric on one split and view) grouped ``by``:
    the mean over cells and seeds, its interval over test images and seeds, and how many of each went in."""
    by = list(by)
    rows = rows.reset_index(drop=True)
    if rows.empty:
        return pd.DataFrame(columns=[*by, *GROUP_COLUMNS])
    metrics = set(rows["metric"])
    if len(metrics) != 1:
        raise ValueError(f"group_intervals takes one metric at a time, got {sorted(metrics)}")
    metric = metrics.pop()
    skip = metric not in REGISTRY or REGISTRY[metric].undefined == "skip"
    records = rows.to_dict("records")
    frames = [load(r) for r in records]
    by_test: dict[str, list[pd.DataFrame]] = defaultdict(list)
    for rec, frame in zip(records, frames):
        if frame is not None:
            by_test[str(rec["test_set"])].append(frame)
    align = {}
    for t, fs in by_test.items():
        images = ImageSet.of(fs)
        align[t] = Aligner(images.image_ids[images.fake])

    out, todo = [], defaultdict(list)  # (n_seeds, test sets) -> [(group position, member row indices)]
    for key, part in rows.groupby(by, sort=True, dropna=False):
        seed_means = _seed_means(part)
        rec = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        tests = part["test_set"].astype(str)
        test_sets = set(tests)
        rec.update(value=float(part["value"].mean()), n_cells=len(set(zip(part["train_set"].astype(str), tests))),
                   n_seeds=len(seed_means), seed_std=float(np.std(seed_means, ddof=1)) if len(seed_means) > 1
                   else float("nan"), n_images=int(sum(len(align[t].ids) for t in test_sets if t in align)),
                   ci_low=float("nan"), ci_high=float("nan"), interval="", ci_note="")
        missing = [i for i in part.index if frames[i] is None]
        small = [t for t in test_sets if t not in align or len(align[t].ids) < 2]
        if missing:
            rec["ci_note"] = "no per-image table for some evaluation"
        elif small:
            rec["ci_note"] = f"fewer than two fake images in {', '.join(sorted(small))}"
        elif metric not in by_test[str(part["test_set"].iloc[0])][0].columns:
            rec["ci_note"] = f"per_image has no {metric!r} column"
        else:
            todo[(len(seed_means), tuple(sorted(test_sets)))].append(
                (len(out), list(part.index)))
        out.append(rec)
    table = pd.DataFrame(out)
    for (n_seeds, _), groups in todo.items():
        _bootstrap(table, groups, n_seeds, rows, frames, align, metric, skip, options)
    return table[[*by, *GROUP_COLUMNS]]


def _bootstrap(table: pd.DataFrame, groups: list[tuple[int, list[int]]], n_seeds: int, rows: pd.DataFrame,
               frames: list, align: dict[str, Aligner], metric: str, skip: bool, options: BootstrapOptions) -> None:
    """Intervals of ``groups`` (each ``n_seeds`` seeds on the same test sets) from one shared set of draws: strata =
    [seeds] + test sets."""
    tests = sorted({str(rows.at[i, "test_set"]) for _, members in groups for i in members})
    slot: list[list[tuple[int, int]]] = [[] for _ in tests]  # per test set: (group, seed) of each stacked row
    values: list[list[np.ndarray]] = [[] for _ in tests]
    seed_of = rows["seed"].fillna(0) if "seed" in rows else pd.Series(0, index=rows.index)
    for g, (_, members) in enumerate(groups):
        seeds = sorted(seed_of[members].unique())
        for i in members:
            t = tests.index(str(rows.at[i, "test_set"]))
            slot[t].append((g, seeds.index(seed_of[i])))
            values[t].append(align[tests[t]].column(frames[i], metric))
    means = [weighted_means(np.stack(v), skip) for v in values]
    index = [np.array(s, dtype=np.int64) for s in slot]

    def per_seed(image_counts: list[np.ndarray]) -> np.ndarray:
        b = image_counts[0].shape[0]
        total, count = np.zeros((len(groups), n_seeds, b)), np.zeros((len(groups), n_seeds, b))
        for t, stat in enumerate(means):
            got = stat([image_counts[t]])  # (rows of test set t, B)
            ok = np.isfinite(got)
            np.add.at(total, (index[t][:, 0], index[t][:, 1]), np.where(ok, got, 0.0))
            np.add.at(count, (index[t][:, 0], index[t][:, 1]), ok)
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count  # each seed's mean over the group's cells

    sizes = [len(align[t].ids) for t in tests]
    if n_seeds > 1:
        statistic, sizes = with_seed_level(per_seed, n_seeds), [n_seeds, *sizes]
    else:
        def statistic(counts: list[np.ndarray]) -> np.ndarray:
            return per_seed(counts)[:, 0, :]
    iv = bootstrap_counts(statistic, sizes, options)
    at = [g for g, _ in groups]
    stated = table.loc[at, "value"].to_numpy(dtype=np.float64)
    agrees = np.isclose(iv.value, stated, rtol=1e-6, atol=1e-6) | (np.isnan(iv.value) & np.isnan(stated))
    table.loc[at, "ci_low"] = np.where(agrees, iv.low, np.nan)
    table.loc[at, "ci_high"] = np.where(agrees, iv.high, np.nan)
    table.loc[at, "interval"] = np.where(agrees, "seeds, then images" if n_seeds > 1 else "images (one seed)", "")
    table.loc[at, "ci_note"] = np.where(agrees, np.where(np.isnan(iv.value), "value undefined", ""),
                                        "per-image tables disagree with the results table (stale, or a cell lacks a seed)")
