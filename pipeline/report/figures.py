"""The report's figures from a grid's results table: the summary bars beside the baselines, IoU by layer (lines)
and per-image IoU; the heat maps live in :mod:`.heatmaps`.

Every number drawn carries its 95 % interval (error bars; test images, and seeds when there are several); collapsed
evaluations are counted in the one wording of :func:`declip.pipeline.report.labels.collapsed_count`; baselines are
drawn each in its own colour and line style; random backbone weights are stated on every figure
(:func:`declip.pipeline.report.labels.decorate`, wrapped to the figure's width).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from declip.core.keys import layer_depth, source_or_none  # noqa: E402
from declip.pipeline.report.analysis import Analysis  # noqa: E402
from declip.pipeline.report.labels import collapsed_count, curve_name, decorate, is_control, short_source  # noqa: E402
from declip.pipeline.report.selection import best_model, is_baseline, model_scores  # noqa: E402
from declip.pipeline.report.tables import eval_dir, iou_on_test  # noqa: E402

#: One look per baseline, so the three constant maps are told apart in every figure.
BASELINE_STYLE = {"all-zero": ("#7f7f7f", ":"), "all-fake": ("#d62728", "--"), "mask-prior": ("#9467bd", "-.")}


def baseline_style(name: str) -> dict:
    colour, ls = BASELINE_STYLE.get(name.removeprefix("baseline:"), ("black", "-"))
    return {"color": colour, "ls": ls, "lw": 1.3}


def _yerr(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Error-bar lengths below/above each value; 0 where there is no interval."""
    below, above = np.nan_to_num(values - low), np.nan_to_num(high - values)
    return np.clip(np.vstack([below, above]), 0, None)


