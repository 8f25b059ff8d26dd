"""Robustness curves: a trained grid's IoU and AP against perturbation strength, per layer × decoder.

A grid with ``test_views`` evaluates every cell on cached perturbed copies of the test split; the results table
then holds a ``view`` column. Single-operation numeric views (``jpeg:Q``, ``resize:S``, ``blur:SIGMA``, ``noise:STD``)
become curves with the clean result drawn at the operation's identity (quality 100, scale 1, sigma 0, std 0:
JPEG at 100 is not lossless, so that point is labelled *clean* in the table). Compositions and random views
(``jitter``, ``augment``) appear in the table only. Values are means over train sets, test sets and seeds, in percent (like the rest of the report). In
detection mode the image-level AP and AUC get the same curves.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from declip.core.errors import DeclipError  # noqa: E402
from declip.features.views import View  # noqa: E402

PIXEL_METRICS = ("iou", "ap")
IMAGE_METRICS = ("image_ap", "image_auc")
AXES = ("JPEG quality", "resize scale", "blur sigma", "noise std")
CLEAN_AT = {"JPEG quality": 100.0, "resize scale": 1.0, "blur sigma": 0.0, "noise std": 0.0}
LABELS = {"iou": "mean IoU (%)", "ap": "pixel AP (%)", "image_ap": "image AP (%)", "image_auc": "image AUC (%)"}


def robustness_rows(table: pd.DataFrame, image_level: bool = False) -> pd.DataFrame:
    """Long table: decoder, feature (backbone and layer, as the figures name a source), metric, view, axis, strength,
    value (mean over train/test sets and seeds).

    Empty when the grid has no views besides clean. The clean value is repeated on every axis at its identity.
    ``image_level`` (detection grids) adds image AP and AUC.
    """
    if "view" not in table.columns or set(table["view"].fillna("clean")) <= {"clean"}:
        return pd.DataFrame(columns=["decoder", "feature", "trained_on", "metric", "view", "axis", "strength",
                                     "value"])
    from declip.pipeline.report.labels import short_source
    from declip.pipeline.report.selection import in_percent, is_baseline

    if "split" in table.columns:  # views are evaluated on the test split; valid-split rows serve model selection
        table = table[table["split"].fillna("test") == "test"]
    metrics = list(PIXEL_METRICS) + [m for m in IMAGE_METRICS if image_level and m in set(table["metric"])]
    models = table[table["metric"].isin(metrics) & ~is_baseline(table)].copy()
    models["value"] = in_percent(models)  # every metric in percent, as in the rest of the report
    models["view"] = models["view"].fillna("clean")
    trained = models["train_views"] if "train_views" in models.columns else pd.Series("clean", index=models.index)
    models["trained_on"] = trained.fillna("clean").map(trained_on)
    source = models["source"] if "source" in models.columns else pd.Series(None, index=models.index)
    models["feature"] = [short_source(s) if isinstance(s, str) and s not in ("", "-") else layer
                         for s, layer in zip(source, models["layer"])]
    means = models.groupby(["decoder", "feature", "trained_on", "metric", "view"], as_index=False)["value"].mean()
    rows = []
    axes_used = set()
    for rec in means.itertuples(index=False):
        strength = View.parse(rec.view).strength()
        if strength is not None:
            axes_used.add(strength[0])
        rows.append({**rec._asdict(), "axis": strength[0] if strength else None,
                     "strength": strength[1] if strength else None})
    out = pd.DataFrame(rows)
    clean = out[out["view"] == "clean"]
    extra = [dict(rec._asdict(), axis=axis, strength=CLEAN_AT[axis]) for axis in sorted(axes_used)
             for rec in clean.drop(columns=["axis", "strength"]).itertuples(index=False)]
    out = pd.concat([out[out["view"] != "clean"], pd.DataFrame(extra), clean], ignore_index=True)
    return out.reset_index(drop=True)


def trained_on(train_views: str) -> str:
    """Short label of what a cell trained on: ``clean``, ``augment:all x4`` (K copies), or the views themselves.

    The results table joins a cell's training views with ``+``, the views' own composition sign, so the text is read
    back as one composition by the views parser; text it cannot read is shown as it is."""
    try:
        ops = View.parse(train_views).ops
    except DeclipError:
        return str(train_views) or "clean"
    copies = [op for op in ops if op.name == "copy"]
    kinds = {str(op) for op in ops if op.name != "copy"}
    if copies and len(kinds) == 1 and len(ops) == 2 * len(copies):
        return f"{kinds.pop()} x{len(copies)}"
    return str(train_views)


def robustness_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Wide table: one row per decoder × feature × metric, one column per view (clean first, then by axis/strength)."""
    views = rows.drop_duplicates("view")
    def order(view: str) -> tuple:
        s = View.parse(view).strength()
        if view == "clean":
            return (0, 0, 0.0)
        return (1, AXES.index(s[0]), s[1]) if s else (2, 0, view)
    columns = sorted(views["view"], key=order)
    wide = rows.drop_duplicates(["decoder", "feature", "trained_on", "metric", "view"]).pivot_table(
        index=["decoder", "feature", "trained_on", "metric"], columns="view", values="value", aggfunc="first")
    wide = wide.reindex(columns=columns).round(3)
    wide.columns.name = None  # a named column index becomes an empty first column on the page
    return wide


def fig_robustness(rows: pd.DataFrame, out: Path, note: str | None = None) -> Path | None:
    """Metric (rows) × perturbation axis (columns) panels, a line per decoder × feature (backbone and layer)."""
    curves = rows.dropna(subset=["axis"])
    if curves.empty:
        return None
    axes_names = [a for a in AXES if a in set(curves["axis"])]
    metrics = [m for m in (*PIXEL_METRICS, *IMAGE_METRICS) if m in set(curves["metric"])]
    fig, axes = plt.subplots(len(metrics), len(axes_names), figsize=(3.6 * len(axes_names), 2.9 * len(metrics)),
                             squeeze=False)
    for i, metric in enumerate(metrics):
        for j, axis in enumerate(axes_names):
            ax = axes[i][j]
            part = curves[(curves["metric"] == metric) & (curves["axis"] == axis)]
            for (decoder, feature, trained), line in part.groupby(["decoder", "feature", "trained_on"]):
                line = line.sort_values("strength")
                suffix = "" if trained == "clean" else f", trained on {trained}"
                ax.plot(line["strength"], line["value"], marker="o", ms=3, label=f"{decoder} @ {feature}{suffix}")
            if axis in ("JPEG quality", "resize scale"):
                ax.invert_xaxis()  # stronger perturbation to the right on every panel
            ax.set_xlabel(f"{axis} (clean = {CLEAN_AT[axis]:g})", fontsize=8)
            ax.set_ylabel(LABELS.get(metric, metric), fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle("robustness: metric vs perturbation strength (test split, means over train/test sets)", fontsize=9)
    bottom = 0.02
    if note:
        from declip.pipeline.report.labels import note_height, note_text

        bottom = note_height(fig, note_text(fig, note))
    fig.tight_layout(rect=(0, bottom, 1, 0.96))
    path = out / "robustness.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
