"""Bootstrap over test images: ``scipy.stats.bootstrap`` draws the resamples, the statistic sees them as counts.

One bootstrap resample of n test images is a vector of counts (how often each image was drawn). Every statistic a
result needs is cheap given those counts: a mean over images is a matrix product, pooled TP/FP/FN or pooled score
histograms are count-weighted sums, a ROC/PR curve is a count-weighted cumulative sum. So K cells × R resamples cost
one ``(K, n) @ (n, R)`` product instead of K × R gathers, and no Python loop runs per cell or per resample.

The data handed to scipy are the image *positions* ``0..n-1`` of each stratum, never the values: scipy draws,
batches and seeds the index matrix, computes the percentile / basic / BCa interval (BCa's jackknife included), and
every cell of one call sees the same draws. Cells evaluated on the same images are therefore paired by
construction, and the same seed on the same (sorted) images gives the same draws in a later call.

Strata are resampled independently (scipy's multi-sample bootstrap, ``paired=False``): real vs fake images for
image-level metrics (a test set's class balance is chosen by its author, not sampled), and seeds vs images for the
two-level bootstrap (:func:`with_seed_level`).
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from declip.core.validation import Rule, check_config, choice, whole

#: statistic(counts) -> (K, B): ``counts[j]`` is a (B, n_j) float matrix, how often each item of stratum j was drawn
#: in each of B resamples; the result has one row per cell and the resamples on the last axis.
CountStatistic = Callable[[list[np.ndarray]], np.ndarray]

METHODS = ("bca", "percentile", "basic")
_OPEN_UNIT = Rule("number", lambda v: 0 < v < 1, "a number between 0 and 1 (exclusive)")


@dataclass(frozen=True)
class BootstrapOptions:
    """How every interval is drawn; written beside each result (``ci_method``, ``ci_resamples``, ``ci_level``)."""

    n_resamples: int = 1000  # bootstrap resamples per interval (Efron & Tibshirani: ~1000 for percentile bounds)
    method: str = "bca"  # bca (bias-corrected, accelerated: better coverage on skewed IoU), percentile or basic
    confidence: float = 0.95  # two-sided confidence level of every interval
    seed: int = 0  # seed of the resample draws; the same seed on the same images draws the same resamples
    batch: int = 100  # resamples per statistic call: bounds memory (cells × batch × images); with several strata
    # scipy draws stratum after stratum per batch, so the draws depend on it: keep it fixed for comparable results

    def __post_init__(self) -> None:
        check_config(self, {"n_resamples": whole(1), "method": choice(*METHODS), "confidence": _OPEN_UNIT,
                            "seed": whole(0), "batch": whole(1)}, "bootstrap")


@dataclass(frozen=True)
class Intervals:
    """Point values and bootstrap intervals of K cells drawn from one shared set of resamples."""

    value: np.ndarray  # (K,) the statistic on the data as observed (every count 1)
    low: np.ndarray  # (K,)
    high: np.ndarray  # (K,)
    std_error: np.ndarray  # (K,) standard deviation of the bootstrap distribution
    distribution: np.ndarray  # (K, R) the statistic per resample, in draw order (paired across cells)
    method: str
    resamples: int
    confidence: float
    seed: int


def counts_from_indices(indices: np.ndarray, n: int) -> np.ndarray:
    """(M, m) drawn positions in ``[0, n)`` -> (M, n) float counts (one bincount for all rows)."""
    rows = indices.shape[0]
    flat = (indices + (np.arange(rows, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def bootstrap_counts(statistic: CountStatistic, sizes: Sequence[int], options: BootstrapOptions) -> Intervals:
    """Intervals of ``statistic`` for every cell it returns, resampling each stratum of ``sizes`` independently.

    A stratum needs at least two items (scipy's rule; one item has no sampling variance to estimate).
    """
    sizes = [int(n) for n in sizes]

    def on_indices(*drawn: np.ndarray, axis: int = -1) -> np.ndarray:
        lead = drawn[0].shape[:-1]  # () for the observed data, (B,) for resamples and jackknife batches
        counts = [counts_from_indices(d.reshape(-1, d.shape[-1]), n) for d, n in zip(drawn, sizes)]
        out = np.asarray(statistic(counts), dtype=np.float64)
        return out.reshape(out.shape[:1] + lead)

    data = tuple(np.arange(n) for n in sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # constant cells: handled below
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 in BCa's acceleration for constant cells
        result = stats.bootstrap(data, on_indices, n_resamples=options.n_resamples, batch=options.batch,
                                 vectorized=True, paired=False, axis=-1, confidence_level=options.confidence,
                                 method=options.method, rng=np.random.default_rng(options.seed))
        value = on_indices(*data)
    low, high = (np.array(b, dtype=np.float64, ndmin=1) for b in result.confidence_interval)
    dist = np.asarray(result.bootstrap_distribution, dtype=np.float64)
    # A cell whose every resample gives the same finite value (a constant map, a model compared with itself) has
    # a zero-width interval; BCa's acceleration is 0/0 there and scipy returns nan.
    constant = np.isfinite(value) & np.all(dist == value[:, None], axis=1)
    low[constant] = high[constant] = value[constant]
    low[~np.isfinite(value)] = high[~np.isfinite(value)] = np.nan
    return Intervals(value=value, low=low, high=high, std_error=np.array(result.standard_error, ndmin=1),
                     distribution=dist, method=options.method, resamples=options.n_resamples,
                     confidence=options.confidence, seed=options.seed)


def weighted_means(values: np.ndarray, skip_nan: bool | np.ndarray = True) -> CountStatistic:
    """Statistic: the count-weighted mean over images of each row of ``values`` (K, n).

    ``skip_nan`` (one flag, or one per row): undefined images (nan) leave the mean, as the metric registry's
    ``undefined="skip"`` metrics do; otherwise one nan image makes the row nan (``"propagate"``, DeCLIP's plain
    mean).
    """
    values = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(values)
    poisoned = ~np.broadcast_to(np.asarray(skip_nan, bool), (len(values),)) & ~defined.all(axis=1)
    filled = np.where(defined, values, 0.0)
    weight = defined.astype(np.float64)
    sums, defined_n = filled.sum(axis=1, keepdims=True), weight.sum(axis=1, keepdims=True)

    def statistic(counts: list[np.ndarray]) -> np.ndarray:
        w = counts[-1]  # images are the last stratum (after seeds, see with_seed_level)
        loo, left_out = leave_one_out_rows(w)
        rest = np.setdiff1d(np.arange(len(w)), loo, assume_unique=True)
        total = np.empty((len(values), len(w)))
        n = np.empty_like(total)
        total[:, loo], n[:, loo] = sums - filled[:, left_out], defined_n - weight[:, left_out]
        total[:, rest], n[:, rest] = filled @ w[rest].T, weight @ w[rest].T
        with np.errstate(invalid="ignore", divide="ignore"):
            out = total / n
        out[poisoned] = np.nan
        return out

    return statistic


def leave_one_out_rows(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, left-out item) of the count rows that weigh every item once but one.

    BCa's jackknife asks for n of these per interval (more than the resamples); statistics answer them in closed
    form instead of as general weights. A bootstrap draw of this shape gets the same value either way.
    """
    n = weights.shape[1]
    rows = np.flatnonzero((weights.sum(axis=1) == n - 1) & (weights.max(axis=1) == 1))
    return rows, np.argmin(weights[rows], axis=1)


def with_seed_level(per_seed: Callable[[list[np.ndarray]], np.ndarray], n_seeds: int) -> CountStatistic:
    """Two-level statistic: resample seeds, then images; the cell's value is the mean over the drawn seeds.

    ``per_seed(image_counts) -> (K, S, B)`` computes each seed's statistic under image counts. Seeds are the first
    stratum. The test images are the *same* images for every seed (a crossed design, not seeds nested in images),
    so one image draw applies to all seeds of a resample: an image's difficulty is shared by every seed, and
    drawing it independently per seed would shrink the image variance by the number of seeds.
    """

    def statistic(counts: list[np.ndarray]) -> np.ndarray:
        seed_counts, image_counts = counts[0], counts[1:]
        per = per_seed(image_counts)  # (K, S, B)
        return np.einsum("ksb,bs->kb", per, seed_counts) / n_seeds

    return statistic


def per_seed_means(values: np.ndarray, skip_nan: bool | np.ndarray = True) -> Callable[[list[np.ndarray]], np.ndarray]:
    """``per_seed`` for :func:`with_seed_level`: count-weighted image means of ``values`` (K, S, n)."""
    k, s, n = values.shape
    flat = weighted_means(values.reshape(k * s, n), np.repeat(np.broadcast_to(np.asarray(skip_nan, bool), (k,)), s))
    return lambda image_counts: flat(image_counts).reshape(k, s, -1)
