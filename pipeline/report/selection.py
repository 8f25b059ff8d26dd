"""Which model is "best", and the per-source summary every grid prints and every report opens with.

A model is a (feature source, decoder) pair trained on each generator of the grid. It is chosen on the
**validation** split (mean IoU over all train × test pairs), never on test; a model whose in-domain evaluations on
that split collapsed for half or more of its training generators cannot be chosen (:mod:`pipeline.metrics.collapse`);
collapsed cells of a chosen model stay marked. A positive control (the SRM features) is chosen per source like any
other, but never as the grid's best model: it checks the pipeline, it is not a result. Test numbers are then reported for the
chosen models: in-domain (train = test generator) and out-of-domain (train ≠ test) means, as DeCLIP's tables do.
Results tables written before validation rows existed fall back to test for the choice, and say so.

Every metric in the summary is in percent (unit-scale metrics such as AP and AUC are multiplied by 100).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from declip.pipeline.report.labels import collapsed_count, is_control, source_order

SUMMARY_METRICS = {"iou": "IoU", "ap": "pixel AP", "pixel_auc": "pixel AUC", "f1_fixed": "F1", "image_auc": "image AUC"}
BASELINE_PREFIX = "baseline:"
# DeCLIP's published Dolos matrix (ViT-L/14 layer20 + RN50 layer3, conv-20; declip-method.md): the reference row.
DECLIP_DOLOS = {"feature": "DeCLIP paper: ViT-L-14@openai/layer20+RN50@openai/layer3", "decoder": "conv-20",
                "in-domain IoU": 73.85, "out-of-domain IoU": 34.72}


def in_percent(table: pd.DataFrame) -> pd.Series:
    """Metric values on one scale: percent (unit-scale values × 100)."""
    scale = table["scale"].fillna("unit") if "scale" in table else pd.Series("unit", index=table.index)
    return table["value"].astype(float) * np.where(scale == "percent", 1.0, 100.0)


def is_baseline(table: pd.DataFrame) -> pd.Series:
    return table["decoder"].astype(str).str.startswith(BASELINE_PREFIX)


def clean_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows evaluated on clean data: choices and summaries never mix in perturbed views (``test_views``), which
    the report's robustness section shows on their own."""
    if "view" not in table.columns:
        return table
    return table[table["view"].fillna("clean") == "clean"]


def selection_split(table: pd.DataFrame) -> str:
    splits = set(table.loc[table["metric"] == "iou", "split"].fillna("test"))
    return "valid" if "valid" in splits else "test"


def _with_domain(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(domain=np.where(df["train_set"] == df["test_set"], "in-domain", "out-of-domain"))


def model_scores(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (source, decoder): the selection score, its split, whether it may be chosen, test ID/OOD IoU."""
    table = clean_rows(table)
    split = selection_split(table)
    iou = _with_domain(table[(table["metric"] == "iou") & ~is_baseline(table)])
    iou = iou.assign(split=iou["split"].fillna("test"), collapsed=iou["collapsed"].fillna(False).astype(bool))
    sel = iou[iou["split"] == split]
    rows = []
    for (source, decoder), part in sel.groupby(["source", "decoder"], sort=True):
        test = iou[(iou["source"] == source) & (iou["decoder"] == decoder) & (iou["split"] == "test")]
        in_domain = part[part["domain"] == "in-domain"]
        collapsed_id = in_domain[in_domain["collapsed"]]
        id_evals = in_domain.drop_duplicates(["run_id", "test_set"])
        rows.append({
            "source": source, "decoder": decoder, "chosen_on": split, "select_iou": float(part["value"].mean()),
            "eligible": 2 * collapsed_id["train_set"].nunique() < max(1, in_domain["train_set"].nunique()),
            "collapsed_in_domain": ", ".join(sorted(set(collapsed_id["train_set"]))),
            "select_collapsed_in_domain": int(id_evals["collapsed"].sum()),
            "select_in_domain_evaluations": int(len(id_evals)),
            "test_collapsed": int(test.drop_duplicates(["run_id", "test_set"])["collapsed"].sum()),
            "test_evaluations": int(test.drop_duplicates(["run_id", "test_set"]).shape[0]),
            "control": is_control(source),
        })
    return pd.DataFrame(rows, columns=["source", "decoder", "chosen_on", "select_iou", "eligible",
                                       "collapsed_in_domain", "select_collapsed_in_domain",
                                       "select_in_domain_evaluations", "test_collapsed", "test_evaluations",
                                       "control"])


def not_eligible_note(rec: dict) -> str:
    """Why a model may not be chosen, in the one wording of collapse."""
    return (f"not eligible: {collapsed_count(rec['select_collapsed_in_domain'], rec['select_in_domain_evaluations'], rec['chosen_on'])} "
            "in-domain")


def best_model(table: pd.DataFrame, source: str | None = None) -> tuple[str, str] | None:
    """(source, decoder) with the highest validation IoU among models that did not collapse; None if none qualifies.
    Without ``source``, positive controls are left out (a control is never the grid's best model)."""
    scores = model_scores(table)
    if source is not None:
        scores = scores[scores["source"] == source]
    else:
        scores = scores[~scores["control"]]
    scores = scores[scores["eligible"]]
    if scores.empty:
        return None
    rec = scores.sort_values(["select_iou", "source", "decoder"], ascending=[False, True, True]).iloc[0]
    return str(rec["source"]), str(rec["decoder"])


def domain_metrics(rows: pd.DataFrame) -> dict[str, float]:
    """Test-split in-domain / out-of-domain means of the summary metrics (percent), keyed like 'in-domain IoU'."""
    rows = clean_rows(rows)
    rows = _with_domain(rows[(rows["split"].fillna("test") == "test") & rows["metric"].isin(list(SUMMARY_METRICS))])
    rows = rows.assign(pct=in_percent(rows))
    out = {}
    for domain in ("in-domain", "out-of-domain"):
        for metric, label in SUMMARY_METRICS.items():
            vals = rows.loc[(rows["domain"] == domain) & (rows["metric"] == metric), "pct"].dropna()
            out[f"{domain} {label}"] = float(vals.mean()) if len(vals) else float("nan")
    return out


def is_dolos(table: pd.DataFrame) -> bool:
    """A real Dolos dataset (not the demo, which only borrows the Dolos layout)."""
    names = set(table["dataset"].dropna().astype(str)) if "dataset" in table else set()
    return any(n.startswith("dolos") and n != "dolos-demo" for n in names)
