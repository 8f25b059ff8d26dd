"""From per-image tables to bootstrap statistics: the cells of one image set, aligned on image ids, by metric level.

A *cell* is one (model, metric) on one image set (dataset, test set, split, view) with its S seeds' per-image
tables. All cells of an image set are stacked and bootstrapped in one call, so they share every draw (paired by
construction). Images are aligned on ``image_id`` in sorted order, so the same seed draws the same resamples for the
same images in any later call (a ``declip compare`` agrees with the grid's intervals). How each level resamples:

* ``image-pixel`` (per-image means over fake images): one stratum, the fake images; undefined images follow the
  registry's rule (skipped, or nan for the whole mean).
* ``image`` (detection over real + fake images): two strata, reals and fakes resampled separately, so every
  resample keeps the test set's class balance (AUC and AP depend on it and it is fixed by the test set's author).
* ``pooled`` (IoU/F1 from summed counts, pixel AP/AUC from summed pixel histograms): the fake images, from
  per-image ``tp``/``fp``/``fn`` columns and the histograms of ``pixel_hist.npz`` beside the table (attached to it as
  ``frame.attrs[HIST_ATTR]`` when read); tables written before those existed have no pooled interval (and say so).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from declip.pipeline.metrics.registry import COUNT_COLUMNS, REGISTRY
from declip.pipeline.metrics.resampling import (BootstrapOptions, CountStatistic, Intervals, bootstrap_counts,
                                                per_seed_means, with_seed_level)
from declip.pipeline.metrics.weighted import (IMAGE_METRICS, POOLED_COUNT_METRICS, POOLED_CURVE_METRICS,
                                              ImageScores, image_metrics, pooled_count_metric, pooled_curve_metric)

HIST_ATTR = "pixel_hist"  # per-image table attribute: the PixelHistograms of its fake images


@dataclass(frozen=True, eq=False)
class PixelHistograms:
    """(image ids, (n, 2, bins) fake/real pixel counts) of an evaluation's fake images, carried in its per-image
    table's ``attrs``. Compared by identity and never copied (pandas compares and deep-copies ``attrs`` on many
    operations; arrays would make the comparison ambiguous and the copies costly)."""

    image_ids: np.ndarray
    hist: np.ndarray

    def __deepcopy__(self, memo: dict) -> "PixelHistograms":
        return self


@dataclass(frozen=True)
class ImageSet:
    """The images of one test set as every per-image table of it lists them: sorted ids and fake labels."""

    image_ids: np.ndarray
    fake: np.ndarray  # bool, aligned with image_ids

    @classmethod
    def of(cls, frames: Sequence[pd.DataFrame]) -> "ImageSet":
        """Each id once (with the label of the first table that lists it), sorted. Built from the columns as arrays:
        selecting ``f[["image_id", "label"]]`` from each of a grid's hundreds of tables cost more than the report."""
        ids = pd.Series(np.concatenate([f["image_id"].to_numpy(dtype=object) for f in frames]))
        labels = np.concatenate([f["label"].to_numpy() for f in frames])
        first = ~ids.duplicated().to_numpy()
        ids, labels = ids.to_numpy()[first], labels[first]
        order = np.argsort(ids, kind="stable")
        return cls(ids[order], labels[order] == 1)

    @property
    def n_fake(self) -> int:
        return int(self.fake.sum())

    @property
    def n_real(self) -> int:
        return int((~self.fake).sum())


def aligned(frames: Sequence[pd.DataFrame], column: str, ids: np.ndarray) -> np.ndarray:
    """(len(frames), len(ids)) float values of ``column``, nan where a table lacks an image or the column."""
    return Aligner(ids).matrix(frames, column)


