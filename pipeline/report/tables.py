"""The report's reading of a grid's results table: columns filled for older tables, test IoU, in-domain /
out-of-domain averages, train × test matrices and the every-model table. Figures and the page draw from these.
"""
from __future__ import annotations

import pandas as pd

from declip.pipeline.report.grid_files import eval_dir  # noqa: F401 - figures and overlays import it from here
from declip.pipeline.report.labels import collapsed_count
from declip.pipeline.report.selection import is_baseline, model_scores


def conform(table: pd.DataFrame) -> pd.DataFrame:
    """Columns the report relies on, filled for tables written by older versions (one split: test; nothing
    collapsed; the feature source from backbone/layer)."""
    t = table.copy()
    if "split" not in t:
        t["split"] = "test"
    t["split"] = t["split"].fillna("test")
    if "collapsed" not in t:
        t["collapsed"] = False
    t["collapsed"] = t["collapsed"].fillna(False).astype(bool)
    if "collapse_reason" not in t:
        t["collapse_reason"] = ""
    if "source" not in t:
        t["source"] = None
    missing = t["source"].isna() | (t["source"].astype(str) == "")
    if "backbone" in t:
        t.loc[missing, "source"] = t.loc[missing, "backbone"].fillna("").astype(str) + "/" + t.loc[missing, "layer"]
    else:
        t.loc[missing, "source"] = t.loc[missing, "layer"]
    t.loc[is_baseline(t), "source"] = "-"
    for col in ("scale", "random_weights", "run_id", "dataset"):
        if col not in t:
            t[col] = None
    return t


def iou_on_test(table: pd.DataFrame) -> pd.DataFrame:
    """The test-split IoU rows: what every figure and the headline show."""
    return table[(table["metric"] == "iou") & (table["split"] == "test")]


def domain_averages(iou: pd.DataFrame) -> tuple[float, float]:
    """Mean IoU over train == test cells (in-domain) and train != test cells (out-of-domain)."""
    same = iou["train_set"] == iou["test_set"]
    return float(iou.loc[same, "value"].mean()), float(iou.loc[~same, "value"].mean())


def train_test_matrix(iou: pd.DataFrame, decoder: str, source: str) -> pd.DataFrame:
    """Test-split IoU, test generator (rows) × train generator (columns), for one model.

    ``source`` may be a full source or, for tables from single-backbone grids, a layer name."""
    cell = iou[(iou["decoder"] == decoder) & ((iou["source"] == source) | (iou["layer"] == source))]
    if "split" in cell:
        cell = cell[cell["split"].fillna("test") == "test"]
    return cell.pivot_table(index="test_set", columns="train_set", values="value", aggfunc="mean")


def models_table(table: pd.DataFrame, ties: pd.DataFrame | None = None, valid_tied: bool = False) -> pd.DataFrame:
    """Every model: its validation IoU (the selection score), test ID/OOD IoU, its collapsed evaluations, whether it
    may be chosen, and (with ``ties``, :func:`declip.pipeline.report.ties.ties_with`) its paired test difference from
    the chosen model: Δ with its interval, Holm-adjusted p, and 'tied with best' where not significant.
    ``valid_tied``: validation could not separate the best from others, so it is marked as highest there, not chosen
    (the headline and figures say the same)."""
    scores = model_scores(table)
    iou = iou_on_test(table)
    ties = ties.set_index(["source", "decoder"]) if ties is not None and len(ties) else None
    records = []
    for rec in scores.to_dict("records"):
        part = iou[(iou["source"] == rec["source"]) & (iou["decoder"] == rec["decoder"])]
        id_avg, ood_avg = domain_averages(part) if len(part) else (float("nan"), float("nan"))
        if rec["control"]:
            may = "no: positive control (checks the pipeline)"
        elif rec["eligible"]:
            may = "yes"
        else:
            may = f"no: {collapsed_count(rec['select_collapsed_in_domain'], rec['select_in_domain_evaluations'], rec['chosen_on'])} in-domain"
        row = {"feature": rec["source"], "decoder": rec["decoder"],
               f"{rec['chosen_on']} IoU (selection)": rec["select_iou"],
               "test in-domain IoU": id_avg, "test out-of-domain IoU": ood_avg,
               "test evaluations collapsed": f"{rec['test_collapsed']} of {rec['test_evaluations']}",
               "may be chosen": may}
        if ties is not None:
            key = (rec["source"], rec["decoder"])
            tie = ties.loc[key] if key in ties.index else None
            if rec["control"]:
                row.update({"test Δ IoU vs chosen [95 %]": "—", "p (Holm)": "—", "vs chosen (test)": "control: not ranked"})
            elif tie is None:
                row.update({"test Δ IoU vs chosen [95 %]": "—", "p (Holm)": "—", "vs chosen (test)": "not compared"})
            elif tie["status"] == "best":
                row.update({"test Δ IoU vs chosen [95 %]": "—", "p (Holm)": "—", "vs chosen (test)": "★ highest on valid (tied)" if valid_tied else "★ chosen"})
            else:
                row.update({"test Δ IoU vs chosen [95 %]": f"{tie['difference']:+.2f} [{tie['ci_low']:+.2f}, "
                                                           f"{tie['ci_high']:+.2f}]"
                            if pd.notna(tie["difference"]) else "—",
                            "p (Holm)": f"{tie['p_holm']:.3g}" if pd.notna(tie["p_holm"]) else "—",
                            "vs chosen (test)": tie["status"]})
        records.append(row)
    return pd.DataFrame(records)
