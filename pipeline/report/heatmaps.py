"""The report's heat maps: IoU by feature × decoder, every model's train × test matrix, and the chosen model's.

Each cell shows its mean, its 95 % interval (test images, and seeds when there are several) and how many of the
evaluations it averages collapsed. A cell is hatched only when every evaluation in it collapsed (hatching is per
evaluation, never for a cell that merely contains one); colour scales are fitted to the numbers shown, not 0–100.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from declip.pipeline.report.analysis import Analysis  # noqa: E402
from declip.pipeline.report.labels import decorate, short_source, source_order  # noqa: E402
from declip.pipeline.report.selection import is_baseline  # noqa: E402
from declip.pipeline.report.tables import domain_averages, iou_on_test  # noqa: E402

CMAP = "viridis"


def fitted_range(*frames: pd.DataFrame) -> tuple[float, float]:
    """Colour limits fitted to the finite numbers of ``frames`` (a flat panel gets ±1 around its value)."""
    values = np.concatenate([f.to_numpy(dtype=float).ravel() for f in frames if f.size] or [np.zeros(0)])
    values = values[np.isfinite(values)]
    if not values.size:
        return 0.0, 1.0
    low, high = float(np.floor(values.min())), float(np.ceil(values.max()))
    return (low - 1, high + 1) if high <= low else (low, high)


def _text_colour(value: float, vmin: float, vmax: float) -> str:
    """Black on the light end of viridis, white on the dark end (contrast for every cell)."""
    frac = 0.5 if vmax <= vmin else (value - vmin) / (vmax - vmin)
    return "black" if frac > 0.55 else "white"


def heatmap(ax, values: pd.DataFrame, title: str, collapsed: pd.DataFrame | None = None,
            evaluations: pd.DataFrame | None = None, low: pd.DataFrame | None = None,
            high: pd.DataFrame | None = None, vmin: float | None = None, vmax: float | None = None,
            colorbar: bool = True, fontsize: int = 7):
    """Numbers in every cell ('—' where nothing was computed) with their interval; ``collapsed`` / ``evaluations``
    count each cell's collapsed and total evaluations: 'k of n collapsed' is written, and the cell hatched when k = n."""
    arr = values.to_numpy(dtype=float)
    if vmin is None or vmax is None:
        vmin, vmax = fitted_range(values)
    im = ax.imshow(np.ma.masked_invalid(arr), cmap=CMAP, aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_facecolor("#e8e8e8")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in values.columns], rotation=40, ha="right", fontsize=7)
    ax.set_yticks(range(values.shape[0]), [str(i) for i in values.index], fontsize=7)
    grid = lambda frame: None if frame is None else frame.reindex_like(values).to_numpy(dtype=float)  # noqa: E731
    k, n, lo, hi = grid(collapsed), grid(evaluations), grid(low), grid(high)
    for (i, j), v in np.ndenumerate(arr):
        if not np.isfinite(v):
            ax.text(j, i, "—", ha="center", va="center", color="black", fontsize=fontsize)
            continue
        text = f"{v:.1f}"
        if lo is not None and np.isfinite(lo[i, j]) and np.isfinite(hi[i, j]):
            text += f"\n[{lo[i, j]:.1f}, {hi[i, j]:.1f}]"
        bad, total = (int(k[i, j]) if k is not None and np.isfinite(k[i, j]) else 0,
                      int(n[i, j]) if n is not None and np.isfinite(n[i, j]) else 0)
        if bad and bad == total:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="red", lw=1.5))
            ax.text(j, i, text + "\ncollapsed", ha="center", va="center", fontsize=fontsize, color="black",
                    fontweight="bold", bbox=dict(facecolor="white", alpha=0.85, lw=0, pad=1))
            continue
        if bad:
            text += f"\n{bad} of {total} collapsed"
        ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=_text_colour(v, vmin, vmax))
    ax.set_title(title, fontsize=8)
    if colorbar:
        plt.colorbar(im, ax=ax, fraction=0.046)
    return im


