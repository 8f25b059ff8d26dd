"""``declip report``: the figures and page a grid's results table deserves, and nothing it does not support.

Reads ``results.parquet`` (and ``grid.json``, per-image tables, saved maps and checkpoints beside it) and writes PNG
figures plus ``index.html``/``index.md``:

* the summary: per feature source, the best decoder **chosen on validation** with its test in-domain (train = test
  generator) and out-of-domain IoU, AP, pixel AUC, F1 and image AUC, all in percent, beside the three feature-free
  baselines (all-zero, all-fake, mask prior) and, on Dolos, DeCLIP's published numbers as a reference row;
* IoU by feature × decoder (heatmap) and by layer (lines), the train × test matrix of every model (small multiples)
  and of the chosen one, per-image IoU distributions, and an overlay panel of predicted masks (saved maps, or
  recomputed from the checkpoint and the store when none were saved).

Every number carries its 95 % interval (test images, and seeds first when several ran); the headline says which
model was chosen, or that validation cannot tell several apart, how it stands against the best constant map, the
test-set sizes, the positive control's verdict and a random-weight layer check; the models table marks every model
tied with the chosen one on test; the page ends with its provenance. Collapsed evaluations (near-constant maps,
:mod:`pipeline.metrics.collapse`) are counted in every figure and table in one wording and never chosen. Random
backbone weights are stated on every figure.

This module assembles the report; the parts live beside it: :mod:`.results_file` (the table with intervals),
:mod:`.analysis` (everything computed once: choice, ties, intervals, controls), :mod:`.summary` (headline and
summary), :mod:`.tables`, :mod:`.figures`, :mod:`.heatmaps`, :mod:`.overlays`, :mod:`.robustness`,
:mod:`.provenance`, :mod:`.page`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from declip.core.errors import DeclipError
from declip.pipeline.report.analysis import Analysis, analyse
from declip.pipeline.report.figures import fig_by_layer, fig_per_image, fig_summary
from declip.pipeline.report.heatmaps import fig_feature_decoder_heatmap, fig_matrices, fig_matrix
from declip.pipeline.report.labels import RANDOM_NOTE
from declip.pipeline.report.overlays import fig_overlays
from declip.pipeline.report.page import readable, write_pages
from declip.pipeline.report.provenance import provenance
from declip.pipeline.report.results_file import load_results, results_path
from declip.pipeline.report.robustness import fig_robustness, robustness_rows, robustness_table
from declip.pipeline.report.selection import SUMMARY_METRICS
from declip.pipeline.report.summary import headline_lines, summary_table, with_interval_text
from declip.pipeline.report.tables import (  # noqa: F401 - conform, domain_averages, train_test_matrix: the API
    conform, domain_averages, iou_on_test, models_table, train_test_matrix,
)

__all__ = ["RANDOM_NOTE", "conform", "domain_averages", "models_table", "train_test_matrix", "write_report"]


def _with_robustness(table: pd.DataFrame, out: Path, rnd: bool, figures: list, tables: dict,
                     detection: bool) -> tuple[list, dict]:
    """Add the robustness curves and table when the grid was evaluated on views (``test_views``); a detection
    grid also gets image-level AP/AUC under each view."""
    rows = robustness_rows(table, image_level=detection)
    if rows.empty:
        return figures, tables
    png = fig_robustness(rows, out, RANDOM_NOTE if rnd else None)
    wide = robustness_table(rows)
    wide.to_csv(out / "robustness.csv")
    name = "Robustness: test metric (%) by view (columns), per feature × decoder; means over train/test sets and seeds"
    return figures + ([png] if png else []), {**tables, name: readable(wide.reset_index())}


def report_tables(table: pd.DataFrame, analysis: Analysis, matrix: pd.DataFrame, label: str) -> dict:
    """The page's tables, each readable (numbers rounded, intervals in brackets)."""
    summary = summary_table(table, analysis)
    matrix = matrix.reset_index().rename(columns={"test_set": "test generator ↓ / train generator →"})
    return {
        "Summary: best decoder per feature, chosen on validation; test metrics in percent [95 % interval]":
            readable(with_interval_text(summary)),
        "Every model, and its paired test difference from the chosen one (tied with best: not significant after "
        "Holm)": readable(models_table(table, analysis.test_ties, bool(analysis.valid_ties))),
        f"Train × test matrix of the model {analysis.chosen_wording}, {label} (test IoU % [95 % interval])": readable(matrix),
    }


def write_report(results: str | Path, out: str | Path | None = None, *, max_overlays: int = 4,
                 command: str | None = None) -> Path:
    """Figures, tables and ``index.html``/``index.md`` for ``results`` (a grid's ``results.parquet``) into ``out``
    (default: ``report/`` beside it); returns the page. ``command`` is what the provenance says produced it."""
    results = results_path(results)
    if not results.exists():
        raise DeclipError(f"{results} not found; run `declip grid` first (it writes results.parquet)")
    table = conform(load_results(results))
    grid_dir = results.parent
    grid = json.loads((grid_dir / "grid.json").read_text()) if (grid_dir / "grid.json").exists() else {}
    out = Path(out) if out else grid_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    views = table["view"].fillna("clean") if "view" in table.columns else pd.Series("clean", index=table.index)
    full, table = table, table[views == "clean"]  # views get their own section (robustness)
    if iou_on_test(table).empty:
        raise DeclipError(f"{results} has no test-split iou rows to report")
    rnd = bool(table["random_weights"].fillna(False).astype(bool).any())
    analysis = analyse(table, grid_dir)
    summary = summary_table(table, analysis)
    figures = [fig_summary(summary, out, rnd, analysis.best, bool(analysis.valid_ties)),
               fig_feature_decoder_heatmap(table, analysis, out, rnd), fig_by_layer(table, analysis, out, rnd)]
    matrix_png, matrix, _, label = fig_matrix(table, analysis, out, rnd)
    figures += [p for p in (matrix_png, fig_matrices(table, analysis, out, rnd),
                            fig_per_image(table, grid_dir, out, rnd),
                            fig_overlays(table, grid, grid_dir, out, rnd, max_overlays, analysis.best))
                if p is not None]
    tables = report_tables(table, analysis, matrix, label)
    figures, tables = _with_robustness(full, out, rnd, figures, tables, grid.get("mode") == "detection")
    conventions = table.drop_duplicates("metric")[["metric", "threshold_rule", "aggregation", "scale"]]
    conventions = conventions[conventions["metric"].isin(list(SUMMARY_METRICS))].rename(columns={
        "threshold_rule": "threshold rule", "scale": "stored scale (shown in percent)"})
    write_pages(out, figures, tables, readable(conventions), rnd, headline_lines(analysis),
                readable(provenance(full, grid, results, command)))
    return out / "index.html"
