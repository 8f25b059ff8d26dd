"""The summary every grid prints and every report opens with: the headline, then per feature source its best decoder
(chosen on validation) with test in-domain / out-of-domain metrics and their 95 % intervals, beside the baselines.

The headline says what a reader must not miss: which model was chosen (or that validation cannot tell several apart),
its test interval, how it stands against the best constant map (and plainly when it is below one), how many test
images the intervals rest on, whether the positive control passed, and whether two random-weight layers differ.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from declip.pipeline.metrics.registry import REGISTRY
from declip.pipeline.report.analysis import Analysis
from declip.pipeline.report.labels import collapsed_count, is_control, short_source, source_order
from declip.pipeline.report.selection import (BASELINE_PREFIX, DECLIP_DOLOS, SUMMARY_METRICS, best_model, clean_rows,
                                              domain_metrics, is_baseline, is_dolos, model_scores)

DOMAINS = ("in-domain", "out-of-domain")
BASELINE_FEATURE = "no features (baseline)"


def _scale(metric: str) -> float:
    return 1.0 if metric in REGISTRY and REGISTRY[metric].scale == "percent" else 100.0


def _intervals(analysis: Analysis | None, source: str, decoder: str) -> dict:
    """'<domain> <label> low/high' (percent) of one model, and its seeds and in-domain test images."""
    out: dict = {}
    if analysis is None:
        return out
    for domain in DOMAINS:
        for metric, label in SUMMARY_METRICS.items():
            got = analysis.domain(source, decoder, metric, domain)
            if got is not None:
                out[f"{domain} {label} low"] = got["ci_low"] * _scale(metric)
                out[f"{domain} {label} high"] = got["ci_high"] * _scale(metric)
    got = analysis.domain(source, decoder)
    if got is not None:
        out["seeds"] = int(got["n_seeds"])
        out["test images"] = int(got["n_images"])
    return out


def summary_table(table: pd.DataFrame, analysis: Analysis | None = None) -> pd.DataFrame:
    """Per feature source its best decoder (chosen on validation) with test ID/OOD metrics in percent, then every
    baseline; with ``analysis``, each metric's interval (``... low``/``... high``), seeds and test images too."""
    table = clean_rows(table)
    scores = model_scores(table)
    records = []
    for source in sorted(scores["source"].unique(), key=source_order):
        pick = best_model(table, source)
        control = "positive control (checks the pipeline; never the grid's best); " if is_control(source) else ""
        if pick is None:
            recs = scores[scores["source"] == source].to_dict("records")
            detail = ", ".join(f"{r['decoder']}: {r['select_collapsed_in_domain']} of "
                               f"{r['select_in_domain_evaluations']}" for r in recs)
            records.append({"feature": source, "decoder": "—", "note": control + "none chosen: every decoder's "
                            f"in-domain {recs[0]['chosen_on']} evaluations collapsed ({detail})"})
            continue
        decoder = pick[1]
        rec = scores[(scores["source"] == source) & (scores["decoder"] == decoder)].iloc[0]
        note = control + f"chosen on {rec['chosen_on']}"
        if rec["test_collapsed"]:
            note += "; " + collapsed_count(int(rec["test_collapsed"]), int(rec["test_evaluations"]))
        records.append({"feature": source, "decoder": decoder,
                        **domain_metrics(table[(table["source"] == source) & (table["decoder"] == decoder)]),
                        **_intervals(analysis, source, decoder), "note": note})
    base = table[is_baseline(table)]
    for decoder, rows in base.groupby("decoder", sort=True):
        records.append({"feature": BASELINE_FEATURE, "decoder": decoder.removeprefix(BASELINE_PREFIX),
                        **domain_metrics(rows), **_intervals(analysis, "-", decoder), "note": "constant map"})
    if is_dolos(table):
        records.append({**DECLIP_DOLOS, "note": "published (Smeu et al., WACV 2025), not run here"})
    cols = ["feature", "decoder"]
    for d in DOMAINS:
        for m in SUMMARY_METRICS.values():
            cols += [f"{d} {m}"] + ([f"{d} {m} low", f"{d} {m} high"] if analysis is not None else [])
    cols += (["seeds", "test images"] if analysis is not None else []) + ["note"]
    return pd.DataFrame(records).reindex(columns=cols)


