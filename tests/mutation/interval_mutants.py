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

RESULTS_FILE = ("tests/pipeline/report/test_results_file.py",)
MODEL_INTERVALS = ("tests/pipeline/report/test_model_intervals.py",)
HEADLINE = ("tests/pipeline/report/test_headline.py",)
FIGURES = ("tests/pipeline/report/test_report_figures.py",)
COMPARE_MODELS = ("tests/pipeline/report/test_compare_models.py",)
BASELINES = ("tests/pipeline/evaluate/test_baselines.py",)

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
      "pipeline/report/interval_cells.py", 'order = np.argsort(ids, kind="stable")',
      "order = np.arange(len(ids))", TABLES),
    M("I15", "intervals", "stale per-image tables accepted", "pipeline/report/intervals.py",
      "return both_nan | np.isclose(computed, stated, rtol=1e-6, atol=1e-9)",
      "return np.ones_like(computed, dtype=bool)", TABLES),
    M("I16", "intervals", "image metrics resample reals and fakes as one pool", "pipeline/report/interval_cells.py",
      "return per_seed, [len(real_at), len(fake_at)]",
      "return (lambda c: per_seed(np.split(c[0], [len(real_at)], axis=1))), [len(images.image_ids)]", TABLES),
    M("I17", "intervals", "seed standard deviation with ddof=0", "pipeline/report/intervals.py",
      "std=float(np.std(vals, ddof=1))", "std=float(np.std(vals, ddof=0))", INTERVALS),
    M("I18", "intervals", "a row without a per-image table gets no note", "pipeline/report/intervals.py",
      'columns.note[i] = "no per-image table for this evaluation"', "pass", TABLES),
    M("I19", "intervals", "an interval's image count not written", "pipeline/report/intervals.py",
      "self.method[good], self.resamples[good], self.n_images[good] = iv.method, iv.resamples, n",
      "self.method[good], self.resamples[good] = iv.method, iv.resamples", INTERVALS + TABLES),
    # ---- the statistics wired into results, report, compare and the demo's summary (area "report")
    M("RP1", "report", "the positive control crowned best", "pipeline/report/selection.py",
      'scores = scores[~scores["control"]]', "scores = scores", HEADLINE),
    M("RP2", "report", "an interval carried over although the row's value changed", "pipeline/report/results_file.py",
      'key = [c for c in (*ROW_KEY, "value") if c in table]', "key = [c for c in ROW_KEY if c in table]",
      RESULTS_FILE),
    M("RP3", "report", "several seeds bootstrapped as the first seed alone", "pipeline/report/model_intervals.py",
      "    if n_seeds > 1:", "    if n_seeds > 99:", MODEL_INTERVALS),
    M("RP4", "report", "a heat-map cell hatched for one collapsed evaluation", "pipeline/report/heatmaps.py",
      "        if bad and bad == total:", "        if bad:", FIGURES),
    M("RP5", "report", "heat-map colours on a fixed 0-100 scale", "pipeline/report/heatmaps.py",
      "        vmin, vmax = fitted_range(values)", "        vmin, vmax = 0.0, 100.0", FIGURES),
    M("RP6", "report", "ties on validation ignored: one model crowned", "pipeline/report/ties.py",
      'return [(str(s), str(d)) for s, d in zip(tied["source"], tied["decoder"])]', "return []", HEADLINE),
    M("RP7", "report", "a model below a constant map not said so", "pipeline/report/summary.py",
      "            if margin < 0:", "            if margin < -100:", HEADLINE),
    M("RP8", "report", "a pivot's column name left as an empty first column", "pipeline/report/page.py",
      "    out.columns.name = None", "    pass", HEADLINE),
    M("RP9", "report", "per-image FP and FN swapped", "pipeline/metrics/registry.py",
      'COUNT_COLUMNS = ("tp", "fp", "fn")', 'COUNT_COLUMNS = ("tp", "fn", "fp")',
      ("tests/pipeline/metrics/test_metrics.py",)),
    M("RP10", "report", "baselines without per-image tables never recomputed", "pipeline/grid/baseline_table.py",
      "                       or not all(", "                       and not all(",
      ("tests/pipeline/grid/test_baseline_table.py",)),
    M("RP11", "report", "compare prints B − A", "pipeline/report/compare_models.py",
      "        cmp = compare_tables(fa, fb, metric, options)", "        cmp = compare_tables(fb, fa, metric, options)",
      COMPARE_MODELS),
    M("RP12", "report", "control passes on point values, not on intervals", "pipeline/report/controls.py",
      "        return bool(self.low > self.baseline_high)", "        return bool(self.value > self.baseline_value)",
      HEADLINE),
    M("RP13", "report", "the cost plan's evaluation time ignores seeds (issue 21 item 14)",
      "pipeline/grid/cost_plan.py", "e = work.seeds * work.rows_scored * fwd",
      "e = work.rows_scored * fwd", ("tests/pipeline/grid/test_cost_plan.py",)),
    M("RP14", "report", "random-layer check on two collapsed heads (passes vacuously)", "pipeline/report/controls.py",
      "key=lambda p: share.get(p[0], 0.0) + share.get(p[1], 0.0)", "key=lambda p: 0.0", HEADLINE),
    M("RP15", "report", "a grid folder read as one parquet dataset", "pipeline/report/results_file.py",
      'return path / "results.parquet" if path.is_dir() else path', "return path", RESULTS_FILE),
    M("RP16", "report", "every model line of the layer figure in one colour", "pipeline/report/figures.py",
      "colour = rows.sort_values(\"depth\"), MODEL_COLOURS[k % len(MODEL_COLOURS)]",
      "colour = rows.sort_values(\"depth\"), \"C0\"", FIGURES),
    M("RP17", "report", "a model's seeds pooled before their spread is taken", "pipeline/report/model_intervals.py",
      'return part["value"].groupby(seeds).mean()', 'return part["value"].groupby(np.zeros(len(part))).mean()',
      MODEL_INTERVALS),
    M("RP18", "report", "every baseline image scored against the first test image's mask",
      "pipeline/evaluate/baselines.py", "gt = store.native_mask(dataset, row, size) if labels[row] == 1 else None",
      "gt = store.native_mask(dataset, int(rows[0]), size) if labels[row] == 1 else None", BASELINES),
]
