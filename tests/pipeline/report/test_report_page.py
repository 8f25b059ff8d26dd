"""The report: every panel present, best chosen on validation and never collapsed, readable tables, ID/OOD by hand."""
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from declip.pipeline.report.report import RANDOM_NOTE, conform, domain_averages, train_test_matrix, write_report
from declip.pipeline.report.selection import best_model, model_scores
from declip.pipeline.report.summary import summary_table

from tests.fixtures import REPO  # noqa: E402
PANELS = ("summary", "iou_layer_decoder_heatmap", "iou_by_layer", "train_test_matrix", "train_test_matrices",
          "per_image_iou", "overlays")


def _row(**kw):
    base = dict(metric="iou", threshold_rule="pred>0.5", aggregation="mean over images", scale="percent",
                collapsed=False, collapse_reason="", dataset="dolos-demo", backbone="vit@random-0")
    base.update(kw)
    return base


def _results(tmp_path, random_weights=True, dataset="dolos-demo", valid_bonus=None, collapse=()):
    """conv-4 is best on test everywhere; ``valid_bonus`` lifts one (decoder, layer) on validation only."""
    rows = []
    for decoder in ("linear", "conv-4"):
        for layer in ("layer2", "layer10", "layer5"):
            for train in ("a", "b"):
                for test in ("a", "b"):
                    value = (60 if train == test else 20) + int(layer[5:]) + (5 if decoder == "conv-4" else 0)
                    for split in ("valid", "test"):
                        v = value + (30 if split == "valid" and (decoder, layer) == valid_bonus else 0)
                        c = (decoder, layer, train, test, split) in collapse
                        common = dict(decoder=decoder, layer=layer, source=f"vit@random-0/{layer}", train_set=train,
                                      test_set=test, split=split, run_id=f"{decoder}-{layer}-{train}",
                                      random_weights=random_weights, dataset=dataset, collapsed=c,
                                      collapse_reason="100.0% of pixels predicted fake" if c else "")
                        rows.append(_row(value=float(v), **common))
                        rows.append(_row(metric="ap", value=v / 100.0, scale="unit", threshold_rule="none", **common))
    for name, v in (("baseline:all-zero", 0.0), ("baseline:all-fake", 18.0), ("baseline:mask-prior", 10.0)):
        for train in ("a", "b"):
            for test in ("a", "b"):
                for split in ("valid", "test"):
                    rows.append(_row(decoder=name, layer="-", source="-", backbone="-", train_set=train, test_set=test,
                                     split=split, value=v, run_id=f"baseline-{name}", random_weights=False,
                                     dataset=dataset, collapsed=True, collapse_reason="constant"))
    grid = tmp_path / "grid"
    (grid / "runs" / "conv-4-layer10-a" / "eval" / "a").mkdir(parents=True)
    pd.DataFrame({"image_id": ["x.png", "y.png"], "label": [1, 1], "iou": [50.0, 70.0]}).to_parquet(
        grid / "runs" / "conv-4-layer10-a" / "eval" / "a" / "per_image.parquet")
    (grid / "grid.json").write_text(json.dumps({"store": str(tmp_path / "missing.zarr"), "dataset": "d"}))
    pd.DataFrame(rows).to_parquet(grid / "results.parquet")
    return grid / "results.parquet"


def test_report_panels_page_and_averages(tmp_path):
    page = write_report(_results(tmp_path))
    out = page.parent
    html = page.read_text()
    for name in PANELS:
        with Image.open(out / f"{name}.png") as im:
            im.verify()
        assert f'src="{name}.png"' in html
    HTMLParser().feed(html)
    assert RANDOM_NOTE in html and "all-fake" in html and "mask-prior" in html
    tables = html[html.index("<table"):]
    assert not re.search(r">\s*nan\s*<", tables, re.I), "a NaN cell in a table"
    iou = conform(pd.read_parquet(out.parent / "results.parquet"))
    best = iou[(iou["decoder"] == "conv-4") & (iou["layer"] == "layer10") & (iou["split"] == "test")
               & (iou["metric"] == "iou")]
    assert domain_averages(best) == (75.0, 35.0)
    assert "Best model conv-4 @ vit/layer10 (chosen on validation): test IoU in-domain 75.00, out-of-domain 35.00" \
        in html
    assert train_test_matrix(iou[iou["metric"] == "iou"], "conv-4", "layer10").loc["a", "b"] == 35.0
    assert "DeCLIP paper" not in html  # the demo only borrows Dolos' layout