def _evaluations(part: pd.DataFrame, index: str, columns: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(collapsed, total) evaluations per cell: each (run, test set) once, whatever the metric rows."""
    evals = part.drop_duplicates(["run_id", "train_set", "test_set"])
    collapsed = evals.pivot_table(index=index, columns=columns, values="collapsed", aggfunc="sum")
    total = evals.pivot_table(index=index, columns=columns, values="collapsed", aggfunc="count")
    return collapsed, total


def _cell_bounds(analysis: Analysis, source: str, decoder: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    c = analysis.cells
    part = c[(c["source"] == source) & (c["decoder"] == decoder)]
    return (part.pivot_table(index="test_set", columns="train_set", values=v, aggfunc="first")
            for v in ("ci_low", "ci_high"))


def fig_feature_decoder_heatmap(table: pd.DataFrame, analysis: Analysis, out: Path, rnd: bool) -> Path:
    """Mean test IoU per decoder × feature, in-domain and out-of-domain, with intervals and collapse counts."""
    iou = iou_on_test(table)
    models = iou[~is_baseline(iou)]
    same = models["train_set"] == models["test_set"]
    sources = sorted(models["source"].unique(), key=source_order)
    names = {s: short_source(s) for s in sources}
    fig, axes = plt.subplots(1, 2, figsize=(3.8 + 2.4 * len(sources), 3.0 + 0.6 * models["decoder"].nunique()))
    panels = []
    for name, part in (("in-domain", models[same]), ("out-of-domain", models[~same])):
        values = part.pivot_table(index="decoder", columns="source", values="value", aggfunc="mean")
        values = values.reindex(columns=[s for s in sources if s in values.columns])
        d = analysis.domains
        d = d[(d["metric"] == "iou") & (d["domain"] == name)]
        bounds = [d.pivot_table(index="decoder", columns="source", values=v, aggfunc="first") for v in
                  ("ci_low", "ci_high")]
        panels.append((name, values, *_evaluations(part, "decoder", "source"), *bounds))
    vmin, vmax = fitted_range(*(p[1] for p in panels))
    for ax, (name, values, k, n, lo, hi) in zip(axes, panels):
        rename = lambda f: f.rename(columns=names)  # noqa: E731
        heatmap(ax, rename(values), f"mean test IoU (%), {name} [95 % interval]\nhatched: every evaluation "
                f"collapsed", rename(k), rename(n), rename(lo), rename(hi), vmin, vmax)
    bottom = decorate(fig, rnd)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    path = out / "iou_layer_decoder_heatmap.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fig_matrices(table: pd.DataFrame, analysis: Analysis, out: Path, rnd: bool) -> Path:
    """Small multiples: the train × test matrix of every (feature, decoder) model, then the baselines' row."""
    iou = iou_on_test(table)
    models = iou[~is_baseline(iou)]
    sources = sorted(models["source"].unique(), key=source_order)
    decoders = sorted(models["decoder"].unique())
    base = sorted(iou.loc[is_baseline(iou), "decoder"].unique())
    rows_n, cols_n = len(sources) + (1 if base else 0), max(len(decoders), len(base), 1)
    side = 0.75 * max(1, iou["train_set"].nunique()) + 1.4
    fig, axes = plt.subplots(rows_n, cols_n, figsize=(side * cols_n + 0.5, side * rows_n + 0.8), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    panels = [(r, c, s, d) for r, s in enumerate(sources) for c, d in enumerate(decoders)]
    panels += [(len(sources), c, "-", d) for c, d in enumerate(base)]
    vmin, vmax = fitted_range(iou[["value"]])
    for r, c, source, decoder in panels:
        part = iou[(iou["decoder"] == decoder) & (iou["source"] == source)]
        if part.empty:
            continue
        ax = axes[r][c]
        ax.axis("on")
        values = part.pivot_table(index="test_set", columns="train_set", values="value", aggfunc="mean")
        k, n = (None, None) if source == "-" else _evaluations(part, "test_set", "train_set")
        id_avg, ood_avg = domain_averages(part)
        chosen = (" ★ chosen" if not analysis.valid_ties else " ★ highest on valid (tied)") \
            if analysis.best == (source, decoder) else ""
        name = f"{decoder.removeprefix('baseline:')} (constant map)" if source == "-" else \
            f"{decoder} @ {short_source(source)}"
        heatmap(ax, values, f"{name}{chosen}\nID {id_avg:.1f} / OOD {ood_avg:.1f}", k, n,
                *_cell_bounds(analysis, source, decoder), vmin, vmax, colorbar=False, fontsize=5)
        ax.set_xlabel("train", fontsize=6)
        ax.set_ylabel("test", fontsize=6)
    fig.suptitle("test IoU (%) [95 % interval] for every model: rows = test generator, columns = train generator "
                 f"(one colour scale, {vmin:.0f}–{vmax:.0f}; hatched: collapsed)", fontsize=9)
    bottom = decorate(fig, rnd)
    fig.tight_layout(rect=(0, bottom, 1, 0.97))
    path = out / "train_test_matrices.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def fig_matrix(table: pd.DataFrame, analysis: Analysis, out: Path, rnd: bool
               ) -> tuple[Path | None, pd.DataFrame, tuple[float, float], str]:
    """The chosen model's matrix (DeCLIP's table layout) with intervals and its ID/OOD averages."""
    if analysis.best is None:
        return None, pd.DataFrame(), (float("nan"), float("nan")), "none (no model could be chosen)"
    source, decoder = analysis.best
    iou = iou_on_test(table)
    part = iou[(iou["decoder"] == decoder) & (iou["source"] == source)]
    matrix = part.pivot_table(index="test_set", columns="train_set", values="value", aggfunc="mean")
    low, high = _cell_bounds(analysis, source, decoder)
    id_avg, ood_avg = domain_averages(part)
    label = f"{decoder} @ {source}"
    fig, ax = plt.subplots(figsize=(2.8 + 1.4 * matrix.shape[1], 2.0 + 1.1 * matrix.shape[0]))
    heatmap(ax, matrix, f"test IoU (%) [95 % interval], test ↓ / train →\n{decoder} @ {short_source(source)} "
            f"({analysis.chosen_wording}): ID {id_avg:.2f}, OOD {ood_avg:.2f}", *_evaluations(part, "test_set", "train_set"),
            low, high)
    ax.set_xlabel("train generator")
    ax.set_ylabel("test generator")
    bottom = decorate(fig, rnd)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    path = out / "train_test_matrix.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    text = matrix.copy().astype(object)
    for (i, j), v in np.ndenumerate(matrix.to_numpy(dtype=float)):
        lo, hi = low.reindex_like(matrix).iat[i, j], high.reindex_like(matrix).iat[i, j]
        text.iat[i, j] = "—" if not np.isfinite(v) else (f"{v:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo)
                                                         else f"{v:.2f}")
    return path, text, (id_avg, ood_avg), label
