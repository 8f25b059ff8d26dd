"""Mutants of issue 20's statistics (area ``intervals``): realistic slips in resampling, pooling, tests and Holm.

Kept in their own file while issue 18 restructures the rest; ``mutants.py`` appends them to ``MUTANTS`` as
``Mutant(*fields)`` (id, area, what, file, old, new, tests), so this file imports nothing from it.
"""
from __future__ import annotations


def M(*fields: object) -> tuple:  # noqa: N802 - reads like mutants.py's table
    return fields


RESAMPLING = ("tests/pipeline/metrics/test_resampling.py",)
WEIGHTED = ("tests/pipeline/metrics/test_weighted.py",)
INTERVALS = ("tests/pipeline/report/test_intervals.py",)
TABLES = ("tests/pipeline/report/test_interval_tables.py",)
COMPARE = ("tests/pipeline/report/test_comparisons.py", "tests/pipeline/report/test_intervals.py")

INTERVAL_MUTANTS: list[tuple] = [
    M("I1", "intervals", "undefined images counted as zeros in the mean", "pipeline/metrics/resampling.py",
      "weight @ w[rest].T", "np.broadcast_to(w[rest].sum(axis=1), total[:, rest].shape)", RESAMPLING + TABLES),
    M("I2", "intervals", "constant cells left with scipy's nan BCa interval", "pipeline/metrics/resampling.py",
      "    low[constant] = high[constant] = value[constant]\n", "", RESAMPLING + INTERVALS),
    M("I3", "intervals", "jackknife closed form leaves out the wrong image", "pipeline/metrics/resampling.py",
      "return rows, np.argmin(weights[rows], axis=1)", "return rows, np.argmax(weights[rows], axis=1)",
      RESAMPLING),
    M("I4", "intervals", "two-level bootstrap never resamples seeds", "pipeline/metrics/resampling.py",
      'np.einsum("ksb,bs->kb", per, seed_counts)', 'np.einsum("ksb,bs->kb", per, np.ones_like(seed_counts))',
      INTERVALS),
    M("I5", "intervals", "Holm replaced by Bonferroni", "pipeline/report/comparisons.py",
      "(m - np.arange(m)) * p[order]", "m * p[order]", COMPARE),
    M("I6", "intervals", "Holm adjusted p-values not made monotone", "pipeline/report/comparisons.py",
      "np.maximum.accumulate((m - np.arange(m)) * p[order])", "(m - np.arange(m)) * p[order]", COMPARE),
    M("I7", "intervals", "'tied with best' judged on raw p-values", "pipeline/report/comparisons.py",
      "np.where(adjusted >= alpha,", "np.where(p_values >= alpha,", COMPARE),
    M("I8", "intervals", "identical models left with scipy's nan p-value", "pipeline/report/comparisons.py",
      "    p[zero] = 1.0", "    p[zero] = np.nan", COMPARE),
    M("I9", "intervals", "seeds pooled by the first seed only", "pipeline/report/comparisons.py",
      "return values.mean(axis=0, keepdims=True)", "return values[:1]", COMPARE),
    M("I10", "intervals", "image AUC leave-one-out counts ties fully", "pipeline/metrics/weighted.py",
      "beats = (n - fp)[g] + 0.5 * r_g[g]", "beats = (n - fp)[g] + r_g[g]", WEIGHTED),
    M("I11", "intervals", "image AP leave-one-out counts the removed fake's group twice",
      "pipeline/metrics/weighted.py", "fake_tail = np.cumsum(fake_after[::-1])[::-1] - fake_after",
      "fake_tail = np.cumsum(fake_after[::-1])[::-1]", WEIGHTED),
    M("I12", "intervals", "pooled pixel curve thresholds ascending", "pipeline/metrics/weighted.py",
      "fake = weights @ hist[:, 0, ::-1]", "fake = weights @ hist[:, 0, :]", WEIGHTED + INTERVALS),
    M("I13", "intervals", "weighted accuracy divides by the image count", "pipeline/metrics/weighted.py",
      'out["image_acc"] = _divide(weights @ correct, weights.sum(axis=1))',
      'out["image_acc"] = _divide(weights @ correct, weights.shape[1])', WEIGHTED),
    M("I14", "intervals", "per-image tables aligned in file order, not by image id",
      "pipeline/report/interval_cells.py", 'labels = labels.sort_values("image_id", kind="stable")',
      "labels = labels", TABLES),
    M("I15", "intervals", "stale per-image tables accepted", "pipeline/report/intervals.py",
      "return both_nan | np.isclose(computed, stated, rtol=1e-6, atol=1e-9)",
      "return np.ones_like(computed, dtype=bool)", TABLES),
    M("I16", "intervals", "image metrics resample reals and fakes as one pool", "pipeline/report/interval_cells.py",
      "return per_seed, [len(real_at), len(fake_at)]",
      "return (lambda c: per_seed(np.split(c[0], [len(real_at)], axis=1))), [len(images.image_ids)]", TABLES),
    M("I17", "intervals", "seed standard deviation with ddof=0", "pipeline/report/intervals.py",
      "std=float(np.std(vals, ddof=1))", "std=float(np.std(vals, ddof=0))", INTERVALS),
]
