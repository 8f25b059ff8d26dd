"""Differences you can believe (issue 20): coverage, seeds, pairing, Holm, "tied with best", pooled AP.

Oracles: known means of seeded synthetic data, hand-computed Holm values, scikit-learn's AP.
"""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from declip.pipeline.metrics.resampling import BootstrapOptions
from declip.pipeline.metrics.weighted import pixel_histograms
from declip.pipeline.report.comparisons import holm, mark_tied, paired_comparison, tied_with_best, unpaired_comparison
from declip.pipeline.report.intervals import add_intervals, mean_intervals, pooled_pixel_intervals, seed_summary

TRUE_MEAN = 0.7 * 100 * 2 / 3  # 30 % zeros, else 100·Beta(2, 1) (mean 2/3)


def iou_like(rng, shape):
    return np.where(rng.random(shape) < 0.3, 0.0, rng.beta(2, 1, shape) * 100)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_interval_of_a_mean_covers_the_true_mean_about_95_percent_of_the_time(method):
    covered = 0
    for rep in range(200):
        values = iou_like(np.random.default_rng(1000 + rep), 100)
        row = mean_intervals(values, BootstrapOptions(n_resamples=1000, method=method, seed=rep)).iloc[0]
        covered += row["ci_low"] <= TRUE_MEAN <= row["ci_high"]
        assert row["n_images"] == 100 and row["ci_resamples"] == 1000 and row["ci_method"] == method
    assert 0.90 <= covered / 200 <= 0.99


def frame(ids, values, fake=None):
    fake = np.ones(len(ids), bool) if fake is None else fake
    return pd.DataFrame({"image_id": ids, "label": fake.astype(int), "image_score": np.where(fake, 0.7, 0.3),
                         "iou": np.where(fake, values, np.nan)})


def seeds_table(offsets, noise, n=300, seed=0):
    """One model, one seed per offset: per-image IoU = shared image difficulty + the seed's offset + noise."""
    rng = np.random.default_rng(seed)
    ids = [f"img{i:04d}.png" for i in range(n)]
    difficulty = rng.normal(50, 20, n)
    frames, rows = {}, []
    for s, offset in enumerate(offsets):
        values = difficulty + offset + rng.normal(0, noise, n)
        frames[f"run-{s}"] = frame(ids, values)
        rows.append({"run_id": f"run-{s}", "seed": s, "source": "vit/layer4", "decoder": "linear", "train_set": "a",
                     "test_set": "b", "split": "test", "view": "clean", "dataset": "d", "metric": "iou",
                     "level": "image-pixel", "value": float(np.mean(values))})
    return pd.DataFrame(rows), (lambda row: frames[row["run_id"]])


def widths(offsets, noise):
    results, load = seeds_table(offsets, noise)
    opts = BootstrapOptions(n_resamples=1000)
    one_seed = add_intervals(results, load, opts)
    both = seed_summary(results, load, opts).iloc[0]
    assert both["interval"] == "seeds, then images" and both["n_seeds"] == len(offsets)
    assert both["mean"] == pytest.approx(results["value"].mean())
    assert both["ci_low"] < both["mean"] < both["ci_high"]
    return both["ci_high"] - both["ci_low"], float((one_seed["ci_high"] - one_seed["ci_low"]).mean()), both


def test_two_level_interval_is_wider_when_seeds_disagree():
    two_level, image_only, row = widths(offsets=[-6.0, 0.0, 6.0], noise=3.0)
    assert two_level > 1.5 * image_only
    assert row["std"] == pytest.approx(6.0, rel=0.1)  # the spread of the seed offsets


def test_two_level_interval_is_about_the_image_interval_when_seeds_agree():
    two_level, image_only, row = widths(offsets=[0.0, 0.0, 0.0], noise=0.3)
    assert 0.8 < two_level / image_only < 1.25
    assert row["std"] < 0.2


def correlated_pair(n=300, seed=0):
    rng = np.random.default_rng(seed)
    a = iou_like(rng, n)
    return a, a + 1.0 + rng.normal(0, 0.5, n)  # a constant one-point shift on the same images


