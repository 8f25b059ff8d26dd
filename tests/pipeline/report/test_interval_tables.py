"""Intervals on a results table from its per-image tables: alignment, shared draws, pooled and image metrics, notes.

Oracles: scipy.stats.bootstrap run directly on each row's values (sorted by image id, the same generator), and
scikit-learn for the image-level metric values.
"""
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from declip.core.errors import DeclipError
from declip.pipeline.metrics.resampling import BootstrapOptions
from declip.pipeline.report.intervals import INTERVAL_COLUMNS, add_intervals, read_per_image, seed_summary

OPTS = BootstrapOptions(n_resamples=300, seed=5)
N_FAKE, N_REAL = 40, 25


def per_image(seed, quality):
    """A shuffled per-image table: fakes (pixel metrics, TP/FP/FN) and reals (image score only)."""
    rng = np.random.default_rng(seed)
    n = N_FAKE + N_REAL
    fake = np.arange(n) < N_FAKE
    iou = np.clip(rng.normal(quality, 25, n), 0, 100)
    ap = rng.random(n)
    ap[[3, 17]] = np.nan  # two masks without positives: undefined, skipped
    f1_best = rng.random(n)
    tp, fp, fn = (rng.integers(0, 500, n) for _ in range(3))
    df = pd.DataFrame({"image_id": [f"{'fake' if f else 'real'}/{i:03d}.png" for i, f in enumerate(fake)],
                       "label": fake.astype(int), "image_score": np.clip(0.2 * fake + rng.random(n) * 0.8, 0, 1),
                       "iou": np.where(fake, iou, np.nan), "ap_positive_masks": np.where(fake, ap, np.nan),
                       "f1_best": np.where(fake, f1_best, np.nan), "tp": tp, "fp": fp, "fn": fn})
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # evaluation order is not image-id order


def sorted_fakes(df, column):
    return df[df["label"] == 1].sort_values("image_id")[column].to_numpy(dtype=float)


def results_for(frames):
    """Results rows whose values are computed here, independently of the code under test."""
    rows = []
    for (run, test_set), df in frames.items():
        fakes = df[df["label"] == 1]
        values = {"iou": fakes["iou"].mean(), "ap_positive_masks": fakes["ap_positive_masks"].mean(),
                  "f1_best": fakes["f1_best"].to_numpy().mean(),
                  "image_auc": roc_auc_score(df["label"], df["image_score"]),
                  "pooled_iou": 100 * fakes["tp"].sum() / fakes[["tp", "fp", "fn"]].to_numpy().sum()}
        for metric, value in values.items():
            rows.append({"run_id": run, "train_set": "a", "test_set": test_set, "split": "test", "view": "clean",
                         "dataset": "d", "seed": 0, "decoder": run, "metric": metric, "value": float(value)})
    return pd.DataFrame(rows)


@pytest.fixture
def grid():
    frames = {(f"run{r}", t): per_image(10 * r + i, quality=30 + 10 * r) for r in range(3)
              for i, t in enumerate(["b", "c"])}
    frames[("run2", "c")].loc[0, "f1_best"] = np.nan  # DeCLIP's F1_best: one nan image makes the mean nan
    return frames, results_for(frames)


def load_from(frames):
    return lambda row: frames.get((row["run_id"], row["test_set"]))


def test_every_row_gets_scipy_s_interval_of_its_own_values(grid):
    frames, results = grid
    out = add_intervals(results, load_from(frames), OPTS)
    assert set(INTERVAL_COLUMNS) <= set(out.columns) and len(out) == len(results)
    for metric, n in (("iou", N_FAKE), ("ap_positive_masks", N_FAKE)):
        for (run, test_set), df in frames.items():
            row = out[(out["run_id"] == run) & (out["test_set"] == test_set) & (out["metric"] == metric)].iloc[0]
            values = sorted_fakes(df, metric)
            ref = stats.bootstrap((values,), np.nanmean, n_resamples=300, rng=np.random.default_rng(5))
            assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(ref.confidence_interval), rel=1e-9)
            assert row["n_images"] == n and row["ci_method"] == "bca" and row["ci_resamples"] == 300
            assert row["ci_note"] == ""


def test_image_metrics_resample_reals_and_fakes_separately(grid):
    frames, results = grid
    out = add_intervals(results, load_from(frames), BootstrapOptions(n_resamples=200, method="percentile", seed=2))
    df = frames[("run1", "b")]
    ordered = df.sort_values("image_id")
    real, fake = (ordered.loc[ordered["label"] == lab, "image_score"].to_numpy() for lab in (0, 1))

    def auc(r, f):
        return roc_auc_score(np.r_[np.zeros(len(r)), np.ones(len(f))], np.r_[r, f])

    ref = stats.bootstrap((real, fake), auc, n_resamples=200, method="percentile", vectorized=False, batch=100,
                          rng=np.random.default_rng(2))  # with two strata scipy's draws depend on the batch
    row = out[(out["run_id"] == "run1") & (out["test_set"] == "b") & (out["metric"] == "image_auc")].iloc[0]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(ref.confidence_interval), rel=1e-9)
    assert row["n_images"] == N_FAKE + N_REAL


