"""Paired comparisons from per-image tables (``declip compare``): alignment, pooled seeds, scipy's own numbers."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from declip.pipeline.metrics.resampling import BootstrapOptions
from declip.pipeline.report.comparisons import align_models, compare_tables, paired_comparison, tied_with_best

OPTS = BootstrapOptions(n_resamples=300, seed=4)


def table(seed, shift=0.0, n=60):
    rng = np.random.default_rng(seed)
    ids = [f"fake/{i:03d}.png" for i in range(n)] + [f"real/{i:03d}.png" for i in range(10)]
    base = np.random.default_rng(99).uniform(0, 100, n)  # the images' shared difficulty
    iou = np.clip(base + shift + rng.normal(0, 4, n), 0, 100)
    df = pd.DataFrame({"image_id": ids, "label": [1] * n + [0] * 10, "iou": np.r_[iou, [np.nan] * 10],
                       "image_score": rng.random(n + 10)})
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def fakes(df):
    return df[df["label"] == 1].sort_values("image_id")["iou"].to_numpy()


def test_compare_tables_pools_seeds_per_image_and_matches_scipy_on_the_differences():
    a = [table(1, shift=3.0), table(2, shift=3.0)]  # model A, two seeds
    b = [table(3)]
    got = compare_tables(a, b, "iou", OPTS)
    diff = (fakes(a[0]) + fakes(a[1])) / 2 - fakes(b[0])
    ref = stats.bootstrap((diff,), np.mean, n_resamples=300, rng=np.random.default_rng(4))
    assert got.difference[0] == pytest.approx(diff.mean())
    assert (got.ci_low[0], got.ci_high[0]) == pytest.approx(tuple(ref.confidence_interval), rel=1e-9)
    assert got.p_value[0] == pytest.approx(stats.wilcoxon(diff).pvalue)
    assert got.n_images[0] == 60 and got.ci_low[0] > 0


def test_undefined_images_leave_only_their_own_comparison():
    a = np.stack([fakes(table(1, 2.0)), fakes(table(2, 2.0))])
    b = np.stack([fakes(table(3)), fakes(table(4))])
    a[1, :5] = np.nan
    got = paired_comparison(a[:, None], b[:, None], OPTS)
    keep = ~np.isnan(a[1])
    assert got.n_images.tolist() == [60, 55]
    assert got.difference[1] == pytest.approx(np.mean(a[1][keep] - b[1][keep]))
    assert got.p_value[1] == pytest.approx(stats.wilcoxon(a[1][keep] - b[1][keep]).pvalue)
    assert got.p_value[0] == pytest.approx(stats.wilcoxon(a[0] - b[0]).pvalue)


def test_permutation_p_value_is_scipy_s_sign_flip_test():
    a, b = fakes(table(5, 1.0)), fakes(table(6))
    got = paired_comparison(a, b, OPTS, test="permutation", permutations=499)
    ref = stats.permutation_test(((a - b),), np.mean, permutation_type="samples", n_resamples=499,
                                 rng=np.random.default_rng(4))
    assert got.p_value[0] == pytest.approx(ref.pvalue)


def test_dataset_level_metrics_and_unknown_tests_are_refused():
    with pytest.raises(ValueError, match="image_auc.*per-image metric"):
        compare_tables([table(1)], [table(2)], "image_auc", OPTS)
    with pytest.raises(ValueError, match="unknown test 'ttest'"):
        paired_comparison(fakes(table(1)), fakes(table(2)), OPTS, test="ttest")


def test_tied_with_best_from_per_image_tables_of_several_models():
    frames = {"best": [table(1, 5.0), table(2, 5.0)], "close": [table(3, 4.8)], "far": [table(4, -10.0)]}
    values = align_models(frames, "iou")
    assert values["best"].shape == (2, 60) and values["close"].shape == (1, 60)
    np.testing.assert_allclose(values["far"][0], fakes(frames["far"][0]))
    out = tied_with_best(values, "best", OPTS).set_index("model")
    assert out.loc["close", "status"] == "tied with best" and out.loc["far", "status"] == "below best"
    assert out.loc["far", "p_holm"] == pytest.approx(min(1.0, 2 * out.loc["far", "p_value"]))
