"""95 % intervals for a results table, from each evaluation's ``per_image.parquet`` (the results' ground truth).

On arrays (per-image values already aligned image by image): :func:`mean_intervals` (a per-image mean, many cells
at once), :func:`two_level_intervals` (seeds, then images) and :func:`pooled_pixel_intervals` (pooled pixel AP/AUC
from per-image histograms). On a results table and its per-image tables, two views:

* :func:`add_intervals`: every results row (one run, one seed, one test set, one metric) gains ``ci_low``,
  ``ci_high`` and how they were drawn (``ci_method``, ``ci_resamples``, ``ci_level``, ``ci_seed``), with
  ``n_images`` the images resampled. Test images are resampled (bootstrap, :mod:`pipeline.metrics.resampling`);
  pooled and image-level metrics are recomputed per resample from per-image statistics, never from pixels.
* :func:`seed_summary`: one row per model (every results key but seed and run id): the mean and standard
  deviation of the value across seeds and a two-level interval (seeds, then images) that covers both sources of
  variance; with one seed it is the image interval.

Every row of one image set (dataset, test set, split, view) and metric level is bootstrapped from the same draws,
so differences between rows are paired; the draws depend only on the options (seed, batch) and the image set (ids
sorted), so older results without intervals get the same numbers when computed on demand, and a later
``declip compare`` on the same images uses the same draws. A row whose per-image table is missing, lacks the columns a
metric needs, or disagrees with the row's value (a stale file) gets no interval and a ``ci_note`` saying why.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from declip.core.errors import DeclipError
from declip.pipeline.metrics.resampling import (BootstrapOptions, Intervals, bootstrap_counts, per_seed_means,
                                                weighted_means, with_seed_level)
from declip.pipeline.metrics.weighted import HISTOGRAM_FILE, load_histograms, pooled_curve_metric
from declip.pipeline.report.interval_cells import (HIST_ATTR, Cell, ImageSet, PixelHistograms, cell_intervals,
                                                   level_of, n_images, unavailable)

IMAGE_SET_KEY = ("dataset", "test_set", "split", "view")  # rows that share images share draws
EVAL_KEY = ("run_id", "train_set", "test_set", "split", "view")  # one evaluation: one per_image table
#: What identifies a model across its seeds (the results columns that are not seed, run id, value or a by-product).
MODEL_KEY = ("dataset", "backbone", "layer", "source", "decoder", "faithful", "width", "train_set", "train_views",
             "test_set", "split", "view", "metric")
INTERVAL_COLUMNS = ("n_images", "ci_low", "ci_high", "ci_method", "ci_resamples", "ci_level", "ci_seed", "ci_note")

#: Given a results row (as a mapping), the per-image table of the evaluation that wrote it, or None if there is none.
PerImageLoader = Callable[[Mapping[str, Any]], "pd.DataFrame | None"]


def read_per_image(path: str | Path) -> pd.DataFrame | None:
    """A ``per_image.parquet`` (or ``.csv``) as evaluation wrote it; None when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any reader error means the same thing to the user
        raise DeclipError(f"{path} cannot be read ({type(exc).__name__}: {exc}); re-run the evaluation that wrote "
                          "it (delete the file and run `declip grid` or `declip evaluate` again)") from exc
    missing = [c for c in ("image_id", "label") if c not in frame.columns]
    if missing:
        raise DeclipError(f"{path} has no {', '.join(missing)} column(s): it is not a per-image table written by "
                          "`declip evaluate`; re-run the evaluation that wrote it")
    hist_path = path.with_name(HISTOGRAM_FILE)
    try:
        histograms = load_histograms(hist_path)
    except Exception as exc:  # noqa: BLE001 - any reader error means the same thing to the user
        raise DeclipError(f"{hist_path} cannot be read ({type(exc).__name__}: {exc}); re-run the evaluation that "
                          "wrote it") from exc
    if histograms is not None:
        frame.attrs[HIST_ATTR] = PixelHistograms(*histograms)
    return frame


def _frame(iv: Intervals, n_images: int | np.ndarray, **extra: Any) -> pd.DataFrame:
    return pd.DataFrame({"value": iv.value, **extra, "n_images": n_images, "ci_low": iv.low, "ci_high": iv.high,
                         "ci_method": iv.method, "ci_resamples": iv.resamples, "ci_level": iv.confidence,
                         "ci_seed": iv.seed})


