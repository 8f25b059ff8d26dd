"""The results table with intervals: a grid's rows gain them when written, an older grid's when read, unchanged rows
keep theirs, and pooled pixel AP resamples images from the histograms evaluation writes.

Oracles: scipy.stats.bootstrap run directly on each row's per-image values (sorted by image id, the same generator)
and scikit-learn's average precision on the pooled pixels.
"""
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score

from declip.pipeline.evaluate.evaluation import write_per_image
from declip.pipeline.grid.results import RESULT_COLUMNS, write_results
from declip.pipeline.metrics.registry import MetricAccumulator
from declip.pipeline.metrics.resampling import BootstrapOptions
from declip.pipeline.report.grid_files import PerImageTables, eval_dir
from declip.pipeline.report.intervals import add_intervals
from declip.pipeline.report.results_file import fill_intervals, load_results

from tests.pipeline.report.grid_builder import sorted_fakes, write_grid

MODELS = {("vit@random-0/layer2", "linear"): 30.0, ("vit@random-0/layer5", "linear"): 40.0}


def test_an_older_grid_without_intervals_loads_with_them_computed_from_per_image_files(tmp_path):
    results = write_grid(tmp_path, MODELS, n_fake=25)
    before = pd.read_parquet(results)
    assert "ci_low" not in before.columns  # written the way grids were before intervals existed
    table = load_results(results)
    assert table["ci_low"].notna().all() and (table["ci_method"] == "bca").all() and (table["ci_note"] == "").all()
    assert (table["ci_low"] < table["value"]).all() and (table["value"] < table["ci_high"]).all()
    row = table[(table["run_id"] == "run-1-a-s0") & (table["test_set"] == "b") & (table["split"] == "test")].iloc[0]
    ref = stats.bootstrap((sorted_fakes(results.parent, "run-1-a-s0", "b"),), np.mean, n_resamples=1000,
                          rng=np.random.default_rng(0))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(ref.confidence_interval), rel=1e-9)
    assert row["n_images"] == 25 and row["ci_resamples"] == 1000 and row["ci_level"] == 0.95
    pd.testing.assert_frame_equal(pd.read_parquet(results), before)  # reading never rewrites the grid's files


def test_a_missing_per_image_table_leaves_a_note_not_a_guess(tmp_path):
    results = write_grid(tmp_path, MODELS, n_fake=10)
    (eval_dir(results.parent, "run-0-a-s0", "a") / "per_image.parquet").unlink()
    table = load_results(results).set_index(["run_id", "test_set", "split"])
    assert table.loc[("run-0-a-s0", "a", "test"), "ci_note"] == "no per-image table for this evaluation"
    assert np.isnan(table.loc[("run-0-a-s0", "a", "test"), "ci_low"])
    assert np.isfinite(table.loc[("run-0-a-s0", "b", "test"), "ci_low"])


def test_unchanged_rows_keep_their_interval_and_changed_ones_are_drawn_again(tmp_path):
    results = write_grid(tmp_path, MODELS, n_fake=10, splits=("test",))
    table = pd.read_parquet(results)
    previous = table.assign(ci_low=-1.0, ci_high=-2.0, ci_method="bca", ci_resamples=1000, ci_level=0.95,
                            ci_seed=0, ci_note="", n_images=10)  # a sentinel no bootstrap would draw
    changed = table["run_id"] == "run-0-a-s0"
    now = fill_intervals(table.assign(value=np.where(changed, table["value"] + 1e-3, table["value"])),
                         results.parent, previous=previous)
    assert (now.loc[~changed.to_numpy(), "ci_low"] == -1.0).all()
    # the changed rows are drawn again; their per-image tables no longer agree with the value: a note, no interval
    assert now.loc[changed.to_numpy(), "ci_note"].str.contains("stale").all()


