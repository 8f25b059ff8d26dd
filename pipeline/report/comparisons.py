"""Is model A different from model B on the same test images? Paired differences, Holm's correction, "tied with best".

Two models scored on the same images are compared image by image: the per-image difference removes what makes an
image easy or hard for both, which is most of the spread of a per-image metric (IoU per image ranges 0-100 while
two neighbouring layers differ by 1-3 points). Seeds are pooled first (each model's per-image mean over its seeds).

* the difference is the mean per-image difference A − B, with a paired bootstrap interval (one shared draw of the
  images, :mod:`pipeline.metrics.resampling`, the same draws the results' intervals use for that seed);
* the p-value is scipy's Wilcoxon signed-rank test of the per-image differences (zero differences dropped, as
  Wilcoxon defined it), or a sign-flip permutation test of their mean (``test="permutation"``: the hypothesis the
  interval is about, at the cost of ``permutations`` evaluations). Identical models have difference 0 and p = 1;
* :func:`unpaired_comparison` is the comparison to use when the images differ (independent bootstraps,
  Mann–Whitney U): on the same images it throws away the pairing and is far less sensitive;
* :func:`holm` adjusts p-values over a family of comparisons, and :func:`tied_with_best` marks every model whose
  Holm-adjusted p against the chosen best is not below alpha ("tied with best").

Only per-image metrics (level ``image-pixel``) are compared this way; dataset-level metrics (image AUC, pooled IoU)
have per-model intervals in the results table but no per-image difference.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from declip.pipeline.metrics.registry import REGISTRY
from declip.pipeline.metrics.resampling import BootstrapOptions, bootstrap_counts, weighted_means
from declip.pipeline.report.interval_cells import Aligner, ImageSet

TESTS = ("wilcoxon", "permutation")
ALPHA = 0.05


@dataclass(frozen=True)
class Comparisons:
    """K comparisons of A − B; every array has one entry per comparison."""

    difference: np.ndarray  # mean per-image difference (A − B)
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    n_images: np.ndarray  # images where both are defined
    test: str
    method: str
    resamples: int

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"difference": self.difference, "ci_low": self.ci_low, "ci_high": self.ci_high,
                             "p_value": self.p_value, "n_images": self.n_images, "test": self.test,
                             "ci_method": self.method, "ci_resamples": self.resamples})


def pool_seeds(values: np.ndarray) -> np.ndarray:
    """(n,) -> (1, n); (S, n) -> (1, n); (K, S, n) -> (K, n): each image's mean over seeds (nan if any seed's is)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        return values[None]
    if values.ndim == 2:
        return values.mean(axis=0, keepdims=True)
    return values.mean(axis=1)


def _p_values(diff: np.ndarray, test: str, seed: int, permutations: int) -> np.ndarray:
    """Two-sided p per row of per-image differences (nan entries left out); 1 where every difference is 0."""
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {TESTS}")
    defined = ~np.isnan(diff)
    p = np.full(len(diff), np.nan)
    zero = np.all(np.where(defined, diff, 0.0) == 0, axis=1) & defined.any(axis=1)
    p[zero] = 1.0  # no image differs: nothing to reject (scipy's Wilcoxon has no non-zero difference to rank)
    todo = np.flatnonzero(~zero & (defined.sum(axis=1) >= 2))

    def run(x: np.ndarray) -> np.ndarray:
        if test == "wilcoxon":
            return np.asarray(stats.wilcoxon(x, axis=-1).pvalue)
        return np.asarray(stats.permutation_test((x,), _mean, permutation_type="samples", vectorized=True,
                                                 n_resamples=permutations, axis=-1,
                                                 rng=np.random.default_rng(seed)).pvalue)

    complete = todo[defined[todo].all(axis=1)]
    if complete.size:
        p[complete] = run(diff[complete])
    for k in np.setdiff1d(todo, complete):
        p[k] = float(run(diff[k][defined[k]]))
    return p


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def paired_comparison(a: np.ndarray, b: np.ndarray, options: BootstrapOptions = BootstrapOptions(),
                      test: str = "wilcoxon", permutations: int = 9999) -> Comparisons:
    """A − B on the same images: a and b are (n,), (S, n) or (K, S, n) per-image values aligned image by image.

    Images where either is undefined (nan) are left out of that comparison. All K comparisons share one draw.
    """
    diff = pool_seeds(a) - pool_seeds(b)
    iv = bootstrap_counts(weighted_means(diff), [diff.shape[1]], options)
    return Comparisons(difference=iv.value, ci_low=iv.low, ci_high=iv.high,
                       p_value=_p_values(diff, test, options.seed, permutations),
                       n_images=(~np.isnan(diff)).sum(axis=1), test=test, method=iv.method, resamples=iv.resamples)