def mean_intervals(values: np.ndarray, options: BootstrapOptions = BootstrapOptions(),
                   skip_nan: bool = True) -> pd.DataFrame:
    """Per-image means with intervals: ``values`` is (n,) or (K, n) per-image values on the same n images (all K
    rows share draws). One row per cell: value, n_images (defined images), ci_low, ci_high, ci_method, ...
    ``skip_nan=False`` makes a row with an undefined image undefined (DeCLIP's plain mean)."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    iv = bootstrap_counts(weighted_means(values, skip_nan), [values.shape[1]], options)
    return _frame(iv, (~np.isnan(values)).sum(axis=1))


def two_level_intervals(values: np.ndarray, options: BootstrapOptions = BootstrapOptions()) -> pd.DataFrame:
    """Means over seeds and images with an interval covering both: ``values`` is (S, n) or (K, S, n), S ≥ 2 seeds
    of per-image values on the same n images. Adds ``std``, the standard deviation of the per-seed means."""
    values = np.asarray(values, dtype=np.float64)
    values = values[None] if values.ndim == 2 else values
    k, n_seeds, n = values.shape
    if n_seeds < 2:
        raise ValueError("two-level intervals need at least two seeds; use mean_intervals for one")
    iv = bootstrap_counts(with_seed_level(per_seed_means(values), n_seeds), [n_seeds, n], options)
    seed_means = np.nanmean(values, axis=2)
    return _frame(iv, n, std=seed_means.std(axis=1, ddof=1), n_seeds=n_seeds)


def pooled_pixel_intervals(histograms: np.ndarray, metric: str = "pooled_pixel_ap",
                           options: BootstrapOptions = BootstrapOptions()) -> pd.DataFrame:
    """Pooled pixel AP or AUC with intervals that resample images: ``histograms`` is (n, 2, bins) or
    (K, n, 2, bins) per-image fake/real pixel histograms (:func:`pipeline.metrics.weighted.pixel_histograms`)."""
    hist = np.asarray(histograms)
    hist = hist[None] if hist.ndim == 3 else hist
    iv = bootstrap_counts(lambda c: np.stack([pooled_curve_metric(metric, h, c[0]) for h in hist]),
                          [hist.shape[1]], options)
    return _frame(iv, hist.shape[1])


def _present(table: pd.DataFrame, key: Sequence[str]) -> list[str]:
    return [c for c in key if c in table.columns]


def _empty_columns(table: pd.DataFrame, options: BootstrapOptions) -> pd.DataFrame:
    out = table.reset_index(drop=True).copy()
    if "n_images" not in out:
        out["n_images"] = np.nan
    out["ci_low"] = out["ci_high"] = np.nan
    out["ci_method"] = ""
    out["ci_resamples"] = 0
    out["ci_level"] = options.confidence
    out["ci_seed"] = options.seed
    out["ci_note"] = ""
    return out


def _agrees(computed: np.ndarray, stated: np.ndarray) -> np.ndarray:
    both_nan = np.isnan(computed) & np.isnan(stated)
    return both_nan | np.isclose(computed, stated, rtol=1e-6, atol=1e-9)


class _IntervalColumns:
    """The interval columns of ``out`` as arrays, filled call by call and written back once: pandas' per-row
    ``.loc`` writes cost more than the bootstrap itself on a grid's few thousand results rows."""

    def __init__(self, out: pd.DataFrame) -> None:
        self.out = out
        self.low = out["ci_low"].to_numpy(dtype=np.float64, copy=True)
        self.high = out["ci_high"].to_numpy(dtype=np.float64, copy=True)
        self.method = out["ci_method"].to_numpy(dtype=object, copy=True)
        self.resamples = out["ci_resamples"].to_numpy(copy=True)
        self.n_images = out["n_images"].to_numpy(copy=True)
        self.note = out["ci_note"].to_numpy(dtype=object, copy=True)

    def fill(self, index: list[int], iv: Intervals, n: int, stated: np.ndarray) -> None:
        """One call's intervals into rows ``index``; rows whose stated value the per-image tables contradict (a
        stale file) get a note instead of an interval."""
        rows = np.asarray(index)
        ok = _agrees(iv.value, stated)
        good = rows[ok]
        self.low[good], self.high[good] = iv.low[ok], iv.high[ok]
        self.method[good], self.resamples[good], self.n_images[good] = iv.method, iv.resamples, n
        self.note[rows[ok & np.isnan(iv.value)]] = "value undefined"
        for at, c, v in zip(rows[~ok], iv.value[~ok], stated[~ok]):
            self.note[at] = (f"per_image gives {c:.6g}, the row says {v:.6g}: the per-image table is stale; re-run "
                             "this evaluation")

    def write(self) -> pd.DataFrame:
        for col, values in (("ci_low", self.low), ("ci_high", self.high), ("ci_method", self.method),
                            ("ci_resamples", self.resamples), ("n_images", self.n_images), ("ci_note", self.note)):
            self.out[col] = values
        return self.out


def _key(values: tuple) -> tuple:
    """A row's evaluation key with missing values as None, so that two rows' NaNs compare equal."""
    return tuple(None if isinstance(v, float) and v != v else v for v in values)


