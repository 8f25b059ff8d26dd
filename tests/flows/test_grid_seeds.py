"""Seeds in a real grid: re-running with a second seed trains only that seed, and the results and the report gain
intervals over both seeds (seeds, then images)."""
import pandas as pd
import pytest

from tests.fixtures import grid_json

pytestmark = pytest.mark.flow


def test_a_second_seed_trains_only_itself_and_the_report_gains_seed_intervals(tiny_store, tmp_path, prefect_harness):
    from declip.flows.grid import run_grid
    from declip.pipeline.report.analysis import analyse
    from declip.pipeline.report.report import write_report
    from declip.pipeline.report.results_file import load_results
    from declip.pipeline.report.tables import conform

    out = tmp_path / "grid"
    first = run_grid(grid_json(tiny_store, out, seeds=[0]))
    assert (first["trained"], first["failed"]) == (1, [])
    table = pd.read_parquet(out / "results.parquet")
    rows = table[(table["decoder"] == "linear") & (table["split"] == "test")]
    assert rows["ci_method"].eq("bca").any() and rows.loc[rows["metric"] == "iou", "ci_low"].notna().all()
    assert rows.loc[rows["metric"] == "pooled_pixel_ap", "ci_low"].notna().all()  # pooled: from the histograms
    base = table[table["decoder"] == "baseline:mask-prior"]
    assert base.loc[base["metric"] == "iou", "ci_note"].eq("").all()
    one = analyse(conform(load_results(out / "results.parquet")), out).domain(f"{rows['source'].iloc[0]}", "linear")
    assert one["n_seeds"] == 1 and one["interval"] == "images (one seed)"

    second = run_grid(grid_json(tiny_store, out, seeds=[0, 1]))
    assert (second["trained"], second["skipped_cells"], second["failed"]) == (1, 1, [])  # only seed 1 trains
    table = pd.read_parquet(out / "results.parquet")
    iou = table[(table["metric"] == "iou") & (table["decoder"] == "linear") & (table["split"] == "test")]
    assert sorted(iou["seed"]) == [0, 1] and iou["ci_low"].notna().all()
    both = analyse(conform(load_results(out / "results.parquet")), out).domain(iou["source"].iloc[0], "linear")
    assert both["n_seeds"] == 2 and both["interval"] == "seeds, then images" and both["ci_low"] <= both["value"]
    html = write_report(out / "results.parquet").read_text()
    assert "2 seeds" in html