def test_a_one_point_shift_is_significant_paired_and_not_unpaired():
    a, b = correlated_pair()
    paired = paired_comparison(b, a)
    assert paired.difference[0] == pytest.approx(np.mean(b - a))
    assert 0 < paired.ci_low[0] < 1 < paired.ci_high[0] < 2 and paired.p_value[0] < 1e-6
    unpaired = unpaired_comparison(b, a)
    assert unpaired.difference[0] == pytest.approx(np.mean(b - a))
    assert unpaired.ci_low[0] < 0 < unpaired.ci_high[0] and unpaired.p_value[0] > 0.05


@pytest.mark.parametrize("test", ["wilcoxon", "permutation"])
def test_a_model_compared_with_itself_differs_by_zero_with_p_one(test):
    a, _ = correlated_pair()
    same = paired_comparison(a, a.copy(), test=test, permutations=999)
    assert (same.difference[0], same.ci_low[0], same.ci_high[0], same.p_value[0]) == (0.0, 0.0, 0.0, 1.0)


def test_holm_on_hand_cases():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])  # 1.2 and 0.7 -> capped, then monotone
    np.testing.assert_allclose(holm([0.5, np.nan, 0.2]), [0.5, np.nan, 0.4])  # nan is not a comparison
    np.testing.assert_allclose(holm([0.04]), [0.04])


def test_tied_with_best_uses_holm_adjusted_p_values():
    # every raw p is below 0.05, so without Holm nothing would be tied
    adjusted, status = mark_tied(np.array([-2.0, -1.0, -1.5, 3.0]), np.array([0.01, 0.04, 0.03, 0.005]))
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    assert list(status) == ["below best", "tied with best", "tied with best", "above best"]


def test_tied_with_best_on_a_hand_built_table():
    rng = np.random.default_rng(3)
    best = iou_like(rng, 200)
    jitter = np.tile([0.5, -0.5], 100)  # symmetric around zero: no shift at all
    table = pd.DataFrame({"best": best, "same": best.copy(), "jittered": best + jitter, "worse": best - 5 + jitter})
    seeds = np.stack([best + 0.2, best - 0.2])  # two seeds whose per-image mean is the best's values
    out = tied_with_best({**{c: table[c].to_numpy() for c in table}, "two seeds": seeds}, "best",
                         BootstrapOptions(n_resamples=500)).set_index("model")
    assert out.loc["best", "status"] == "best"
    assert out.loc["same", "status"] == "tied with best" and out.loc["same", "p_value"] == 1.0
    assert out.loc["jittered", "status"] == "tied with best" and out.loc["jittered", "difference"] == pytest.approx(0)
    assert out.loc["two seeds", "status"] == "tied with best"
    assert out.loc["worse", "status"] == "below best" and out.loc["worse", "difference"] == pytest.approx(-5)
    assert out.loc["worse", "ci_low"] < -5 < out.loc["worse", "ci_high"] < 0


def test_pooled_pixel_ap_interval_contains_sklearn_ap_of_all_pixels():
    rng = np.random.default_rng(8)
    probs, masks = [], []
    for _ in range(40):
        gt = np.zeros((24, 32), bool)
        y, x = rng.integers(0, 14, 2)
        gt[y:y + rng.integers(4, 10), x:x + rng.integers(4, 16)] = True
        probs.append(np.round(np.clip(rng.uniform(0.1, 0.6) * gt + 0.7 * rng.random(gt.shape), 0, 1) * 255) / 255)
        masks.append(gt)
    hist = np.stack([pixel_histograms(p, g) for p, g in zip(probs, masks)])
    row = pooled_pixel_intervals(hist, "pooled_pixel_ap", BootstrapOptions(n_resamples=500)).iloc[0]
    full = average_precision_score(np.concatenate([g.ravel() for g in masks]),
                                   np.concatenate([p.ravel() for p in probs]))
    assert row["value"] == pytest.approx(full, abs=1e-12)
    assert row["ci_low"] < full < row["ci_high"] and row["n_images"] == 40
    assert row["ci_high"] - row["ci_low"] > 0.01  # image-to-image spread, not the (tiny) pixel-level one
