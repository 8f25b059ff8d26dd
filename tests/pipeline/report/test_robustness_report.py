"""Robustness section of the report: curves and table from a results table with a view column, numbers by hand."""
import json

import pandas as pd
import pytest
from PIL import Image

from declip.pipeline.report.report import write_report
from declip.pipeline.report.robustness import CLEAN_AT, robustness_rows, robustness_table

VIEWS = {"clean": 0, "jpeg:90": 5, "jpeg:50": 10, "resize:0.5": 20, "blur:2": 30, "noise:0.1": 40,
         "jpeg:75+resize:0.5": 50}


def _table(detection=False):
    rows = []
    for decoder in ("linear", "conv-4"):
        for train, test in (("a", "a"), ("a", "b")):
            for view, drop in VIEWS.items():
                base = 60 if train == test else 40
                rows.append(dict(decoder=decoder, layer="layer3", train_set=train, test_set=test, view=view,
                                 metric="iou", value=float(base - drop), random_weights=True, run_id=decoder,
                                 threshold_rule="pred>0.5", aggregation="mean", scale="percent"))
                rows.append(dict(rows[-1], metric="ap", value=(base - drop) / 100, scale="unit"))
                rows.append(dict(rows[-1], metric="image_ap", value=0.9 - drop / 100))
    rows.append(dict(rows[0], decoder="baseline:all-zero", layer="-", value=0.0, view="clean"))
    return pd.DataFrame(rows)


def test_rows_put_clean_at_each_axis_identity_and_average_over_sets():
    rows = robustness_rows(_table())
    assert set(rows["metric"]) == {"iou", "ap"}  # image-level only for detection grids
    lin = rows[(rows["decoder"] == "linear") & (rows["metric"] == "iou")]
    assert lin.loc[lin["view"] == "jpeg:50", "value"].iloc[0] == pytest.approx((50 + 30) / 2)
    jpeg = lin[lin["axis"] == "JPEG quality"].sort_values("strength")
    assert jpeg["strength"].tolist() == [50.0, 90.0, CLEAN_AT["JPEG quality"]]
    assert jpeg["value"].tolist() == [40.0, 45.0, 50.0]
    assert lin.loc[lin["view"] == "jpeg:75+resize:0.5", "axis"].isna().all()  # compositions: table only
    assert "baseline:all-zero" not in set(rows["decoder"])
    assert set(robustness_rows(_table(), image_level=True)["metric"]) == {"iou", "ap", "image_ap"}
    assert robustness_rows(_table().assign(view="clean")).empty


def test_table_orders_views_clean_first_then_by_axis_and_strength():
    wide = robustness_table(robustness_rows(_table()))
    assert list(wide.columns) == ["clean", "jpeg:50", "jpeg:90", "resize:0.5", "blur:2", "noise:0.1",
                                  "jpeg:75+resize:0.5"]
    assert wide.loc[("conv-4", "layer3", "clean", "iou"), "noise:0.1"] == pytest.approx(10.0)


def test_augmented_cells_get_their_own_curves():
    table = _table()
    aug = table[table["decoder"] == "linear"].assign(train_views="augment:all+copy:0+augment:all+copy:1",
                                                     value=lambda d: d["value"] + 1.0)
    rows = robustness_rows(pd.concat([table.assign(train_views="clean"), aug], ignore_index=True))
    lin = rows[(rows["decoder"] == "linear") & (rows["metric"] == "iou") & (rows["view"] == "jpeg:50")]
    assert sorted(lin["trained_on"]) == ["augment:all x2", "clean"]
    assert lin.set_index("trained_on")["value"].to_dict() == {"clean": 40.0, "augment:all x2": 41.0}


def test_report_has_robustness_figure_and_table_and_keeps_clean_tables_clean(tmp_path):
    grid = tmp_path / "grid"
    grid.mkdir()
    (grid / "grid.json").write_text(json.dumps({"store": str(tmp_path / "none.zarr"), "dataset": "d",
                                                "mode": "detection"}))
    _table().to_parquet(grid / "results.parquet")
    page = write_report(grid / "results.parquet")
    with Image.open(page.parent / "robustness.png") as im:
        im.verify()
    html = page.read_text()
    assert 'src="robustness.png"' in html
    robust = pd.read_csv(page.parent / "robustness.csv")
    assert "image_ap" in set(robust["metric"])  # detection grid: image-level detection under views
    # the summary and model tables still report clean IoU only: linear in-domain (a,a)=60, out-of-domain (a,b)=40
    md = (page.parent / "index.md").read_text()
    import re

    models = md.split("## Every model")[1].split("##")[0]
    assert re.search(r"\| layer3 +\| linear +\| +50 \| +60 \| +40 \|", models), models
    assert "test IoU in-domain 60.00, out-of-domain 40.00" in md
    assert "## Robustness" in md


def test_training_views_are_named_by_the_views_parser():
    from declip.pipeline.report.robustness import trained_on

    assert trained_on("augment:all+copy:0+augment:all+copy:1+augment:all+copy:2") == "augment:all x3"
    assert trained_on("augment:blur+copy:0") == "augment:blur x1"
    assert trained_on("clean") == "clean" and trained_on("") == "clean"
    assert trained_on("jpeg:50+augment:all+copy:0") == "jpeg:50+augment:all+copy:0"  # mixed: listed as is
    assert trained_on("augment:all+copy:0+jpeg:50") == "augment:all+copy:0+jpeg:50"  # not one composition: as is