def add_intervals(results: pd.DataFrame, load: PerImageLoader,
                  options: BootstrapOptions = BootstrapOptions()) -> pd.DataFrame:
    """``results`` with :data:`INTERVAL_COLUMNS` filled for every row whose per-image table allows it.

    ``load(row)`` returns the per-image table of the evaluation a row came from (``read_per_image`` on its path),
    or None. Rows of one image set are bootstrapped together (shared draws, one call per metric level).
    """
    out = _empty_columns(results, options)
    columns = _IntervalColumns(out)
    eval_cols = _present(out, EVAL_KEY)
    keys = [_key(k) for k in zip(*(out[c].tolist() for c in eval_cols))] if eval_cols else [()] * len(out)
    metrics = out["metric"].astype(str).tolist()
    row_levels = out["level"].tolist() if "level" in out else [None] * len(out)
    values = out["value"].to_numpy(dtype=np.float64)
    for _, group in out.groupby(_present(out, IMAGE_SET_KEY), dropna=False, sort=False):
        index = group.index.to_numpy()
        frames: dict[tuple, pd.DataFrame | None] = {}
        for i in index:
            if keys[i] not in frames:
                frames[keys[i]] = load(out.loc[i].to_dict())
        loaded = [f for f in frames.values() if f is not None]
        images = ImageSet.of(loaded) if loaded else None
        todo: dict[str, list[tuple[int, Cell]]] = defaultdict(list)
        for i in index:
            frame = frames[keys[i]]
            if frame is None:
                columns.note[i] = "no per-image table for this evaluation"
                continue
            cell = Cell(metrics[i], (frame,))
            level = level_of(cell.metric, row_levels[i])
            why = unavailable(cell, level, images)
            if why:
                columns.note[i] = why
                continue
            todo[level].append((i, cell))
        for level, items in todo.items():
            at = [i for i, _ in items]
            iv = cell_intervals([c for _, c in items], level, images, options)
            columns.fill(at, iv, n_images(level, images), values[at])
    return columns.write()


def seed_summary(results: pd.DataFrame, load: PerImageLoader,
                 options: BootstrapOptions = BootstrapOptions()) -> pd.DataFrame:
    """One row per model across its seeds: ``n_seeds``, ``seeds``, ``mean``, ``std`` and a two-level interval.

    The interval resamples seeds, then test images (shared by every seed, see
    :func:`pipeline.metrics.resampling.with_seed_level`); with one seed it is the image-only interval and ``std``
    is nan. ``mean`` is the mean of the per-seed values of the results table; ``ci_method`` says which interval.
    Models with the same number of seeds on one image set share draws.
    """
    key = _present(results, MODEL_KEY)
    table = results.reset_index(drop=True)
    seed_col = "seed" if "seed" in table else None
    rows, cells, models = [], [], []
    for values, part in table.groupby(key, dropna=False, sort=True):
        part = part.sort_values(seed_col) if seed_col else part
        rec = dict(zip(key, values if isinstance(values, tuple) else (values,)))
        vals = part["value"].to_numpy(dtype=np.float64)
        rec.update(n_seeds=len(part), seeds=",".join(str(s) for s in part[seed_col]) if seed_col else "",
                   mean=float(np.mean(vals)), std=float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"))
        rows.append(rec)
        frames = tuple(load(r) for r in part.to_dict("records"))
        cells.append(None if any(f is None for f in frames) else Cell(str(rec["metric"]), frames))
        models.append(part.iloc[0].to_dict())
    out = _empty_columns(pd.DataFrame(rows), options)
    out.insert(len(key), "interval", "")
    columns = _IntervalColumns(out)
    _seed_intervals(out, columns, cells, models, options)
    return columns.write()


def _seed_intervals(out: pd.DataFrame, columns: _IntervalColumns, cells: list[Cell | None], models: list[dict],
                    options: BootstrapOptions) -> None:
    sets = _present(out, IMAGE_SET_KEY)
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, model in enumerate(models):
        groups[tuple(str(model.get(c)) for c in sets)].append(i)
    for members in groups.values():
        loaded = [f for i in members if cells[i] is not None for f in cells[i].seeds]
        images = ImageSet.of(loaded) if loaded else None
        todo: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i in members:
            if cells[i] is None:
                columns.note[i] = "no per-image table for some seed"
                continue
            level = level_of(cells[i].metric, models[i].get("level"))
            why = unavailable(cells[i], level, images)
            if why:
                columns.note[i] = why
                continue
            todo[(level, len(cells[i].seeds))].append(i)
        for (level, n_seeds), index in todo.items():
            iv = cell_intervals([cells[i] for i in index], level, images, options)
            columns.fill(index, iv, n_images(level, images), out.loc[index, "mean"].to_numpy(dtype=np.float64))
            out.loc[index, "interval"] = "seeds, then images" if n_seeds > 1 else "images (one seed)"