def unpaired_comparison(a: np.ndarray, b: np.ndarray, options: BootstrapOptions = BootstrapOptions()) -> Comparisons:
    """A − B on different images (or ignoring that they are the same): independent bootstraps, Mann–Whitney U.

    a and b are (n_a,) or (S, n_a) and (n_b,) or (S, n_b): one comparison, seeds pooled, nan images left out.
    """
    x, y = pool_seeds(a)[0], pool_seeds(b)[0]
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]

    def statistic(counts: list[np.ndarray]) -> np.ndarray:
        return ((counts[0] @ x) / counts[0].sum(axis=1) - (counts[1] @ y) / counts[1].sum(axis=1))[None]

    iv = bootstrap_counts(statistic, [len(x), len(y)], options)
    p = 1.0 if np.array_equal(np.sort(x), np.sort(y)) else float(stats.mannwhitneyu(x, y).pvalue)
    return Comparisons(difference=iv.value, ci_low=iv.low, ci_high=iv.high, p_value=np.array([p]),
                       n_images=np.array([len(x) + len(y)]), test="mannwhitneyu", method=iv.method,
                       resamples=iv.resamples)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1); nan p-values are not counted.

    Sorted ascending, the i-th smallest of m is multiplied by (m − i) (i from 0), then made non-decreasing.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def mark_tied(difference: np.ndarray, p_values: np.ndarray, alpha: float = ALPHA,
              higher_is_better: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(Holm-adjusted p, status) of each model against the best: 'tied with best' where adjusted p ≥ alpha,
    else 'below best' or 'above best' (the best is chosen on validation, so a test difference can go either way);
    'not compared' where no p-value exists."""
    adjusted = holm(p_values)
    better = np.asarray(difference) > 0 if higher_is_better else np.asarray(difference) < 0
    status = np.where(np.isnan(adjusted), "not compared",
                      np.where(adjusted >= alpha, "tied with best", np.where(better, "above best", "below best")))
    return adjusted, status


def tied_with_best(values: Mapping[str, np.ndarray], best: str, options: BootstrapOptions = BootstrapOptions(),
                   alpha: float = ALPHA, test: str = "wilcoxon", higher_is_better: bool = True) -> pd.DataFrame:
    """Every model against the chosen ``best`` on the same images, Holm-corrected over the others.

    ``values[name]`` is the model's per-image values, (n,) or (S, n), aligned image by image. One row per model:
    model, difference (model − best) with its interval, p_value, p_holm and status ('best' for the best itself).
    """
    others = [name for name in values if name != best]
    rows = [{"model": best, "difference": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": np.nan, "p_holm": np.nan,
             "status": "best"}]
    if others:
        stacked = np.stack([pool_seeds(values[name]) for name in others])  # (K, 1, n): seeds already pooled
        cmp = paired_comparison(stacked, np.broadcast_to(pool_seeds(values[best]), stacked.shape), options, test)
        adjusted, status = mark_tied(cmp.difference, cmp.p_value, alpha, higher_is_better)
        for i, name in enumerate(others):
            rows.append({"model": name, "difference": cmp.difference[i], "ci_low": cmp.ci_low[i],
                         "ci_high": cmp.ci_high[i], "p_value": cmp.p_value[i], "p_holm": adjusted[i],
                         "status": status[i]})
    return pd.DataFrame(rows)


def align_models(frames: Mapping[str, Sequence[pd.DataFrame]], metric: str) -> dict[str, np.ndarray]:
    """Per-image values of ``metric`` of several models (each a list of per-image tables, one per seed) on the
    same test set, aligned on the sorted fake image ids: the input of :func:`tied_with_best`, {name: (S, n)}."""
    images = ImageSet.of([f for seeds in frames.values() for f in seeds])
    align = Aligner(images.image_ids[images.fake])
    return {name: align.matrix(seeds, metric) for name, seeds in frames.items()}


def compare_tables(frames_a: Sequence[pd.DataFrame], frames_b: Sequence[pd.DataFrame], metric: str,
                   options: BootstrapOptions = BootstrapOptions(), test: str = "wilcoxon") -> Comparisons:
    """A − B from per-image tables (one per seed of each model) of the same test set: ``declip compare``.

    Images are aligned on ``image_id`` (sorted, fake images: the draws the results' intervals use).
    """
    if metric in REGISTRY and REGISTRY[metric].level != "image-pixel":
        raise ValueError(f"{metric!r} is a {REGISTRY[metric].level} metric: paired per-image comparisons need a "
                         "per-image metric (e.g. iou); its per-model intervals are in the results table")
    aligned = align_models({"a": frames_a, "b": frames_b}, metric)
    return paired_comparison(aligned["a"], aligned["b"], options, test)
