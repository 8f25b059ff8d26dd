"""One grid command with views: robustness curves without retraining, and training on augmented copies."""
import pandas as pd
import pytest

from tests.fixtures import grid_json
from declip.pipeline.grid.config import GridConfig
from declip.pipeline.grid.plan import plan_cells

VIEWS = ["jpeg:30", "jpeg:80", "resize:0.5", "blur:1.5", "noise:0.1"]


def _cfg(manifest, store, out, **kw):
    return grid_json(store, out, layers=["layer1"], test_sets=["tint", "bright"], max_epochs=2,
                     manifest=str(manifest), extract_batch_size=4, **kw)

def test_results_merge_keeps_view_rows_apart():
    """Results merged by run id keep a cell's clean and perturbed rows of one test set and metric apart."""
    from declip.pipeline.grid.results import merge_results

    row = dict(run_id="r", train_set="a", test_set="a", split="test", metric="iou", decoder="linear", layer="l")
    old = pd.DataFrame([dict(row, view="clean", value=50.0), dict(row, view="jpeg:50", value=30.0)])
    new = pd.DataFrame([dict(row, view="clean", value=51.0)])
    merged = merge_results(old, new).set_index("view")["value"].to_dict()
    assert merged == {"clean": 51.0, "jpeg:50": 30.0}


def test_views_change_evaluations_not_cells(tmp_path):
    plain = plan_cells(GridConfig.from_dict(_cfg("m", "s", tmp_path)))
    viewed = plan_cells(GridConfig.from_dict(_cfg("m", "s", tmp_path, test_views=VIEWS)))
    assert [c.run_id for c in plain] == [c.run_id for c in viewed]  # adding views retrains nothing
    # clean on every evaluation split (valid selects the model), each view on the test split only
    assert len(viewed[0].evals) == len(plain[0].evals) + len(VIEWS) * 2
    assert {e.view for e in viewed[0].evals} == {"clean", *VIEWS}
    assert {(e.view, e.split) for e in viewed[0].evals} == {("clean", "valid"), ("clean", "test")} | {
        (v, "test") for v in VIEWS}
    assert len({e.out for e in viewed[0].evals}) == 2 + len(VIEWS)  # eval/, eval-valid/, eval-views/<view>/
    augmented = plan_cells(GridConfig.from_dict(_cfg("m", "s", tmp_path, augment_copies=2)))
    assert augmented[0].train.options.train_views == ("augment:all+copy:0", "augment:all+copy:1")
    assert augmented[0].run_id != plain[0].run_id
    from declip.core.errors import DeclipError

    with pytest.raises(DeclipError, match="unknown view operation"):
        GridConfig.from_dict(_cfg("m", "s", tmp_path, test_views=["jpg:3"]))


@pytest.mark.flow
def test_one_grid_command_adds_views_then_augments(tiny_manifest, tmp_path, prefect_harness):
    from declip.flows.grid import run_grid
    from declip.pipeline.report.report import write_report

    store, out = tmp_path / "s.zarr", tmp_path / "grid"
    first = run_grid(_cfg(tiny_manifest, store, out))
    assert (first["trained"], first["failed"]) == (1, [])
    ckpt = next(out.glob("runs/*/best/decoder.pt"))
    mtime = ckpt.stat().st_mtime_ns

    viewed = run_grid(_cfg(tiny_manifest, store, out, test_views=VIEWS))
    assert (viewed["trained"], viewed["skipped_cells"], viewed["failed"]) == (0, 1, [])
    assert viewed["evaluated"] == 2 * len(VIEWS)  # only the new (view, test set) evaluations ran
    assert ckpt.stat().st_mtime_ns == mtime
    encoded = {e["dataset"]: e for e in viewed["extracted"]}
    assert encoded["dolos-celebahq"]["images_encoded"] == 0  # clean was cached already
    for view in VIEWS:
        assert 0 < encoded[f"dolos-celebahq@{view}"]["images_encoded"] < first["extracted"][0]["images_encoded"]
    table = pd.read_parquet(out / "results.parquet")
    iou = table[(table["metric"] == "iou") & (table["decoder"] == "linear") & (table["split"] == "test")]
    assert set(iou["view"]) == {"clean", *VIEWS} and len(iou) == 2 * (1 + len(VIEWS))
    valid = table[(table["metric"] == "iou") & (table["decoder"] == "linear") & (table["split"] == "valid")]
    assert set(valid["view"]) == {"clean"} and len(valid) == 2  # model selection stays on clean validation
    assert set(table.loc[table["decoder"].str.startswith("baseline"), "view"]) == {"clean"}

    page = write_report(out / "results.parquet")
    html = page.read_text()
    assert 'src="robustness.png"' in html and "Robustness: test metric (%) by view" in html
    robust = pd.read_csv(page.parent / "robustness.csv")
    assert set(VIEWS) <= set(robust.columns) and set(robust["metric"]) == {"iou", "ap"}
    mean_jpeg30 = iou.loc[iou["view"] == "jpeg:30", "value"].mean()
    assert robust.loc[robust["metric"] == "iou", "jpeg:30"].iloc[0] == pytest.approx(mean_jpeg30, abs=1e-3)

    augmented = run_grid(_cfg(tiny_manifest, store, out, augment_copies=2, test_views=VIEWS[:1]))
    assert augmented["trained"] == 1 and augmented["failed"] == []  # the augmented cell is a new cell
    copies = {e["dataset"]: e for e in augmented["extracted"]}
    assert copies["dolos-celebahq@augment:all+copy:1"]["images_encoded"] > 0
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["train_views"]) == {"clean", "augment:all+copy:0+augment:all+copy:1"}