def test_best_is_chosen_on_validation_not_test(tmp_path):
    results = _results(tmp_path, valid_bonus=("linear", "layer2"))
    table = conform(pd.read_parquet(results))
    assert best_model(table) == ("vit@random-0/layer2", "linear")
    html = write_report(results).read_text()
    assert "Best model linear @ vit/layer2 (chosen on validation): test IoU in-domain 62.00" in html


def test_collapsed_model_is_marked_and_never_best(tmp_path):
    collapse = {("conv-4", "layer10", "a", "a", "valid"), ("conv-4", "layer10", "a", "a", "test"),
                ("conv-4", "layer5", "b", "b", "valid"), ("linear", "layer5", "b", "b", "valid"),
                ("linear", "layer5", "a", "a", "valid")}  # conv-4 @ layer5: 1 of 2 in-domain; linear: 2 of 2
    results = _results(tmp_path, collapse=collapse)
    table = conform(pd.read_parquet(results))
    assert best_model(table) == ("vit@random-0/layer10", "linear")  # mean 50 beats conv-4 @ layer5 (45)
    scores = model_scores(table).set_index(["source", "decoder"])
    assert not scores.loc[("vit@random-0/layer5", "conv-4"), "eligible"]  # half its train sets collapsed
    assert not scores.loc[("vit@random-0/layer5", "linear"), "eligible"]
    assert scores.loc[("vit@random-0/layer2", "conv-4"), "eligible"]
    summary = summary_table(table)
    row = summary[summary["feature"] == "vit@random-0/layer10"].iloc[0]
    assert row["decoder"] == "linear"  # conv-4 collapsed in-domain on this source
    html = write_report(results).read_text()
    assert "no: 1 of 2 valid evaluations collapsed in-domain" in html and "1 of 4" in html


def test_summary_metrics_in_percent_and_baselines(tmp_path):
    summary = summary_table(conform(pd.read_parquet(_results(tmp_path))))
    row = summary[summary["feature"] == "vit@random-0/layer10"].iloc[0]
    assert row["decoder"] == "conv-4" and row["in-domain IoU"] == 75.0 and row["in-domain pixel AP"] == 75.0
    base = summary[summary["feature"] == "no features (baseline)"].set_index("decoder")
    assert set(base.index) == {"all-zero", "all-fake", "mask-prior"}
    assert base.loc["all-fake", "in-domain IoU"] == 18.0


@pytest.mark.slow
def test_dolos_reference_row_and_cli(tmp_path):
    results = _results(tmp_path, random_weights=False, dataset="dolos-celebahq")
    proc = subprocess.run([sys.executable, "-m", "declip.cli", "report", str(results), "--out", str(tmp_path / "r")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "75.00 / 35.00" in proc.stdout and "DeCLIP paper" in proc.stdout
    html = (tmp_path / "r" / "index.html").read_text()
    assert RANDOM_NOTE not in html and "73.85" in html and "34.72" in html


def test_missing_results_is_a_clean_error(tmp_path):
    from declip.core.errors import DeclipError

    with pytest.raises(DeclipError, match="run `declip grid` first"):
        write_report(tmp_path / "nope.parquet")


def test_a_grid_with_one_generator_gets_every_panel(tmp_path):
    """pairs and list datasets have one generator: no out-of-domain cell, yet a whole page (issue 19 item 1)."""
    table = pd.read_parquet(_results(tmp_path))
    one = table[(table["train_set"] == "a") & (table["test_set"] == "a")]
    one.to_parquet(tmp_path / "grid" / "results.parquet")
    page = write_report(tmp_path / "grid" / "results.parquet")
    html = page.read_text()
    for name in PANELS:
        assert f'src="{name}.png"' in html and (page.parent / f"{name}.png").exists()
    assert "test IoU in-domain 75.00" in html
