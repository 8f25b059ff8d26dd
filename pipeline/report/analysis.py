"""Everything the report, the grid's closing summary and the demo's say about a results table, computed once.

From the results table (clean views) and the per-image tables beside it: the models' scores on validation and the
chosen best (never a positive control), whether validation can tell it from the others, every model against it on
test ("tied with best"), the intervals of every number shown (in-domain / out-of-domain means per model and metric,
train × test cells), the test-set sizes, the positive control's verdict and the random-weight layer check.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from declip.pipeline.metrics.registry import REGISTRY
from declip.pipeline.metrics.resampling import BootstrapOptions
from declip.pipeline.report.controls import ControlVerdict, LayerCheck, control_verdicts, layer_check
from declip.pipeline.report.grid_files import PerImageTables
from declip.pipeline.report.intervals import PerImageLoader
from declip.pipeline.report.model_intervals import group_intervals, with_domain
from declip.pipeline.report.selection import (SUMMARY_METRICS, best_model, clean_rows, is_baseline, model_scores,
                                              selection_split)
from declip.pipeline.report.ties import ties_with, validation_ties

#: The report's intervals are drawn as the results table's are (1,000 BCa resamples, seed 0, 95 %).
REPORT_BOOTSTRAP = BootstrapOptions()


@dataclass
class Analysis:
    table: pd.DataFrame  # clean rows of the results table
    scores: pd.DataFrame  # model_scores: one row per (source, decoder)
    best: tuple[str, str] | None  # chosen on validation, never a control
    valid_ties: list[tuple[str, str]]  # eligible models validation cannot tell from the best
    test_ties: pd.DataFrame  # every non-control model against the best on test (ties_with)
    domains: pd.DataFrame  # per (source, decoder, domain, metric): mean, interval, seeds, images (test split)
    cells: pd.DataFrame  # test IoU per (source, decoder, train set, test set): mean over seeds, interval
    test_sizes: pd.DataFrame  # per test set: fake and real test images
    controls: list[ControlVerdict] = field(default_factory=list)
    layers: LayerCheck | None = None

    def domain(self, source: str, decoder: str, metric: str = "iou", domain: str = "in-domain") -> dict | None:
        """The group row of one model, metric and domain (value, ci_low, ci_high, n_seeds, ...), or None."""
        d = self.domains
        got = d[(d["source"] == source) & (d["decoder"] == decoder) & (d["metric"] == metric)
                & (d["domain"] == domain)]
        return got.iloc[0].to_dict() if len(got) else None

    @property
    def chosen_wording(self) -> str:
        """How figures and tables name the chosen model: 'chosen on validation', or, when validation cannot tell it
        from others, that it is only the highest there (the headline says there is no single best)."""
        if not self.valid_ties:
            return "chosen on validation"
        return f"highest on validation, not separable there from {len(self.valid_ties)} other(s)"

    @property
    def best_baseline(self) -> dict | None:
        """The baseline with the highest in-domain test IoU (the constant map a model must beat)."""
        d = self.domains
        base = d[d["decoder"].astype(str).str.startswith("baseline:") & (d["metric"] == "iou")
                 & (d["domain"] == "in-domain")]
        return None if base.empty else base.sort_values("value", ascending=False).iloc[0].to_dict()


def _test_sizes(table: pd.DataFrame, load: PerImageLoader) -> pd.DataFrame:
    rows = []
    test = table[(table["split"] == "test") & (table["metric"] == "iou")]
    for test_set, part in test.groupby("test_set", sort=True):
        frame = next((f for f in (load(r) for r in part.head(20).to_dict("records")) if f is not None), None)
        stated = part["n_images"].max() if "n_images" in part else float("nan")
        n_fake = int((frame["label"] == 1).sum()) if frame is not None else (int(stated) if pd.notna(stated)
                                                                             else None)
        n_real = int((frame["label"] == 0).sum()) if frame is not None else None
        rows.append({"test_set": test_set, "fake": n_fake, "real": n_real})
    return pd.DataFrame(rows, columns=["test_set", "fake", "real"])


def analyse(table: pd.DataFrame, grid_dir: str | Path | None = None, load: PerImageLoader | None = None,
            options: BootstrapOptions = REPORT_BOOTSTRAP) -> Analysis:
    """The analysis of a (conformed) results table; per-image tables from ``load`` or ``grid_dir``."""
    load = load or PerImageTables(grid_dir if grid_dir is not None else ".")
    table = clean_rows(table)
    scores = model_scores(table)
    best = best_model(table)
    test = table[table["split"] == "test"]
    domains = []
    for metric in SUMMARY_METRICS:
        if metric in REGISTRY and REGISTRY[metric].level != "image-pixel":
            continue  # dataset-level metrics have per-evaluation intervals in the results table only
        rows = with_domain(test[test["metric"] == metric])
        if len(rows):
            domains.append(group_intervals(rows, ["source", "decoder", "domain"], load, options)
                           .assign(metric=metric))
    domains = pd.concat(domains, ignore_index=True) if domains else pd.DataFrame(
        columns=["source", "decoder", "domain", "metric", "value", "ci_low", "ci_high"])
    iou = test[test["metric"] == "iou"]
    cells = group_intervals(iou, ["source", "decoder", "train_set", "test_set"], load, options)
    models = [(s, d) for s, d, c in zip(scores["source"], scores["decoder"], scores["control"]) if not c]
    if best is not None:
        test_ties = ties_with(iou[~is_baseline(iou)], best, load, "iou", models, options)
        split = selection_split(table)
        eligible = [(s, d) for s, d, e, c in zip(scores["source"], scores["decoder"], scores["eligible"],
                                                 scores["control"]) if e and not c]
        sel = table[(table["split"] == split) & (table["metric"] == "iou") & ~is_baseline(table)]
        valid_ties = validation_ties(sel, best, eligible, load, options)
    else:
        test_ties, valid_ties = pd.DataFrame(columns=["source", "decoder", "status"]), []
    picks = {s: best_model(table, s) for s in scores["source"].unique()}
    iou_domains = domains[domains["metric"] == "iou"] if len(domains) else domains
    return Analysis(table, scores, best, valid_ties, test_ties, domains, cells, _test_sizes(table, load),
                    control_verdicts(iou_domains, picks) if len(iou_domains) else [],
                    layer_check(iou[~is_baseline(iou)], load, options))
