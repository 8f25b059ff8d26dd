"""P8: bootstrap intervals and paired comparisons for a grid the size of DeCLIP's ablation ÷ the 60 s target.

DeCLIP's ablation is about 480 cells (layers × decoders × backbones × train sets) evaluated on 4 test sets of
~2,000 images. Timed here, on synthetic per-image IoU (a shared image difficulty plus a per-cell quality, so the
cells are correlated as real ones are):

1. the 95 % BCa interval of every cell's per-image mean, 1,000 resamples, one shared draw per test set
   (:func:`pipeline.report.intervals.mean_intervals`);
4. every cell against the best of its test set: paired bootstrap interval of the mean per-image difference,
   Wilcoxon signed-rank p-value, Holm over the 479 others, "tied with best"
   (:func:`pipeline.report.comparisons.tied_with_best`).

Also printed, for information (not part of the target): the same intervals through the results-table path
(:func:`pipeline.report.intervals.add_intervals`: alignment of per-image tables on image ids included) for every
per-image metric of an evaluation (``--metrics``), and image AUC (two strata, one weighted ROC curve per cell).
Usage: python bench/p8_intervals.py [--cells 480] [--test-sets 4] [--images 2000] [--resamples 1000]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from common import report  # noqa: F401  (sets sys.path to the checkout)

TARGET_S = 60.0


def per_image_values(cells: int, images: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 25, images)
    quality = rng.normal(40, 2, (cells, 1))  # neighbouring DeCLIP cells differ by 1-3 IoU points
    return np.clip(quality + difficulty + rng.normal(0, 15, (cells, images)), 0, 100)


def items_1_and_4(values: dict[str, np.ndarray], opts) -> tuple[float, float, dict]:
    from declip.pipeline.report.comparisons import tied_with_best
    from declip.pipeline.report.intervals import mean_intervals

    t0 = time.perf_counter()
    rows = {name: mean_intervals(v, opts) for name, v in values.items()}
    t1 = time.perf_counter()
    ties = {}
    for name, v in values.items():
        best = int(np.argmax(v.mean(axis=1)))  # stands in for the choice on validation
        ties[name] = tied_with_best({f"cell{k}": v[k] for k in range(len(v))}, f"cell{best}", opts)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, {"rows": rows, "ties": ties}


def table_path(values: dict[str, np.ndarray], metrics: int, opts) -> tuple[float, int]:
    """add_intervals over per-image tables (``metrics`` per-image metric columns, plus image AUC)."""
    from declip.pipeline.report.intervals import add_intervals

    names = ["iou", "iou_empty0", "f1_fixed", "f1_fixed_trufor", "f1_best_trufor", "f1_inverted", "ap",
             "ap_positive_masks", "pixel_auc", "f1_best", "f1_best_inverted"][:metrics]
    frames, rows = {}, []
    rng = np.random.default_rng(1)
    for test_set, v in values.items():
        cells, n = v.shape
        n_real = n // 4
        ids = np.array([f"{test_set}/{i:05d}.png" for i in range(n + n_real)])
        labels = np.r_[np.ones(n, int), np.zeros(n_real, int)]
        for k in range(cells):
            cols = {m: np.r_[np.clip(v[k] + j, 0, 100), np.full(n_real, np.nan)] for j, m in enumerate(names)}
            score = np.r_[rng.uniform(0.3, 1, n), rng.uniform(0, 0.7, n_real)]
            df = pd.DataFrame({"image_id": ids, "label": labels, "image_score": score, **cols})
            frames[(f"run{k}", test_set)] = df
            for m in names:
                rows.append({"run_id": f"run{k}", "train_set": "a", "test_set": test_set, "split": "test",
                             "view": "clean", "dataset": "d", "metric": m, "value": float(cols[m][:n].mean())})
            rows.append({"run_id": f"run{k}", "train_set": "a", "test_set": test_set, "split": "test",
                         "view": "clean", "dataset": "d", "metric": "image_auc", "value": np.nan})
    results = pd.DataFrame(rows)
    start = time.perf_counter()
    out = add_intervals(results, lambda row: frames[(row["run_id"], row["test_set"])], opts)
    return time.perf_counter() - start, int(out["ci_low"].notna().sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=480)
    ap.add_argument("--test-sets", type=int, default=4)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--method", default="bca", choices=["bca", "percentile", "basic"])
    ap.add_argument("--metrics", type=int, default=11, help="per-image metrics in the table path (0 skips it)")
    args = ap.parse_args()

    from declip.pipeline.metrics.resampling import BootstrapOptions

    opts = BootstrapOptions(n_resamples=args.resamples, method=args.method)
    values = {f"test{t}": per_image_values(args.cells, args.images, t) for t in range(args.test_sets)}
    t_iv, t_cmp, out = items_1_and_4(values, opts)
    total = t_iv + t_cmp
    size = f"{args.cells} cells × {args.test_sets} test sets × {args.images} images, {args.resamples} resamples"
    print(f"P8: intervals and comparisons, {size} ({args.method})")
    print(f"  1. interval of every cell's per-image mean         {t_iv:10.2f} s")
    print(f"  4. paired comparisons with the best, Holm, ties     {t_cmp:10.2f} s")
    print(f"  items 1 + 4                                         {total:10.2f} s")
    print(f"  ratio to the {TARGET_S:.0f} s target                            {total / TARGET_S:10.3f}  (target ≤ 1)")
    tied = np.mean([(t["status"] == "tied with best").sum() for t in out["ties"].values()])
    print(f"  (on this synthetic grid: {tied:.0f} of {args.cells - 1} cells tied with the best per test set)")
    if args.metrics:
        t_table, n_rows = table_path(values, args.metrics, opts)
        print(f"  for information: results-table path, {args.metrics} per-image metrics + image AUC per evaluation "
              f"({n_rows} rows with intervals): {t_table:.2f} s")


if __name__ == "__main__":
    main()
