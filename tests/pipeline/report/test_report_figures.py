"""What the report's figures must not mislead about (issue 19 item 6): hatching per evaluation, colour scales fitted
to the data, intervals on every cell and point, integer layer ticks, distinguishable baselines, the random-weight note
never clipped, robustness lines named with their backbone."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from declip.pipeline.report import figures  # noqa: E402
from declip.pipeline.report.analysis import analyse  # noqa: E402
from declip.pipeline.report.heatmaps import heatmap  # noqa: E402
from declip.pipeline.report.labels import RANDOM_NOTE, decorate  # noqa: E402
from declip.pipeline.report.results_file import load_results  # noqa: E402
from declip.pipeline.report.robustness import robustness_rows  # noqa: E402
from declip.pipeline.report.tables import conform  # noqa: E402

from tests.pipeline.report.grid_builder import write_grid  # noqa: E402


def _frame(values):
    return pd.DataFrame(values, index=["x", "y"], columns=["a", "b"])


def test_a_cell_is_hatched_only_when_every_evaluation_in_it_collapsed():
    fig, ax = plt.subplots()
    im = heatmap(ax, _frame([[20.0, 30.0], [40.0, 50.0]]), "t", collapsed=_frame([[1, 3], [0, 0]]),
                 evaluations=_frame([[4, 3], [4, 4]]), low=_frame([[18.0, 28.0], [38.0, 48.0]]),
                 high=_frame([[22.0, 32.0], [42.0, 52.0]]))
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1 and hatched[0].get_xy() == (0.5, -0.5)  # (row x, column b): 3 of 3 collapsed
    texts = [t.get_text() for t in ax.texts]
    assert "20.0\n[18.0, 22.0]\n1 of 4 collapsed" in texts  # one collapsed evaluation among four: counted, not hatched
    assert "40.0\n[38.0, 42.0]" in texts
    assert (im.norm.vmin, im.norm.vmax) == (20.0, 50.0)  # fitted to the numbers shown, not 0-100
    plt.close(fig)


def test_the_random_weight_note_wraps_inside_a_narrow_figure():
    fig = plt.figure(figsize=(3.0, 2.0))
    bottom = decorate(fig, True)
    fig.canvas.draw()
    note = fig.texts[0]
    assert note.get_text().replace("\n", " ") == RANDOM_NOTE and "\n" in note.get_text()
    box = note.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and 0 < bottom < 0.5
    plt.close(fig)


@pytest.fixture
def kept(monkeypatch):
    """The figures a report function draws, kept open instead of closed."""
    out, close = [], plt.close
    monkeypatch.setattr(figures.plt, "close", out.append)
    yield out
    for fig in list(out):
        close(fig)


def test_layer_curves_have_intervals_integer_ticks_and_distinct_baselines(tmp_path, kept):
    models = {(f"vit@random-0/layer{k}", "linear"): 20.0 + k for k in (1, 2, 4)}
    results = write_grid(tmp_path, models, n_fake=10)
    table = conform(load_results(results))
    figures.fig_by_layer(table, analyse(table, results.parent), tmp_path, True)
    ax = kept[0].axes[0]
    kept[0].canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and all(t.lstrip("−-").isdigit() for t in ticks), ticks
    bars = [c for c in ax.containers if hasattr(c, "has_yerr") and c.has_yerr]
    assert bars, "the points carry no error bars"
    baselines = [(line.get_color(), line.get_linestyle()) for line in ax.get_lines()
                 if line.get_label().startswith("baseline")]
    assert len(baselines) == 3 and len(set(baselines)) == 3


def test_every_model_line_of_the_layer_figure_has_its_own_colour(tmp_path, kept):
    """The demo drew both SRM control lines and the conv-4 curve in one blue: which was which could not be told."""
    models = {**{(f"vit@random-0/layer{k}", d): 20.0 + k for k in (1, 2) for d in ("linear", "conv-4")},
              ("srm@fixed/layer0", "linear"): 30.0, ("srm@fixed/layer0", "conv-4"): 40.0}
    results = write_grid(tmp_path, models, n_fake=10)
    table = conform(load_results(results))
    figures.fig_by_layer(table, analyse(table, results.parent), tmp_path, True)
    ax = kept[0].axes[0]
    handles, labels = ax.get_legend_handles_labels()
    colours = {label: matplotlib.colors.to_hex(h.get_color() if hasattr(h, "get_color") else h.lines[0].get_color())
               for h, label in zip(handles, labels)}
    models_only = {label: c for label, c in colours.items() if not label.startswith("baseline")}
    assert len(models_only) == 4 and len(set(models_only.values())) == 4, models_only
    assert not set(models_only.values()) & {c for label, c in colours.items() if label.startswith("baseline")}


def test_robustness_lines_name_the_backbone():
    rows = []
    for view, value in (("clean", 50.0), ("jpeg:50", 40.0)):
        rows.append(dict(decoder="linear", layer="layer3", source="ViT-B-32@random-0/layer3", train_set="a",
                         test_set="a", view=view, metric="iou", value=value, run_id="r", scale="percent"))
    out = robustness_rows(pd.DataFrame(rows))
    assert set(out["feature"]) == {"ViT-B-32/layer3"} and np.isfinite(out["value"]).all()
