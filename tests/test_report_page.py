"""The report: valid PNG figures, the HTML page with the random-weights banner, ID/OOD averages by hand."""
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from pipeline.runs.report import RANDOM_NOTE, domain_averages, train_test_matrix, write_report

REPO = Path(__file__).resolve().parents[1]


def _results(tmp_path, random_weights=True):
    rows = []
    for decoder in ("linear", "conv-4"):
        for layer in ("layer2", "layer10", "layer5"):
            for train in ("a", "b"):
                for test in ("a", "b"):
                    value = (60 if train == test else 20) + int(layer[5:]) + (5 if decoder == "conv-4" else 0)
                    rows.append(dict(decoder=decoder, layer=layer, train_set=train, test_set=test, metric="iou",
                                     value=float(value), run_id=f"{decoder}-{layer}-{train}", random_weights=random_weights,
                                     threshold_rule="pred>0.5", aggregation="mean over images", scale="percent"))
    for name, v in (("baseline:all-zero", 0.0), ("baseline:mask-prior", 10.0)):
        for train in ("a", "b"):
            for test in ("a", "b"):
                rows.append(dict(decoder=name, layer="-", train_set=train, test_set=test, metric="iou", value=v,
                                 run_id=f"baseline-{name}", random_weights=False, threshold_rule="pred>0.5",
                                 aggregation="mean over images", scale="percent"))
    grid = tmp_path / "grid"
    (grid / "runs" / "conv-4-layer10-a" / "eval" / "a").mkdir(parents=True)
    pd.DataFrame({"image_id": ["x.png", "y.png"], "label": [1, 1], "iou": [50.0, 70.0]}).to_parquet(
        grid / "runs" / "conv-4-layer10-a" / "eval" / "a" / "per_image.parquet")
    (grid / "grid.json").write_text(json.dumps({"store": str(tmp_path / "missing.zarr"), "dataset": "d"}))
    pd.DataFrame(rows).to_parquet(grid / "results.parquet")
    return grid / "results.parquet"


def test_report_figures_page_and_averages(tmp_path):
    page = write_report(_results(tmp_path))
    out = page.parent
    for name in ("iou_layer_decoder_heatmap", "iou_by_layer", "train_test_matrix", "per_image_iou"):
        with Image.open(out / f"{name}.png") as im:
            im.verify()
        assert f'src="{name}.png"' in page.read_text()
    html = page.read_text()
    HTMLParser().feed(html)
    assert RANDOM_NOTE in html and "baseline:mask-prior" in html
    table = html[html.index("<table"):]
    assert table.index("layer2") < table.index("layer5") < table.index("layer10")
    iou = pd.read_parquet(out.parent / "results.parquet")
    best = iou[(iou["decoder"] == "conv-4") & (iou["layer"] == "layer10")]
    assert domain_averages(best) == (75.0, 35.0)
    assert "ID 75.00, OOD 35.00" in html
    assert train_test_matrix(iou, "conv-4", "layer10").loc["a", "b"] == 35.0


def test_no_banner_with_real_weights_and_cli(tmp_path):
    results = _results(tmp_path, random_weights=False)
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "report", str(results), "--out", str(tmp_path / "r")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "in-domain IoU 75.00, out-of-domain IoU 35.00" in proc.stdout
    assert RANDOM_NOTE not in (tmp_path / "r" / "index.html").read_text()


def test_missing_results_is_a_clean_error(tmp_path):
    from core.errors import DeclipError

    with pytest.raises(DeclipError, match="run `declip grid` first"):
        write_report(tmp_path / "nope.parquet")
