"""The report's headline and marks on hand-built grids: tied with best, ties on validation, below a constant map, the
positive control's verdict (never crowned), the random-layer check, test-set sizes, provenance, clean tables."""
import re

from declip.pipeline.report.analysis import analyse
from declip.pipeline.report.report import write_report
from declip.pipeline.report.results_file import load_results
from declip.pipeline.report.summary import closing_lines, headline_lines
from declip.pipeline.report.tables import conform

from tests.pipeline.report.grid_builder import write_grid

L2, L5, L9 = (f"vit@random-0/layer{k}" for k in (2, 5, 9))
SRM = "srm@fixed/layer0"


def _analysis(results):
    return analyse(conform(load_results(results)), results.parent)


def test_models_not_significantly_below_the_chosen_one_are_marked_tied_on_the_page(tmp_path):
    models = {(L2, "conv-4"): 40.0, (L5, "conv-4"): 40.0, (L9, "conv-4"): 25.0}
    results = write_grid(tmp_path, models, valid_quality={(L5, "conv-4"): 60.0})
    analysis = _analysis(results)
    assert analysis.best == (L5, "conv-4") and analysis.valid_ties == []
    status = analysis.test_ties.set_index("source")["status"].to_dict()
    assert status == {L5: "best", L2: "tied with best", L9: "below best"}
    md = (write_report(results).parent / "index.md").read_text()
    table = md.split("## Every model")[1].split("\n## ")[0]
    assert re.search(r"layer2 +\| conv-4 .*\| tied with best", table) and re.search(r"layer9 .*\| below best", table)
    assert re.search(r"layer5 .*★ chosen", table)


def test_models_validation_cannot_tell_apart_are_not_crowned(tmp_path):
    models = {(L2, "conv-4"): 40.0, (L5, "conv-4"): 40.0, (L9, "conv-4"): 10.0}
    results = write_grid(tmp_path, models)
    analysis = _analysis(results)
    assert len(analysis.valid_ties) == 1
    first = headline_lines(analysis)[0]
    assert first.startswith("No single best model:") and "cannot tell it from 1 other model(s)" in first
    md = (write_report(results).parent / "index.md").read_text()  # nor do the matrix's heading and title crown it
    assert "## Train × test matrix of the model highest on validation, not separable there from 1 other(s)" in md
    assert "of the chosen model" not in md
    table = md.split("## Every model")[1].split("\n## ")[0]  # nor does the every-model table
    assert "★ highest on valid (tied)" in table and "★ chosen" not in table


def test_a_best_model_below_a_constant_map_is_said_plainly(tmp_path):
    models = {(L2, "linear"): 2.0, (L5, "linear"): 0.5}
    lines = headline_lines(_analysis(write_grid(tmp_path, models, valid_quality={(L2, "linear"): 30.0})))
    assert lines[0].startswith("Best model linear @ vit/layer2")
    assert lines[1].startswith("It is BELOW a constant map: the all-fake baseline scores")
    assert "Test images (fake + real) per test set: a 30 + 6 real, b 30 + 6 real" in "\n".join(lines)


def test_the_control_gets_a_verdict_and_is_never_crowned(tmp_path):
    good = _analysis(write_grid(tmp_path / "good", {(L2, "linear"): 20.0, (L5, "linear"): 21.0, (SRM, "conv-4"): 60.0}))
    assert good.best is not None and good.best[0] != SRM  # highest on validation, but a control
    verdict = next(line for line in headline_lines(good) if line.startswith("positive control"))
    assert "conv-4 @ srm/layer0 vs best baseline all-fake" in verdict and "PASSED" in verdict
    weak = _analysis(write_grid(tmp_path / "weak", {(L2, "linear"): 20.0, (SRM, "conv-4"): 16.0}))
    assert weak.controls[0].passed is False and "FAILED" in weak.controls[0].line()
    layers = next(line for line in headline_lines(good) if line.startswith("random-weight layers"))
    assert "linear @ vit/layer2 − linear @ vit/layer5" in layers and "per test set" in layers


def test_closing_lines_print_the_summary_with_intervals_then_the_checks(tmp_path):
    results = write_grid(tmp_path, {(L2, "linear"): 20.0, (L5, "linear"): 21.0, (SRM, "conv-4"): 60.0},
                         seeds=(0, 1))
    text = "\n".join(closing_lines(results))
    assert re.search(r"srm/layer0 +conv-4 +\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] / ", text)
    assert "2 seeds" in text and "positive control" in text and "random-weight layers" in text
    assert "NOTE: some features come from a backbone with RANDOM weights" in text


def test_page_has_provenance_and_no_leftover_index_column(tmp_path):
    results = write_grid(tmp_path, {(L2, "linear"): 20.0, (L5, "linear"): 30.0})
    html = write_report(results, command="declip report x").read_text()
    assert "<th></th>" not in html  # a pivot's named column index used to become an empty dark column
    prov = html.split("<h3>provenance</h3>")[1]
    for item in ("report written", "report code version", "declip report x", "grid config", "dataset size"):
        assert item in prov, item
    assert "[" in html.split("Summary: best decoder")[1].split("</table>")[0]  # intervals in the summary table
    md = (tmp_path / "grid" / "report" / "index.md").read_text()
    matrix = md.split("## Train × test matrix")[1].split("\n## ")[0]
    cells = re.findall(r"\| +(\d+\.\d\d(?: \[[\d.]+, [\d.]+\])?) +(?=\|)", matrix)
    assert len(cells) == 4 and all("[" in c for c in cells), matrix  # every matrix cell: value [low, high]


def test_the_random_layer_check_skips_decoders_whose_layers_collapsed(tmp_path):
    """Two collapsed models differ by nothing, so a check on them passes vacuously (the demo compared two all-collapsed
    conv-4 heads while its linear heads worked): the check takes the decoder whose two layers collapsed least."""
    models = {(L2, "conv-4"): 0.0, (L5, "conv-4"): 0.0, (L2, "linear"): 20.0, (L5, "linear"): 21.0}
    results = write_grid(tmp_path, models)
    table = load_results(results)
    conv = table["decoder"] == "conv-4"
    table.loc[conv, "collapsed"] = True
    table.to_parquet(results)
    check = _analysis(results).layers
    assert check is not None and check.a == (L2, "linear") and check.b == (L5, "linear")
