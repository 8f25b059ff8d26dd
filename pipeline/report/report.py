"""``declip report``: the figures and page a grid's results table deserves, and nothing it does not support.

Reads ``results.parquet`` (and ``grid.json``, per-image tables, saved maps and checkpoints beside it) and writes PNG
figures plus ``index.html``/``index.md``:

* the summary: per feature source, the best decoder **chosen on validation** with its test in-domain (train = test
  generator) and out-of-domain IoU, AP, pixel AUC, F1 and image AUC, all in percent, beside the three feature-free
  baselines (all-zero, all-fake, mask prior) and, on Dolos, DeCLIP's published numbers as a reference row;
* IoU by feature × decoder (heatmap) and by layer (lines), the train × test matrix of every model (small multiples)
  and of the chosen one, per-image IoU distributions, and an overlay panel of predicted masks (saved maps, or
  recomputed from the checkpoint and the store when none were saved).

Collapsed evaluations (near-constant maps, :mod:`pipeline.metrics.collapse`) are marked in every figure and table
and never chosen. Random backbone weights are stated on every figure.

This module assembles the report; the parts live beside it: :mod:`.tables` (reading the results table),
:mod:`.selection` (which model is best), :mod:`.figures`, :mod:`.overlays`, :mod:`.robustness`, :mod:`.page`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from declip.core.errors import DeclipError
from declip.pipeline.report.figures import (
    fig_feature_decoder, fig_matrices, fig_matrix, fig_per_image, fig_summary,
)
from declip.pipeline.report.labels import RANDOM_NOTE
from declip.pipeline.report.overlays import fig_overlays
from declip.pipeline.report.page import readable, write_pages
from declip.pipeline.report.robustness import fig_robustness, robustness_rows, robustness_table
from declip.pipeline.report.selection import SUMMARY_METRICS, best_model, summary_table
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
    name = "Robustness: test metric (%) by view (columns), per decoder × layer; means over train/test sets and seeds"
    return figures + ([png] if png else []), {**tables, name: readable(wide.reset_index())}


def write_report(results: str | Path, out: str | Path | None = None, *, max_overlays: int = 4) -> Path:
    """Figures, tables and ``index.html``/``index.md`` for ``results`` (a grid's ``results.parquet``) into ``out``
    (default: ``report/`` beside it); returns the page."""
    results = Path(results)
    if not results.exists():
        raise DeclipError(f"{results} not found; run `declip grid` first (it writes results.parquet)")
    table = conform(pd.read_parquet(results))
    grid_dir = results.parent
    grid = json.loads((grid_dir / "grid.json").read_text()) if (grid_dir / "grid.json").exists() else {}
    out = Path(out) if out else grid_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    views = table["view"].fillna("clean") if "view" in table.columns else pd.Series("clean", index=table.index)
    full, table = table, table[views == "clean"]  # views get their own section (robustness)
    if iou_on_test(table).empty:
        raise DeclipError(f"{results} has no test-split iou rows to report")
    rnd = bool(table["random_weights"].fillna(False).astype(bool).any())
    best = best_model(table)
    summary = summary_table(table)
    figures = [fig_summary(table, summary, out, rnd), *fig_feature_decoder(table, out, rnd)]
    matrix_png, matrix, averages, label = fig_matrix(table, out, rnd, best)
    figures += [p for p in (matrix_png, fig_matrices(table, out, rnd, best), fig_per_image(table, grid_dir, out, rnd),
                            fig_overlays(table, grid, grid_dir, out, rnd, max_overlays, best)) if p is not None]
    tables = {
        "Summary: best decoder per feature, chosen on validation; test metrics in percent": readable(summary),
        "Every model (one whose in-domain validation maps collapsed for half or more of its training generators "
        "is never chosen)":
            readable(models_table(table)),
        f"Train × test matrix of the chosen model {label} (test IoU %)":
            readable(matrix.reset_index().rename(columns={"test_set": "test generator ↓ / train generator →"})),
    }
    figures, tables = _with_robustness(full, out, rnd, figures, tables, grid.get("mode") == "detection")
    conventions = table.drop_duplicates("metric")[["metric", "threshold_rule", "aggregation", "scale"]]
    conventions = conventions[conventions["metric"].isin(list(SUMMARY_METRICS))].rename(columns={
        "threshold_rule": "threshold rule", "scale": "stored scale (shown in percent)"})
    write_pages(out, figures, tables, readable(conventions), rnd, label, averages)
    return out / "index.html"
