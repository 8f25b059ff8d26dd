"""The report's figures from a grid's results table: the summary bars beside the baselines, IoU by feature ×
decoder (heat map) and by layer (lines), every model's train × test matrix and the chosen one's, per-image IoU.

Collapsed evaluations (near-constant maps, :mod:`declip.pipeline.metrics.collapse`) are marked in every figure;
random backbone weights are stated on every figure (:func:`declip.pipeline.report.labels.decorate`).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from declip.core.keys import layer_depth  # noqa: E402
from declip.pipeline.report.labels import curve_name, decorate, short_source, source_order  # noqa: E402
from declip.pipeline.report.selection import best_model, is_baseline, model_scores  # noqa: E402
from declip.pipeline.report.tables import domain_averages, eval_dir, iou_on_test  # noqa: E402

CMAP = "viridis"


def _text_colour(value: float, vmin: float, vmax: float) -> str:
    """Black on the light end of viridis, white on the dark end (contrast for every cell)."""
    frac = 0.5 if vmax <= vmin else (value - vmin) / (vmax - vmin)
    return "black" if frac > 0.55 else "white"


def heatmap(ax, values: pd.DataFrame, title: str, collapsed: pd.DataFrame | None = None,
             vmin: float = 0.0, vmax: float = 100.0, colorbar: bool = True, fontsize: int = 7) -> None:
    """Numbers in every cell ('—' where nothing was computed), collapsed cells hatched and labelled."""
    arr = values.to_numpy(dtype=float)
    im = ax.imshow(np.ma.masked_invalid(arr), cmap=CMAP, aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_facecolor("#e8e8e8")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in values.columns], rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(values.shape[0]), [str(i) for i in values.index], fontsize=7)
    for (i, j), v in np.ndenumerate(arr):
        is_collapsed = collapsed is not None and bool(collapsed.to_numpy()[i, j])
        if not np.isfinite(v):
            ax.text(j, i, "—", ha="center", va="center", color="black", fontsize=fontsize)
            continue
        if is_collapsed:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="red", lw=1.5))
            ax.text(j, i, f"{v:.1f}\ncollapsed", ha="center", va="center", fontsize=fontsize, color="black",
                    fontweight="bold", bbox=dict(facecolor="white", alpha=0.85, lw=0, pad=1))
            continue
        ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=fontsize, color=_text_colour(v, vmin, vmax))
    ax.set_title(title, fontsize=8)
    if colorbar:
        plt.colorbar(im, ax=ax, fraction=0.046)


def fig_summary(table: pd.DataFrame, summary: pd.DataFrame, out: Path, rnd: bool) -> Path:
    """Best decoder per feature (chosen on validation): test ID and OOD IoU bars beside every baseline."""
    rows = summary[summary["feature"] != "no features (baseline)"].reset_index(drop=True)
    base = summary[summary["feature"] == "no features (baseline)"]
    fig, ax = plt.subplots(figsize=(3 + 1.3 * max(1, len(rows)), 4.2))
    x = np.arange(len(rows))
    for k, (domain, colour) in enumerate((("in-domain", "#1f77b4"), ("out-of-domain", "#ff7f0e"))):
        vals = rows[f"{domain} IoU"].astype(float).to_numpy()
        bars = ax.bar(x + (k - 0.5) * 0.38, np.nan_to_num(vals), 0.38, color=colour, label=f"{domain} IoU (test)")
        for bar, v in zip(bars, vals):
            ax.text(bar.get_x() + bar.get_width() / 2, (0 if not np.isfinite(v) else v) + 1,
                    "—" if not np.isfinite(v) else f"{v:.1f}", ha="center", fontsize=7)
    styles = {"all-zero": ":", "all-fake": "--", "mask-prior": "-."}
    for rec in base.to_dict("records"):
        ax.axhline(rec["in-domain IoU"], color="black", lw=1, ls=styles.get(rec["decoder"], "-"),
                   label=f"baseline {rec['decoder']} (in-domain {rec['in-domain IoU']:.1f})")
    labels = [f"{short_source(f)}\n{d}" + ("" if "collapsed" not in str(n) else "\n(some collapsed)")
              for f, d, n in zip(rows["feature"], rows["decoder"], rows["note"])]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("mean IoU (%) on test")
    ax.set_ylim(0, max(100, float(np.nanmax(rows[["in-domain IoU", "out-of-domain IoU"]].to_numpy(float), initial=0)) + 8))
    ax.set_title("best decoder per feature (chosen on validation) vs feature-free baselines", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "summary.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def collapsed_any(part: pd.DataFrame, index: str, columns: str) -> pd.DataFrame:
    return part.pivot_table(index=index, columns=columns, values="collapsed", aggfunc="any").astype(float) > 0


def fig_feature_decoder(table: pd.DataFrame, out: Path, rnd: bool) -> tuple[Path, Path]:
    iou = iou_on_test(table)
    models = iou[~is_baseline(iou)].assign(feature=lambda d: d["source"].map(short_source))
    same = models["train_set"] == models["test_set"]
    features = list(dict.fromkeys(short_source(s) for s in sorted(models["source"].unique(), key=source_order)))
    fig, axes = plt.subplots(1, 2, figsize=(3.5 + 2.2 * len(features), 2.8 + 0.45 * models["decoder"].nunique()))
    for ax, (name, part) in zip(axes, (("in-domain", models[same]), ("out-of-domain", models[~same]))):
        values = part.pivot_table(index="decoder", columns="feature", values="value", aggfunc="mean")
        values = values.reindex(columns=[f for f in features if f in values.columns])
        flags = collapsed_any(part, "decoder", "feature").reindex_like(values).fillna(False)
        heatmap(ax, values, f"mean test IoU (%), {name} (hatched: a collapsed evaluation)", flags)
    decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    heat = out / "iou_layer_decoder_heatmap.png"
    fig.savefig(heat, dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    base = iou[is_baseline(iou)]
    for ax, name in zip(axes, ("in-domain", "out-of-domain")):
        pick = (lambda d: d["train_set"] == d["test_set"]) if name == "in-domain" else \
            (lambda d: d["train_set"] != d["test_set"])
        part = models[pick(models)]
        for (curve, decoder), rows in part.assign(curve=part["source"].map(curve_name)).groupby(["curve", "decoder"]):
            means = rows.groupby("layer")["value"].mean()
            collapsed = rows.groupby("layer")["collapsed"].any()
            order = sorted(means.index, key=layer_depth)
            xs = [layer_depth(x) for x in order]
            style = dict(marker="o", label=f"{decoder} on {curve}")
            if len(xs) == 1:
                ax.axhline(means[order[0]], lw=1.5, alpha=0.7, **{k: v for k, v in style.items() if k != "marker"})
            else:
                ax.plot(xs, means[order].to_numpy(), **style)
            bad = [x for x in order if collapsed[x]]
            if bad and len(xs) > 1:
                ax.scatter([layer_depth(x) for x in bad], means[bad].to_numpy(), marker="x", s=70, color="red",
                           zorder=5, label=None)
        for decoder, rows in base[pick(base)].groupby("decoder"):
            ax.axhline(rows["value"].mean(), ls="--", lw=1, color="grey", label=decoder)
        ax.set_xlabel("layer (0-based block index); single-layer sources as horizontal lines")
        ax.set_title(f"test IoU by layer, {name} (red ×: a collapsed evaluation)", fontsize=9)
    axes[0].set_ylabel("mean IoU (%)")
    axes[1].legend(fontsize=6, ncol=2)
    decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    lines = out / "iou_by_layer.png"
    fig.savefig(lines, dpi=110)
    plt.close(fig)
    return heat, lines


def fig_matrices(table: pd.DataFrame, out: Path, rnd: bool, best: tuple[str, str] | None) -> Path:
    """Small multiples: the train × test matrix of every (feature, decoder) model, then the baselines' row."""
    iou = iou_on_test(table)
    models = iou[~is_baseline(iou)]
    sources = sorted(models["source"].unique(), key=source_order)
    decoders = sorted(models["decoder"].unique())
    base = sorted(iou.loc[is_baseline(iou), "decoder"].unique())
    rows_n = len(sources) + (1 if base else 0)
    cols_n = max(len(decoders), len(base), 1)
    n_sets = max(1, iou["train_set"].nunique())
    side = 0.55 * n_sets + 1.3
    fig, axes = plt.subplots(rows_n, cols_n, figsize=(side * cols_n + 0.5, side * rows_n + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    panels = [(r, c, s, d) for r, s in enumerate(sources) for c, d in enumerate(decoders)]
    panels += [(len(sources), c, "-", d) for c, d in enumerate(base)]
    for r, c, source, decoder in panels:
        part = iou[(iou["decoder"] == decoder) & (iou["source"] == source)]
        if part.empty:
            continue
        ax = axes[r][c]
        ax.axis("on")
        values = part.pivot_table(index="test_set", columns="train_set", values="value", aggfunc="mean")
        flags = None if source == "-" else \
            collapsed_any(part, "test_set", "train_set").reindex_like(values).fillna(False)
        id_avg, ood_avg = domain_averages(part)
        chosen = " ★ chosen" if best == (source, decoder) else ""
        name = f"{decoder} (constant map)" if source == "-" else f"{decoder} @ {short_source(source)}"
        heatmap(ax, values, f"{name}{chosen}\nID {id_avg:.1f} / OOD {ood_avg:.1f}", flags, colorbar=False,
                 fontsize=6)
        ax.set_xlabel("train", fontsize=6)
        ax.set_ylabel("test", fontsize=6)
    fig.suptitle("test IoU (%) for every model: rows = test generator, columns = train generator "
                 "(hatched red: collapsed)", fontsize=9)
    decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    path = out / "train_test_matrices.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def fig_matrix(table: pd.DataFrame, out: Path, rnd: bool, best: tuple[str, str] | None
               ) -> tuple[Path | None, pd.DataFrame, tuple[float, float], str]:
    """The chosen model's matrix (DeCLIP's table layout) with its ID/OOD averages."""
    if best is None:
        return None, pd.DataFrame(), (float("nan"), float("nan")), "none (every model collapsed)"
    source, decoder = best
    iou = iou_on_test(table)
    part = iou[(iou["decoder"] == decoder) & (iou["source"] == source)]
    matrix = part.pivot_table(index="test_set", columns="train_set", values="value", aggfunc="mean")
    flags = collapsed_any(part, "test_set", "train_set").reindex_like(matrix).fillna(False)
    id_avg, ood_avg = domain_averages(part)
    label = f"{decoder} @ {source}"
    fig, ax = plt.subplots(figsize=(2.5 + 1.2 * matrix.shape[1], 1.8 + 1.0 * matrix.shape[0]))
    heatmap(ax, matrix, f"test IoU (%), test ↓ / train →, {decoder} @ {short_source(source)} (chosen on validation)\n"
             f"ID {id_avg:.2f}, OOD {ood_avg:.2f}", flags)
    ax.set_xlabel("train generator")
    ax.set_ylabel("test generator")
    decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = out / "train_test_matrix.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, matrix, (id_avg, ood_avg), label


def fig_per_image(table: pd.DataFrame, grid_dir: Path, out: Path, rnd: bool) -> Path | None:
    data, labels = [], []
    iou = iou_on_test(table)
    for (source, decoder) in [tuple(r) for r in model_scores(table)[["source", "decoder"]].to_numpy()]:
        if best_model(table, source) != (source, decoder):
            continue
        values = []
        for rec in iou[(iou["source"] == source) & (iou["decoder"] == decoder)].itertuples():
            path = eval_dir(grid_dir, rec.run_id, rec.test_set) / "per_image.parquet"
            if path.exists():
                per = pd.read_parquet(path)
                values += per.loc[per["label"] == 1, "iou"].dropna().tolist()
        if values:
            n_bad = int(iou[(iou["source"] == source) & (iou["decoder"] == decoder)]["collapsed"].sum())
            data.append(values)
            labels.append(f"{decoder}\n@{short_source(source)}" + (f"\n{n_bad} collapsed" if n_bad else ""))
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(data), 4))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.set_ylabel("per-image IoU (%), fake test images")
    ax.set_title("per-image IoU distribution (best decoder per feature, all train/test pairs)", fontsize=9)
    decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = out / "per_image_iou.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