class Aligner:
    """Per-image tables reindexed to one image set's ids, each table once however many metrics read it."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._done: dict[int, pd.DataFrame] = {}

    def column(self, frame: pd.DataFrame, column: str) -> np.ndarray:
        key = id(frame)
        if key not in self._done:
            self._done[key] = frame.drop_duplicates("image_id").set_index("image_id").reindex(self.ids)
        table = self._done[key]
        if column not in table.columns:
            return np.full(len(self.ids), np.nan)
        return table[column].to_numpy(dtype=np.float64)

    def matrix(self, frames: Sequence[pd.DataFrame], column: str) -> np.ndarray:
        return np.stack([self.column(f, column) for f in frames])


@dataclass(frozen=True)
class Cell:
    """One (model, metric) on an image set: the per-image tables of its seeds."""

    metric: str
    seeds: tuple[pd.DataFrame, ...]


def level_of(metric: str, fallback: str | None = None) -> str | None:
    """The registry's level of ``metric`` (``fallback``, e.g. a results row's ``level``, for unregistered names)."""
    return REGISTRY[metric].level if metric in REGISTRY else fallback


def unavailable(cell: Cell, level: str | None, images: ImageSet) -> str:
    """Why ``cell`` gets no interval ('' when it can have one)."""
    if level not in ("image-pixel", "image", "pooled"):
        return f"unknown metric level for {cell.metric!r}"
    if level == "image":
        if cell.metric not in IMAGE_METRICS:
            return f"no resampling rule for image metric {cell.metric!r}"
        if images.n_fake < 2 or images.n_real < 2:
            return "image metrics need at least two real and two fake images"
        return ""
    if images.n_fake < 2:
        return "fewer than two fake images"
    if level == "pooled":
        if cell.metric in POOLED_CURVE_METRICS:
            if any(HIST_ATTR not in f.attrs for f in cell.seeds):
                return "no pixel_hist.npz beside per_image (written before pooled pixel intervals existed)"
            return ""
        if cell.metric not in POOLED_COUNT_METRICS:
            return f"no resampling rule for pooled metric {cell.metric!r}"
        if any(c not in f.columns for f in cell.seeds for c in COUNT_COLUMNS):
            return "per_image has no tp/fp/fn columns (written before pooled intervals existed)"
        return ""
    if any(cell.metric not in f.columns for f in cell.seeds):
        return f"per_image has no {cell.metric!r} column"
    return ""


PerSeed = Callable[[list[np.ndarray]], np.ndarray]


def _mean_cells(cells: Sequence[Cell], images: ImageSet) -> tuple[PerSeed, list[int]]:
    align = Aligner(images.image_ids[images.fake])
    values = np.stack([align.matrix(c.seeds, c.metric) for c in cells])  # (K, S, n_fake)
    skip = np.array([c.metric not in REGISTRY or REGISTRY[c.metric].undefined == "skip" for c in cells])
    return per_seed_means(values, skip), [len(align.ids)]


def _image_cells(cells: Sequence[Cell], images: ImageSet) -> tuple[PerSeed, list[int]]:
    align = Aligner(images.image_ids)
    real_at, fake_at = np.flatnonzero(~images.fake), np.flatnonzero(images.fake)
    # each evaluation's scores once, with every image metric asked of it (AUC and AP share one curve)
    tables: dict[int, pd.DataFrame] = {id(f): f for c in cells for f in c.seeds}
    asked: dict[int, set[str]] = defaultdict(set)
    for c in cells:
        for f in c.seeds:
            asked[id(f)].add(c.metric)
    scores = {key: ImageScores(align.column(f, "image_score"), images.fake) for key, f in tables.items()}

    def per_seed(counts: list[np.ndarray]) -> np.ndarray:
        weights = np.zeros((counts[0].shape[0], len(images.image_ids)))
        weights[:, real_at], weights[:, fake_at] = counts
        got = {key: image_metrics(tuple(sorted(asked[key])), scores[key], weights) for key in tables}
        return np.stack([[got[id(f)][c.metric] for f in c.seeds] for c in cells])

    return per_seed, [len(real_at), len(fake_at)]


def histograms_of(frame: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """(len(ids), 2, bins) pixel histograms of ``frame``'s fake images on ``ids``; zeros where it lacks an image."""
    stored: PixelHistograms = frame.attrs[HIST_ATTR]
    have, hist = stored.image_ids, stored.hist
    out = np.zeros((len(ids), *hist.shape[1:]), dtype=np.float64)
    at = pd.Index(ids).get_indexer(pd.Index(have))
    out[at[at >= 0]] = hist[at >= 0]
    return out


def _pooled_cells(cells: Sequence[Cell], images: ImageSet) -> tuple[PerSeed, list[int]]:
    align = Aligner(images.image_ids[images.fake])
    stats: list[list[np.ndarray]] = []  # per cell, per seed: (n_fake, 3) counts or (n_fake, 2, bins) histograms
    for c in cells:
        if c.metric in POOLED_CURVE_METRICS:
            stats.append([histograms_of(f, align.ids) for f in c.seeds])
        else:  # an image missing from a table counts nothing
            stats.append(list(np.nan_to_num(np.stack([align.matrix(c.seeds, col) for col in COUNT_COLUMNS], -1))))

    def per_seed(image_counts: list[np.ndarray]) -> np.ndarray:
        w = image_counts[0]
        return np.stack([[(pooled_curve_metric if c.metric in POOLED_CURVE_METRICS else pooled_count_metric)(
            c.metric, stat, w) for stat in per] for c, per in zip(cells, stats)])

    return per_seed, [len(align.ids)]


BUILDERS = {"image-pixel": _mean_cells, "image": _image_cells, "pooled": _pooled_cells}


def statistic_for(per_seed: PerSeed, sizes: list[int], n_seeds: int) -> tuple[CountStatistic, list[int]]:
    """Image-only for one seed; seeds then images (:func:`with_seed_level`) for several."""
    if n_seeds == 1:
        return (lambda counts: per_seed(counts)[:, 0, :]), sizes
    return with_seed_level(per_seed, n_seeds), [n_seeds, *sizes]


def cell_intervals(cells: Sequence[Cell], level: str, images: ImageSet, options: BootstrapOptions) -> Intervals:
    """Intervals of cells that share a level and a number of seeds, from one set of draws."""
    n_seeds = len(cells[0].seeds)
    if any(len(c.seeds) != n_seeds for c in cells):
        raise ValueError("cells of one call must have the same number of seeds")
    per_seed, sizes = BUILDERS[level](cells, images)
    statistic, sizes = statistic_for(per_seed, sizes, n_seeds)
    return bootstrap_counts(statistic, sizes, options)


def n_images(level: str, images: ImageSet) -> int:
    """The images a level's interval resamples (fakes for pixel metrics, every image for detection metrics)."""
    return len(images.image_ids) if level == "image" else images.n_fake