def fig_summary(summary: pd.DataFrame, out: Path, rnd: bool, best: tuple[str, str] | None, tied: bool = False
                ) -> Path:
    """Best decoder per feature (chosen on validation): test ID and OOD IoU bars with their intervals, beside every
    baseline's in-domain level."""
    rows = summary[summary["feature"] != "no features (baseline)"].reset_index(drop=True)
    base = summary[summary["feature"] == "no features (baseline)"]
    fig, ax = plt.subplots(figsize=(3.5 + 1.5 * max(1, len(rows)), 4.6))
    x = np.arange(len(rows))
    top = 0.0
    for k, (domain, colour) in enumerate((("in-domain", "#1f77b4"), ("out-of-domain", "#ff7f0e"))):
        vals = rows[f"{domain} IoU"].astype(float).to_numpy()
        low = rows.get(f"{domain} IoU low", pd.Series(np.nan, index=rows.index)).astype(float).to_numpy()
        high = rows.get(f"{domain} IoU high", pd.Series(np.nan, index=rows.index)).astype(float).to_numpy()
        pos = x + (k - 0.5) * 0.38
        ax.bar(pos, np.nan_to_num(vals), 0.38, color=colour, label=f"{domain} IoU (test) ± 95 % interval")
        ax.errorbar(pos, np.nan_to_num(vals), yerr=_yerr(vals, low, high), fmt="none", ecolor="black", capsize=3,
                    lw=1)
        for p, v, h in zip(pos, vals, high):
            y = (h if np.isfinite(h) else v) if np.isfinite(v) else 0
            ax.text(p, y + 1, "—" if not np.isfinite(v) else f"{v:.1f}", ha="center", fontsize=7)
            top = max(top, y)
    for rec in base.to_dict("records"):
        ax.axhline(rec["in-domain IoU"], **baseline_style(rec["decoder"]),
                   label=f"baseline {rec['decoder']} (in-domain {rec['in-domain IoU']:.1f})")
        top = max(top, float(rec["in-domain IoU"]) if np.isfinite(rec["in-domain IoU"]) else 0)
    labels = []
    for rec in rows.to_dict("records"):
        text = f"{short_source(rec['feature'])}\n{rec['decoder']}"
        if best == (rec["feature"], rec["decoder"]):
            text += "\n★ highest on valid (tied)" if tied else "\n★ chosen"
        if is_control(rec["feature"]):
            text += "\n(control)"
        if "collapsed" in str(rec["note"]):
            text += "\n" + str(rec["note"]).split("; ")[-1].replace(" evaluations", "")
        labels.append(text)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("mean IoU (%) on test")
    ax.set_ylim(0, top * 1.25 + 5)
    ax.set_title("best decoder per feature (chosen on validation) vs feature-free baselines", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    bottom = decorate(fig, rnd)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    path = out / "summary.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


#: Model curves' colours: tab10 without the baselines' red, purple and grey, so no model line looks like a baseline.
MODEL_COLOURS = ("C0", "C1", "C2", "C5", "C6", "C8", "C9", "black")


def _depth(source: object) -> int:
    key = source_or_none(source)
    return layer_depth(key.layer) if key is not None else 0


def fig_by_layer(table: pd.DataFrame, analysis: Analysis, out: Path, rnd: bool) -> Path:
    """Test IoU against layer depth per backbone × decoder, in-domain and out-of-domain, with 95 % intervals."""
    iou = iou_on_test(table)
    d = analysis.domains
    d = d[d["metric"] == "iou"]
    models = d[~d["decoder"].astype(str).str.startswith("baseline:")]
    base = d[d["decoder"].astype(str).str.startswith("baseline:")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    for ax, name in zip(axes, ("in-domain", "out-of-domain")):
        part = models[models["domain"] == name]
        part = part.assign(curve=part["source"].map(curve_name), depth=part["source"].map(_depth))
        for k, ((curve, decoder), rows) in enumerate(part.groupby(["curve", "decoder"])):
            rows, colour = rows.sort_values("depth"), MODEL_COLOURS[k % len(MODEL_COLOURS)]
            label = f"{decoder} on {curve}" + (" (control)" if is_control(rows["source"].iloc[0]) else "")
            vals = rows["value"].to_numpy(float)
            err = _yerr(vals, rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float))
            if len(rows) == 1:
                ax.axhline(vals[0], lw=1.5, alpha=0.8, color=colour, label=label + f" ({vals[0]:.1f})")
                ax.axhspan(vals[0] - err[0, 0], vals[0] + err[1, 0], color=colour, alpha=0.12)
                continue
            ax.errorbar(rows["depth"], vals, yerr=err, marker="o", capsize=3, color=colour, label=label)
            collapsed = iou[(iou["source"].isin(rows["source"])) & (iou["decoder"] == decoder)
                            & ((iou["train_set"] == iou["test_set"]) == (name == "in-domain"))]
            bad = collapsed.groupby("source")["collapsed"].all()
            bad = rows[rows["source"].map(bad).fillna(False).astype(bool)]
            if len(bad):
                ax.scatter(bad["depth"], bad["value"], marker="x", s=70, color="red", zorder=5)
        for rec in base[base["domain"] == name].to_dict("records"):
            ax.axhline(rec["value"], **baseline_style(rec["decoder"]),
                       label=f"baseline {rec['decoder'].removeprefix('baseline:')} ({rec['value']:.1f})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer (0-based block index); single-layer sources as horizontal lines")
        ax.set_title(f"test IoU by layer, {name} (bars: 95 % interval; red ×: every evaluation collapsed)",
                     fontsize=9)
        ax.legend(fontsize=6, ncol=2)
    axes[0].set_ylabel("mean IoU (%)")
    bottom = decorate(fig, rnd)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    path = out / "iou_by_layer.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fig_per_image(table: pd.DataFrame, grid_dir: Path, out: Path, rnd: bool) -> Path | None:
    data, labels = [], []
    iou = iou_on_test(table)
    for (source, decoder) in [tuple(r) for r in model_scores(table)[["source", "decoder"]].to_numpy()]:
        if best_model(table, source) != (source, decoder):
            continue
        values = []
        rows = iou[(iou["source"] == source) & (iou["decoder"] == decoder)]
        for rec in rows.itertuples():
            path = eval_dir(grid_dir, rec.run_id, rec.test_set) / "per_image.parquet"
            if path.exists():
                per = pd.read_parquet(path)
                values += per.loc[per["label"] == 1, "iou"].dropna().tolist()
        if values:
            evals = rows.drop_duplicates(["run_id", "test_set"])
            n_bad = int(evals["collapsed"].sum())
            data.append(values)
            labels.append(f"{decoder}\n@{short_source(source)}"
                          + (f"\n{collapsed_count(n_bad, len(evals))}".replace(" evaluations", "") if n_bad else ""))
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(2.5 + 1.8 * len(data), 4.2))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.set_ylabel("per-image IoU (%), fake test images")
    ax.set_title("per-image IoU distribution (best decoder per feature, all train/test pairs)", fontsize=9)
    bottom = decorate(fig, rnd)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    path = out / "per_image_iou.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