def ci_text(value: float, low: float | None, high: float | None, digits: int = 2) -> str:
    """'42.05 [35.10, 48.90]', '42.05' without an interval, '—' without a value."""
    if value is None or not np.isfinite(value):
        return "—"
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def with_interval_text(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary for reading: each metric and its ``low``/``high`` columns merged into one 'v [low, high]' cell."""
    out = summary.copy()
    for col in list(out.columns):
        if f"{col} low" in out.columns:
            out[col] = [ci_text(v, lo, hi) for v, lo, hi in zip(out[col], out[f"{col} low"], out[f"{col} high"])]
            out = out.drop(columns=[f"{col} low", f"{col} high"])
    return out


def format_summary(summary: pd.DataFrame) -> str:
    """The ID/OOD IoU lines (with intervals when the summary has them) a grid prints at its end."""
    lines = ["test IoU (%) with 95 % intervals, best decoder per feature chosen on validation; "
             "in-domain / out-of-domain:"]
    width = max([len(short_source(f)) for f in summary["feature"]] + [10])
    for rec in summary.to_dict("records"):
        nums = " / ".join(ci_text(rec.get(f"{d} IoU"), rec.get(f"{d} IoU low"), rec.get(f"{d} IoU high"))
                          for d in DOMAINS)
        lines.append(f"  {short_source(rec['feature']):<{width}}  {str(rec['decoder']):<12} {nums}   "
                     f"{rec.get('note') or ''}")
    return "\n".join(lines)


def _name(model: tuple[str, str]) -> str:
    return f"{model[1]} @ {short_source(model[0])}"


def headline_lines(analysis: Analysis) -> list[str]:
    """The headline, one finding a line: the choice, the margin over the best baseline, the test-set sizes, the
    control's verdict and the random-weight layer check."""
    lines = []
    best, base = analysis.best, analysis.best_baseline
    if best is None:
        lines.append("No model could be chosen: every model (positive controls aside) was not eligible, its in-domain "
                     "validation evaluations having collapsed.")
    else:
        ind, ood = analysis.domain(*best), analysis.domain(*best, domain="out-of-domain")
        seeds = f", {ind['n_seeds']} seeds" if ind and ind["n_seeds"] > 1 else ""
        numbers = (f"test IoU in-domain {ci_text(ind['value'], ind['ci_low'], ind['ci_high']) if ind else '—'}, "
                   f"out-of-domain {ci_text(ood['value'], ood['ci_low'], ood['ci_high']) if ood else '—'}{seeds}")
        if analysis.valid_ties:
            others = ", ".join(_name(m) for m in analysis.valid_ties[:6])
            more = f" and {len(analysis.valid_ties) - 6} more" if len(analysis.valid_ties) > 6 else ""
            lines.append(f"No single best model: {_name(best)} has the highest validation IoU, but validation cannot "
                         f"tell it from {len(analysis.valid_ties)} other model(s) (paired Wilcoxon, Holm, p ≥ 0.05): "
                         f"{others}{more}. {_name(best)}: {numbers}.")
        else:
            lines.append(f"Best model {_name(best)} (chosen on validation): {numbers}.")
        if base is not None and ind is not None and np.isfinite(ind["value"]):
            margin = ind["value"] - base["value"]
            name = str(base["decoder"]).removeprefix(BASELINE_PREFIX)
            b = ci_text(base["value"], base["ci_low"], base["ci_high"])
            if margin < 0:
                lines.append(f"It is BELOW a constant map: the {name} baseline scores {b} in-domain, "
                             f"{-margin:.2f} IoU points more.")
            else:
                judged = np.isfinite(ind["ci_low"]) and np.isfinite(base["ci_high"])
                lines.append(f"It is {margin:.2f} IoU points above the best baseline, {name} ({b} in-domain)"
                             + ("; no intervals to compare." if not judged else "; the intervals overlap."
                                if ind["ci_low"] <= base["ci_high"] else "; the intervals do not overlap."))
    sizes = analysis.test_sizes
    if len(sizes):
        each = ", ".join(f"{r.test_set} " + ("unknown" if pd.isna(r.fake) else f"{int(r.fake)}")
                         + ("" if pd.isna(r.real) else f" + {int(r.real)} real") for r in sizes.itertuples())
        lines.append(f"Test images (fake + real) per test set: {each}; every interval resamples these images.")
    lines += [v.line() for v in analysis.controls]
    if analysis.layers is not None:
        lines.append(analysis.layers.line())
    return lines


def closing_lines(results: str | Path) -> list[str]:
    """What ``declip grid``, ``declip report`` and ``declip demo`` print at the end: the summary with intervals, the
    headline (choice, margin, test sizes, control verdict, layer check) and a warning per kind of problem."""
    from declip.pipeline.report.analysis import analyse
    from declip.pipeline.report.results_file import load_results, results_path
    from declip.pipeline.report.tables import conform

    results = results_path(results)
    if not results.exists():
        return []
    table = load_results(results)
    if table.empty or "iou" not in set(table["metric"]):
        return []
    table = conform(table)
    analysis = analyse(table, results.parent)
    lines = [format_summary(summary_table(table, analysis)), *headline_lines(analysis)]
    clean = clean_rows(table)
    decoders = clean[(clean["metric"] == "iou") & ~is_baseline(clean)]
    collapsed = decoders[decoders["collapsed"]]
    if len(collapsed):
        lines.append(f"WARNING: {collapsed_count(len(collapsed), len(decoders), 'decoder')} (near-constant maps); "
                     "they are marked in the results table and the report and never chosen as best")
    if bool(table["random_weights"].fillna(False).astype(bool).any()):
        lines.append("NOTE: some features come from a backbone with RANDOM weights")
    return lines
