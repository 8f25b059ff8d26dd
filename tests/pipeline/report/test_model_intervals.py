"""Intervals of the report's numbers: a model's mean over cells (each test set's images resampled on their own) and
over seeds (seeds, then images). Oracle: scipy.stats.bootstrap on the per-image values, one sample per test set."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from declip.pipeline.metrics.resampling import BootstrapOptions
from declip.pipeline.report.grid_files import PerImageTables
from declip.pipeline.report.model_intervals import group_intervals, with_domain
from declip.pipeline.report.results_file import load_results

from tests.pipeline.report.grid_builder import sorted_fakes, write_grid

OPTS = BootstrapOptions(n_resamples=400, method="percentile", seed=7)
LAYER = ("vit@random-0/layer2", "linear")


def _test_iou(results):
    table = pd.read_parquet(results)
    return with_domain(table[(table["split"] == "test") & ~table["decoder"].str.startswith("baseline")])


def test_a_domain_mean_resamples_each_test_set_on_its_own(tmp_path):
    results = write_grid(tmp_path, {LAYER: 40.0}, n_fake=20, splits=("test",))
    rows = _test_iou(results)
    out = group_intervals(rows, ["source", "decoder", "domain"], PerImageTables(results.parent), OPTS)
    ind = out[out["domain"] == "in-domain"].iloc[0]
    a, b = (sorted_fakes(results.parent, f"run-0-{t}-s0", t) for t in ("a", "b"))  # in-domain: (a, a), (b, b)

    def mean_of_cells(x, y, axis=-1):
        return (x.mean(axis=axis) + y.mean(axis=axis)) / 2

    ref = stats.bootstrap((a, b), mean_of_cells, n_resamples=400, method="percentile", batch=100,
                          rng=np.random.default_rng(7))  # with several samples scipy's draws depend on the batch
    assert ind["value"] == pytest.approx((a.mean() + b.mean()) / 2)
    assert (ind["ci_low"], ind["ci_high"]) == pytest.approx(tuple(ref.confidence_interval), rel=1e-9)
    assert (ind["n_cells"], ind["n_seeds"], ind["n_images"]) == (2, 1, 40)
    assert ind["interval"] == "images (one seed)" and np.isnan(ind["seed_std"])


def test_seeds_that_disagree_widen_the_interval_and_seeds_that_agree_do_not(tmp_path):
    def width(spread, where):
        results = write_grid(tmp_path / where, {LAYER: 40.0}, n_fake=20, seeds=(0, 1, 2), seed_spread=spread,
                             splits=("test",))
        out = group_intervals(_test_iou(results), ["source", "decoder", "domain"], PerImageTables(results.parent),
                              OPTS).set_index("domain").loc["in-domain"]
        assert out["interval"] == "seeds, then images" and out["n_seeds"] == 3
        return out["ci_high"] - out["ci_low"], out["seed_std"]

    agree, std_agree = width(0.0, "agree")
    disagree, std_disagree = width(15.0, "disagree")
    assert disagree > 2 * agree and std_disagree > 10 > std_agree


def test_cells_of_one_model_and_a_stale_table(tmp_path):
    results = write_grid(tmp_path, {LAYER: 40.0}, n_fake=12, splits=("test",))
    rows = _test_iou(results)
    cells = group_intervals(rows, ["source", "decoder", "train_set", "test_set"], PerImageTables(results.parent), OPTS)
    one = cells[(cells["train_set"] == "a") & (cells["test_set"] == "b")].iloc[0]
    ref = stats.bootstrap((sorted_fakes(results.parent, "run-0-a-s0", "b"),), np.mean, n_resamples=400,
                          method="percentile", rng=np.random.default_rng(7))
    assert (one["ci_low"], one["ci_high"]) == pytest.approx(tuple(ref.confidence_interval), rel=1e-9)
    stale = rows.assign(value=rows["value"] + 1.0)
    noted = group_intervals(stale, ["source", "decoder"], PerImageTables(results.parent), OPTS).iloc[0]
    assert "stale" in noted["ci_note"] and np.isnan(noted["ci_low"])


def test_results_rows_and_report_numbers_share_the_per_image_ground_truth(tmp_path):
    """One cell, one seed: the report's interval of that cell is the results row's (same draws, same images)."""
    results = write_grid(tmp_path, {LAYER: 40.0}, n_fake=15, splits=("test",))
    table = load_results(results, BootstrapOptions(n_resamples=300, seed=2))
    row = table[(table["run_id"] == "run-0-b-s0") & (table["test_set"] == "a")].iloc[0]
    cells = group_intervals(_test_iou(results), ["source", "decoder", "train_set", "test_set"],
                            PerImageTables(results.parent), BootstrapOptions(n_resamples=300, seed=2))
    cell = cells[(cells["train_set"] == "b") & (cells["test_set"] == "a")].iloc[0]
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx((row["ci_low"], row["ci_high"]), rel=1e-12)
