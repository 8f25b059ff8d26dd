"""The count-weighted bootstrap: the same numbers scipy.stats.bootstrap gives on the raw values, cells paired."""
import numpy as np
import pytest
from scipy import stats

from declip.core.errors import DeclipError
from declip.pipeline.metrics.resampling import (BootstrapOptions, bootstrap_counts, counts_from_indices,
                                                per_seed_means, weighted_means, with_seed_level)


def iou_like(rng, shape):
    """Skewed, bounded per-image values with many zeros, like per-image IoU in percent."""
    return np.where(rng.random(shape) < 0.3, 0.0, rng.beta(2, 1, shape) * 100)


@pytest.mark.parametrize("method", ["bca", "percentile", "basic"])
def test_many_cells_equal_scipy_on_the_raw_values_of_each_cell(method):
    rng = np.random.default_rng(1)
    values = iou_like(rng, (5, 120))
    opts = BootstrapOptions(n_resamples=400, method=method, seed=7, batch=64)
    got = bootstrap_counts(weighted_means(values), [values.shape[1]], opts)
    for k, row in enumerate(values):  # oracle: scipy resampling the values themselves, same generator
        ref = stats.bootstrap((row,), np.mean, n_resamples=400, method=method, batch=64,
                              rng=np.random.default_rng(7))
        assert got.value[k] == pytest.approx(row.mean(), rel=1e-12)
        assert got.low[k] == pytest.approx(ref.confidence_interval.low, rel=1e-9)
        assert got.high[k] == pytest.approx(ref.confidence_interval.high, rel=1e-9)
    assert got.distribution.shape == (5, 400) and got.resamples == 400 and got.method == method


def test_cells_share_draws_so_a_cell_alone_gets_the_same_interval():
    values = iou_like(np.random.default_rng(2), (4, 80))
    opts = BootstrapOptions(n_resamples=300, seed=3)
    together = bootstrap_counts(weighted_means(values), [80], opts)
    alone = bootstrap_counts(weighted_means(values[2:3]), [80], opts)
    np.testing.assert_allclose(together.distribution[2], alone.distribution[0], rtol=1e-12)
    # paired: the difference of two cells' resampled means is the resampled mean of their difference
    diff = bootstrap_counts(weighted_means(values[:1] - values[1:2]), [80], opts)
    np.testing.assert_allclose(together.distribution[0] - together.distribution[1], diff.distribution[0], atol=1e-9)


def test_seed_changes_the_draws_and_batching_does_not():
    values = iou_like(np.random.default_rng(4), (1, 60))
    a = bootstrap_counts(weighted_means(values), [60], BootstrapOptions(n_resamples=200, seed=1, batch=200))
    b = bootstrap_counts(weighted_means(values), [60], BootstrapOptions(n_resamples=200, seed=1, batch=7))
    c = bootstrap_counts(weighted_means(values), [60], BootstrapOptions(n_resamples=200, seed=2))
    np.testing.assert_allclose(a.distribution, b.distribution, rtol=1e-12)
    assert not np.allclose(a.distribution, c.distribution)


def test_undefined_images_are_skipped_or_poison_the_mean_as_the_registry_says():
    values = np.array([[10.0, np.nan, 30.0, 50.0, 70.0, 90.0]] * 2)
    iv = bootstrap_counts(weighted_means(values, skip_nan=np.array([True, False])), [6],
                          BootstrapOptions(n_resamples=200))
    assert iv.value[0] == pytest.approx(50.0)  # (10+30+50+70+90)/5
    assert np.isnan(iv.value[1]) and np.isnan(iv.low[1]) and np.isnan(iv.high[1])
    assert iv.low[0] < 50.0 < iv.high[0]


def test_a_constant_cell_has_a_zero_width_interval_not_nan():
    values = np.array([[0.0] * 30, [100.0] * 30, np.linspace(0, 100, 30)])
    for method in ("bca", "percentile"):
        iv = bootstrap_counts(weighted_means(values), [30], BootstrapOptions(n_resamples=200, method=method))
        assert (iv.low[0], iv.high[0]) == (0.0, 0.0) and (iv.low[1], iv.high[1]) == (100.0, 100.0)
        assert iv.low[2] < 50 < iv.high[2]


def test_counts_from_indices_is_a_row_wise_histogram():
    idx = np.array([[0, 0, 2], [1, 2, 2]])
    np.testing.assert_array_equal(counts_from_indices(idx, 4), [[2, 0, 1, 0], [0, 1, 2, 0]])


def test_two_level_value_is_the_mean_of_seed_means_and_strata_are_drawn_separately():
    rng = np.random.default_rng(5)
    values = iou_like(rng, (2, 3, 50))  # 2 cells, 3 seeds, 50 images
    stat = with_seed_level(per_seed_means(values), 3)
    iv = bootstrap_counts(stat, [3, 50], BootstrapOptions(n_resamples=300))
    np.testing.assert_allclose(iv.value, values.mean(axis=(1, 2)), rtol=1e-12)
    # resampling seeds only (every image once) reproduces scipy's bootstrap of the three seed means
    seed_means = values.mean(axis=2)
    only_seeds = bootstrap_counts(lambda c: np.einsum("ks,bs->kb", seed_means, c[0]) / 3, [3],
                                  BootstrapOptions(n_resamples=300, method="percentile", seed=9))
    ref = stats.bootstrap((seed_means[0],), np.mean, n_resamples=300, method="percentile",
                          rng=np.random.default_rng(9))
    assert only_seeds.low[0] == pytest.approx(ref.confidence_interval.low, rel=1e-9)


@pytest.mark.parametrize("bad", [{"n_resamples": 0}, {"method": "normal"}, {"confidence": 1.0}, {"confidence": 0},
                                 {"batch": 0}, {"seed": -1}])
def test_bad_options_fail_at_once_naming_the_field(bad):
    with pytest.raises(DeclipError, match=next(iter(bad))):
        BootstrapOptions(**bad)