def test_pooled_rows_resample_images_and_propagating_metrics_stay_undefined(grid):
    frames, results = grid
    out = add_intervals(results, load_from(frames), OPTS)
    pooled = out[out["metric"] == "pooled_iou"]
    assert (pooled["ci_low"] < pooled["value"]).all() and (pooled["value"] < pooled["ci_high"]).all()
    f1 = out[out["metric"] == "f1_best"].set_index(["run_id", "test_set"])
    assert np.isnan(f1.loc[("run2", "c"), "ci_low"]) and f1.loc[("run2", "c"), "ci_note"] == "value undefined"
    assert np.isfinite(f1.loc[("run1", "c"), "ci_low"])
    # older per-image tables have no TP/FP/FN: the pooled row says so instead of guessing
    old = {k: v.drop(columns=["tp", "fp", "fn"]) for k, v in frames.items()}
    notes = add_intervals(results, load_from(old), OPTS).query("metric == 'pooled_iou'")["ci_note"]
    assert notes.str.contains("tp/fp/fn").all()


def test_rows_of_one_image_set_share_draws_and_test_sets_do_not_mix(grid):
    frames, results = grid
    out = add_intervals(results, load_from(frames), OPTS)
    only_b = add_intervals(results[results["test_set"] == "b"], load_from(frames), OPTS)
    one_run = add_intervals(results[(results["run_id"] == "run0")], load_from(frames), OPTS)
    key = ["run_id", "test_set", "metric"]
    merged = out.merge(only_b, on=key).merge(one_run[key + ["ci_low"]], on=key)
    assert len(merged) == 5
    np.testing.assert_allclose(merged["ci_low_x"], merged["ci_low_y"], rtol=1e-12)
    np.testing.assert_allclose(merged["ci_low_x"], merged["ci_low"], rtol=1e-12)


def test_stale_or_missing_per_image_tables_get_a_note_not_an_interval(grid):
    frames, results = grid
    stale = dict(frames)
    stale[("run0", "b")] = frames[("run0", "b")].assign(iou=lambda d: d["iou"] + 1)
    del stale[("run1", "c")]
    out = add_intervals(results, load_from(stale), OPTS).set_index(["run_id", "test_set", "metric"])
    assert "stale" in out.loc[("run0", "b", "iou"), "ci_note"] and np.isnan(out.loc[("run0", "b", "iou"), "ci_low"])
    assert np.isfinite(out.loc[("run0", "b", "ap_positive_masks"), "ci_low"])  # the other columns still agree
    assert out.loc[("run1", "c", "iou"), "ci_note"] == "no per-image table for this evaluation"
    assert np.isfinite(out.loc[("run1", "b", "iou"), "ci_low"])


def test_results_of_older_grids_without_view_split_or_dataset_columns(grid):
    frames, results = grid
    old = results.drop(columns=["view", "split", "dataset"])
    out = add_intervals(old, lambda row: frames[(row["run_id"], row["test_set"])], OPTS)
    assert out["ci_low"].notna().sum() == out["value"].notna().sum()


def test_seed_summary_with_one_seed_is_the_image_interval(grid):
    frames, results = grid
    rows = add_intervals(results, load_from(frames), OPTS)
    summary = seed_summary(results, load_from(frames), OPTS)
    assert len(summary) == len(results) and (summary["interval"].isin(["images (one seed)", ""])).all()
    joined = summary.merge(rows, on=["decoder", "test_set", "metric"])
    np.testing.assert_allclose(joined["ci_low_x"], joined["ci_low_y"], rtol=1e-12)
    assert summary["std"].isna().all()


def test_read_per_image_missing_damaged_and_foreign_files(tmp_path):
    assert read_per_image(tmp_path / "per_image.parquet") is None
    bad = tmp_path / "bad" / "per_image.parquet"
    bad.parent.mkdir()
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(DeclipError, match="bad/per_image.parquet.*re-run"):
        read_per_image(bad)
    foreign = tmp_path / "per_image.csv"
    pd.DataFrame({"x": [1]}).to_csv(foreign, index=False)
    with pytest.raises(DeclipError, match="image_id, label"):
        read_per_image(foreign)
    good = tmp_path / "good.parquet"
    per_image(0, 40).to_parquet(good)
    assert len(read_per_image(good)) == N_FAKE + N_REAL