def test_the_grid_writes_intervals_with_its_table_and_keeps_them_on_merge(tmp_path):
    results = write_grid(tmp_path, MODELS, n_fake=12, splits=("test",))
    grid = results.parent
    table = pd.read_parquet(results)
    results.unlink()
    write_results(table, grid)
    written = pd.read_parquet(results)
    assert set(RESULT_COLUMNS) <= set(written.columns) and written["ci_low"].notna().all()
    baseline = written[written["decoder"] == "baseline:all-fake"].iloc[0]
    assert np.isfinite(baseline["ci_low"])  # baselines have per-image tables too
    write_results(table[table["run_id"] == "run-0-a-s0"], grid)  # a narrower re-run: rows kept, intervals kept
    again = pd.read_parquet(results)
    pd.testing.assert_frame_equal(again.sort_values(["run_id", "test_set", "decoder"]).reset_index(drop=True),
                                  written.sort_values(["run_id", "test_set", "decoder"]).reset_index(drop=True))


def test_pooled_pixel_ap_interval_resamples_images_from_the_histograms_evaluation_writes(tmp_path):
    rng = np.random.default_rng(3)
    acc = MetricAccumulator(["iou", "pooled_pixel_ap"])
    maps, masks = [], []
    for i in range(12):
        gt = rng.random((12, 16)) < rng.uniform(0.1, 0.5)
        prob = np.clip(gt * rng.uniform(0.1, 0.5) + rng.random((12, 16)) * 0.6, 0, 1).astype(np.float32)
        acc.add(prob, gt, 1, f"img{i:02d}.png")
        maps.append(np.minimum(np.floor(prob.ravel().astype(np.float64) * 256), 255))
        masks.append(gt.ravel())
    acc.add(np.zeros((4, 4), np.float32), None, 0, "real.png")
    where = tmp_path / "runs" / "r" / "eval" / "t"
    write_per_image(acc, where)
    assert (where / "pixel_hist.npz").exists() and (where / "per_image.csv").exists()
    summary = acc.summary().assign(run_id="r", train_set="t", test_set="t", split="test", view="clean")
    opts = BootstrapOptions(n_resamples=200, method="percentile", seed=4)
    out = add_intervals(summary, PerImageTables(tmp_path), opts).set_index("metric")

    def pooled_ap(index):  # sklearn on the pooled pixels of the drawn images, each as often as drawn
        index = np.asarray(index, dtype=int)
        return average_precision_score(np.concatenate([masks[i] for i in index]),
                                       np.concatenate([maps[i] for i in index]))

    ref = stats.bootstrap((np.arange(12),), pooled_ap, n_resamples=200, method="percentile", vectorized=False,
                          rng=np.random.default_rng(4))
    row = out.loc["pooled_pixel_ap"]
    assert row["value"] == pytest.approx(pooled_ap(np.arange(12)), abs=1e-12)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(ref.confidence_interval), rel=1e-9)
    assert row["n_images"] == 12 and row["ci_note"] == ""
    (where / "pixel_hist.npz").unlink()  # an evaluation written before the histograms: a note says so
    old = add_intervals(summary, PerImageTables(tmp_path), opts).set_index("metric")
    assert "pixel_hist" in old.loc["pooled_pixel_ap", "ci_note"] and np.isfinite(old.loc["iou", "ci_low"])


def test_a_grid_folder_is_read_as_its_results_table(tmp_path):
    """`declip report runs/my-grid` read the folder as one parquet dataset and crashed on a per-image CSV."""
    from declip.pipeline.report.report import write_report
    from declip.pipeline.report.summary import closing_lines

    results = write_grid(tmp_path, {("vit@random-0/layer2", "linear"): 20.0, ("vit@random-0/layer5", "linear"): 30.0})
    (results.parent / "runs" / "run-0-a-s0" / "eval" / "a" / "per_image.csv").write_text("image_id,iou\nx,1\n")
    assert len(load_results(results.parent)) == len(pd.read_parquet(results))
    assert write_report(results.parent) == results.parent / "report" / "index.html"
    from_folder, from_file = closing_lines(results.parent), closing_lines(results)
    assert from_folder == from_file and any("[" in line for line in from_folder)  # intervals found beside the table
