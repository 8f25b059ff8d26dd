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
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from declip.core.errors import DeclipError  # noqa: E402
from declip.pipeline.report.selection import (  # noqa: E402
    SUMMARY_METRICS, best_model, in_percent, is_baseline, model_scores, summary_table,
)

RANDOM_NOTE = "Backbone weights are RANDOM — these numbers show the pipeline works, not what CLIP features can do"
COLLAPSED_MARK = "collapsed"
CMAP = "viridis"


def _layer_key(name: str) -> int:
    digits = str(name).removeprefix("layer")
    return int(digits) if digits.isdigit() else -1


def _decorate(fig, random_weights: bool) -> None:
    if random_weights:
        fig.text(0.5, 0.005, RANDOM_NOTE, ha="center", va="bottom", fontsize=8, color="crimson")


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


def _text_colour(value: float, vmin: float, vmax: float) -> str:
    """Black on the light end of viridis, white on the dark end (contrast for every cell)."""
    frac = 0.5 if vmax <= vmin else (value - vmin) / (vmax - vmin)
    return "black" if frac > 0.55 else "white"


def _heatmap(ax, values: pd.DataFrame, title: str, collapsed: pd.DataFrame | None = None,
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


def _short(source: str) -> str:
    """``demo-vit-small@random-0/layer4`` → ``demo-vit-small/layer4`` for axis labels (the banner says random)."""
    parts = []
    for piece in str(source).split("+"):
        backbone, _, layer = piece.rpartition("/")
        parts.append(f"{backbone.split('@')[0]}/{layer}" if backbone else piece)
    return "+".join(parts)


def _test_iou(table: pd.DataFrame) -> pd.DataFrame:
    return table[(table["metric"] == "iou") & (table["split"] == "test")]


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
    labels = [f"{_short(f)}\n{d}" + ("" if "collapsed" not in str(n) else "\n(some collapsed)")
              for f, d, n in zip(rows["feature"], rows["decoder"], rows["note"])]
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("mean IoU (%) on test")
    ax.set_ylim(0, max(100, float(np.nanmax(rows[["in-domain IoU", "out-of-domain IoU"]].to_numpy(float), initial=0)) + 8))
    ax.set_title("best decoder per feature (chosen on validation) vs feature-free baselines", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    _decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path = out / "summary.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _collapsed_any(part: pd.DataFrame, index: str, columns: str) -> pd.DataFrame:
    return part.pivot_table(index=index, columns=columns, values="collapsed", aggfunc="any").astype(float) > 0


def fig_feature_decoder(table: pd.DataFrame, out: Path, rnd: bool) -> tuple[Path, Path]:
    iou = _test_iou(table)
    models = iou[~is_baseline(iou)].assign(feature=lambda d: d["source"].map(_short))
    same = models["train_set"] == models["test_set"]
    features = sorted(models["feature"].unique(), key=lambda f: (f.split("/")[0], _layer_key(f.rsplit("/", 1)[-1])))
    fig, axes = plt.subplots(1, 2, figsize=(3.5 + 2.2 * len(features), 2.8 + 0.45 * models["decoder"].nunique()))
    for ax, (name, part) in zip(axes, (("in-domain", models[same]), ("out-of-domain", models[~same]))):
        values = part.pivot_table(index="decoder", columns="feature", values="value", aggfunc="mean")
        values = values.reindex(columns=[f for f in features if f in values.columns])
        flags = _collapsed_any(part, "decoder", "feature").reindex_like(values).fillna(False)
        _heatmap(ax, values, f"mean test IoU (%), {name} (hatched: a collapsed evaluation)", flags)
    _decorate(fig, rnd)
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
        for (backbone, decoder), rows in part.assign(bb=part["source"].str.rpartition("/")[0]).groupby(["bb", "decoder"]):
            means = rows.groupby("layer")["value"].mean()
            collapsed = rows.groupby("layer")["collapsed"].any()
            order = sorted(means.index, key=_layer_key)
            xs = [_layer_key(x) for x in order]
            style = dict(marker="o", label=f"{decoder} on {backbone.split('@')[0]}")
            if len(xs) == 1:
                ax.axhline(means[order[0]], lw=1.5, alpha=0.7, **{k: v for k, v in style.items() if k != "marker"})
            else:
                ax.plot(xs, means[order].to_numpy(), **style)
            bad = [x for x in order if collapsed[x]]
            if bad and len(xs) > 1:
                ax.scatter([_layer_key(x) for x in bad], means[bad].to_numpy(), marker="x", s=70, color="red",
                           zorder=5, label=None)
        for decoder, rows in base[pick(base)].groupby("decoder"):
            ax.axhline(rows["value"].mean(), ls="--", lw=1, color="grey", label=decoder)
        ax.set_xlabel("layer (0-based block index); single-layer sources as horizontal lines")
        ax.set_title(f"test IoU by layer, {name} (red ×: a collapsed evaluation)", fontsize=9)
    axes[0].set_ylabel("mean IoU (%)")
    axes[1].legend(fontsize=6, ncol=2)
    _decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    lines = out / "iou_by_layer.png"
    fig.savefig(lines, dpi=110)
    plt.close(fig)
    return heat, lines


def fig_matrices(table: pd.DataFrame, out: Path, rnd: bool, best: tuple[str, str] | None) -> Path:
    """Small multiples: the train × test matrix of every (feature, decoder) model, then the baselines' row."""
    iou = _test_iou(table)
    models = iou[~is_baseline(iou)]
    sources = sorted(models["source"].unique(), key=lambda s: (s.rpartition("/")[0], _layer_key(s.rpartition("/")[2])))
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
            _collapsed_any(part, "test_set", "train_set").reindex_like(values).fillna(False)
        id_avg, ood_avg = domain_averages(part)
        chosen = " ★ chosen" if best == (source, decoder) else ""
        name = f"{decoder} (constant map)" if source == "-" else f"{decoder} @ {_short(source)}"
        _heatmap(ax, values, f"{name}{chosen}\nID {id_avg:.1f} / OOD {ood_avg:.1f}", flags, colorbar=False,
                 fontsize=6)
        ax.set_xlabel("train", fontsize=6)
        ax.set_ylabel("test", fontsize=6)
    fig.suptitle("test IoU (%) for every model: rows = test generator, columns = train generator "
                 "(hatched red: collapsed)", fontsize=9)
    _decorate(fig, rnd)
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
    iou = _test_iou(table)
    part = iou[(iou["decoder"] == decoder) & (iou["source"] == source)]
    matrix = part.pivot_table(index="test_set", columns="train_set", values="value", aggfunc="mean")
    flags = _collapsed_any(part, "test_set", "train_set").reindex_like(matrix).fillna(False)
    id_avg, ood_avg = domain_averages(part)
    label = f"{decoder} @ {source}"
    fig, ax = plt.subplots(figsize=(2.5 + 1.2 * matrix.shape[1], 1.8 + 1.0 * matrix.shape[0]))
    _heatmap(ax, matrix, f"test IoU (%), test ↓ / train →, {decoder} @ {_short(source)} (chosen on validation)\n"
             f"ID {id_avg:.2f}, OOD {ood_avg:.2f}", flags)
    ax.set_xlabel("train generator")
    ax.set_ylabel("test generator")
    _decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = out / "train_test_matrix.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, matrix, (id_avg, ood_avg), label


def _eval_dir(grid_dir: Path, run_id: str, test_set: str) -> Path:
    return grid_dir / "runs" / str(run_id) / "eval" / test_set


def fig_per_image(table: pd.DataFrame, grid_dir: Path, out: Path, rnd: bool) -> Path | None:
    data, labels = [], []
    iou = _test_iou(table)
    for (source, decoder) in [tuple(r) for r in model_scores(table)[["source", "decoder"]].to_numpy()]:
        if best_model(table, source) != (source, decoder):
            continue
        values = []
        for rec in iou[(iou["source"] == source) & (iou["decoder"] == decoder)].itertuples():
            path = _eval_dir(grid_dir, rec.run_id, rec.test_set) / "per_image.parquet"
            if path.exists():
                per = pd.read_parquet(path)
                values += per.loc[per["label"] == 1, "iou"].dropna().tolist()
        if values:
            n_bad = int(iou[(iou["source"] == source) & (iou["decoder"] == decoder)]["collapsed"].sum())
            data.append(values)
            labels.append(f"{decoder}\n@{_short(source)}" + (f"\n{n_bad} collapsed" if n_bad else ""))
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(data), 4))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.set_ylabel("per-image IoU (%), fake test images")
    ax.set_title("per-image IoU distribution (best decoder per feature, all train/test pairs)", fontsize=9)
    _decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = out / "per_image_iou.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _recompute_maps(grid: dict, grid_dir: Path, run_id: str, source: str, rows: list[int]) -> list[np.ndarray]:
    """Predicted maps at native size from the run's checkpoint and the cached features (no maps were saved)."""
    import torch

    from declip.decoders import load_decoder
    from declip.pipeline.metrics.resize import to_native
    from declip.pipeline.data.cached_splits import CachedSplits

    decoder, _ = load_decoder(grid_dir / "runs" / str(run_id) / "best")
    data = CachedSplits.open(grid["store"], grid["dataset"], [source], None)
    feats, cls = data.sources[source].get(np.asarray(rows))
    with torch.no_grad():
        logits = decoder(feats.float(), None if cls is None else cls.float())
    probs = torch.sigmoid(logits[:, 0]).numpy()
    sizes = [(int(data.samples.iloc[r]["height"]), int(data.samples.iloc[r]["width"])) for r in rows]
    return [to_native(p, s) for p, s in zip(probs, sizes)]


def _note_figure(out: Path, text: str, rnd: bool) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, wrap=True)
    _decorate(fig, rnd)
    path = out / "overlays.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def fig_overlays(table: pd.DataFrame, grid: dict, grid_dir: Path, out: Path, rnd: bool, limit: int,
                 best: tuple[str, str] | None) -> Path:
    """Image, ground truth and predicted map for a few in-domain test images of the chosen model: saved maps when the
    grid kept them, otherwise recomputed from the checkpoint and the store. Always written (a note if impossible)."""
    from PIL import Image

    from declip.store.feature_store import FeatureStore

    if best is None:
        return _note_figure(out, "No overlay: every model collapsed, so none was chosen.", rnd)
    source, decoder = best
    iou = _test_iou(table)
    rows = iou[(iou["decoder"] == decoder) & (iou["source"] == source) & (iou["train_set"] == iou["test_set"])]
    if rows.empty:
        return _note_figure(out, f"No overlay: {decoder} @ {source} has no in-domain test evaluation.", rnd)
    rec = rows.sort_values("test_set").iloc[0]
    try:
        store = FeatureStore(grid["store"], mode="r")
        samples = store.samples(grid["dataset"])
        root = Path(store.dataset_attrs(grid["dataset"])["root"])
    except Exception as exc:  # noqa: BLE001 - the report must not die because the store moved
        return _note_figure(out, f"No overlay: the feature store {grid.get('store')} could not be read "
                                 f"({type(exc).__name__}); pass a report next to a reachable store.", rnd)
    picks = samples[(samples["subset"] == rec["test_set"]) & (samples["split"] == "test") & (samples["label"] == 1)]
    picks = picks[[(root / p).exists() for p in picks["image_path"]]].head(limit)
    maps_dir = _eval_dir(grid_dir, rec["run_id"], rec["test_set"]) / "maps"
    saved = [maps_dir / Path(p).with_suffix(".png").name for p in picks["image_path"]]
    how = "saved maps"
    if picks.empty:
        return _note_figure(out, f"No overlay: no readable test image of {rec['test_set']} under {root}.", rnd)
    if all(p.exists() for p in saved):
        probs = [np.asarray(Image.open(p)) / 255.0 for p in saved]
    else:
        try:
            probs = _recompute_maps(grid, grid_dir, rec["run_id"], source, [int(i) for i in picks.index])
            how = "recomputed from the checkpoint"
        except Exception as exc:  # noqa: BLE001
            return _note_figure(out, f"No overlay: maps were not saved and could not be recomputed "
                                     f"({type(exc).__name__}: {exc}).", rnd)
    panels = []
    for (idx, s), prob in zip(picks.iterrows(), probs):
        gt = store.native_mask(grid["dataset"], int(idx), (int(s["height"]), int(s["width"])))
        panels.append((Image.open(root / s["image_path"]).convert("RGB"), gt, prob))
    fig, axes = plt.subplots(len(panels), 3, figsize=(7.5, 2.5 * len(panels)), squeeze=False)
    for (image, gt, prob), ax in zip(panels, axes):
        ax[0].imshow(image)
        ax[1].imshow(gt if gt is not None else np.zeros_like(prob), cmap="gray", vmin=0, vmax=1)
        ax[2].imshow(image)
        ax[2].imshow(prob, cmap="Reds", alpha=0.5, vmin=0, vmax=1)
        if (prob > 0.5).any() and not (prob > 0.5).all():
            ax[2].contour(prob > 0.5, levels=[0.5], colors="yellow", linewidths=0.8)
        for a, title in zip(ax, ("image", "ground truth (fake = white)", "prediction (p > 0.5 outlined)")):
            a.set_title(title, fontsize=8)
            a.axis("off")
    flag = " — COLLAPSED" if bool(rows[rows["test_set"] == rec["test_set"]]["collapsed"].any()) else ""
    fig.suptitle(f"{decoder} @ {_short(source)}, train = test = {rec['test_set']} ({how}){flag}", fontsize=9)
    _decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    path = out / "overlays.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _readable(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Rounded numbers, '—' for anything not computed (no NaN cells)."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].map(lambda v: "—" if pd.isna(v) else f"{v:.{digits}f}")
    return out.fillna("—").replace({"": "—"})


def _with_robustness(table: pd.DataFrame, out: Path, rnd: bool, figures: list, tables: dict,
                     detection: bool) -> tuple[list, dict]:
    """Add the robustness curves and table when the grid was evaluated on views (``test_views``); a detection
    grid also gets image-level AP/AUC under each view."""
    from declip.pipeline.report.robustness import fig_robustness, robustness_rows, robustness_table

    rows = robustness_rows(table, image_level=detection)
    if rows.empty:
        return figures, tables
    png = fig_robustness(rows, out, RANDOM_NOTE if rnd else None)
    wide = robustness_table(rows)
    wide.to_csv(out / "robustness.csv")
    name = "Robustness: test metric (%) by view (columns), per decoder × layer; means over train/test sets and seeds"
    return figures + ([png] if png else []), {**tables, name: _readable(wide.reset_index())}


def models_table(table: pd.DataFrame) -> pd.DataFrame:
    """Every model: its validation IoU (the selection score), test ID/OOD IoU, and its collapsed evaluations."""
    scores = model_scores(table)
    iou = _test_iou(table)
    records = []
    for rec in scores.to_dict("records"):
        part = iou[(iou["source"] == rec["source"]) & (iou["decoder"] == rec["decoder"])]
        id_avg, ood_avg = domain_averages(part) if len(part) else (float("nan"), float("nan"))
        records.append({"feature": rec["source"], "decoder": rec["decoder"],
                        f"{rec['chosen_on']} IoU (selection)": rec["select_iou"],
                        "test in-domain IoU": id_avg, "test out-of-domain IoU": ood_avg,
                        "collapsed test evaluations": f"{rec['test_collapsed']} of {rec['test_evaluations']}",
                        "may be chosen": ("yes" if not rec["collapsed_in_domain"] else
                                          f"yes (collapsed in-domain: {rec['collapsed_in_domain']})")
                        if rec["eligible"] else f"no: collapsed in-domain ({rec['collapsed_in_domain']})"})
    return pd.DataFrame(records)


def write_report(results: str | Path, out: str | Path | None = None, *, max_overlays: int = 4) -> Path:
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
    if _test_iou(table).empty:
        raise DeclipError(f"{results} has no test-split iou rows to report")
    rnd = bool(table["random_weights"].fillna(False).astype(bool).any())
    best = best_model(table)
    summary = summary_table(table)
    figures = [fig_summary(table, summary, out, rnd), *fig_feature_decoder(table, out, rnd)]
    matrix_png, matrix, averages, label = fig_matrix(table, out, rnd, best)
    figures += [p for p in (matrix_png, fig_matrices(table, out, rnd, best), fig_per_image(table, grid_dir, out, rnd),
                            fig_overlays(table, grid, grid_dir, out, rnd, max_overlays, best)) if p is not None]
    tables = {
        "Summary: best decoder per feature, chosen on validation; test metrics in percent": _readable(summary),
        "Every model (one whose in-domain validation maps collapsed for half or more of its training generators "
        "is never chosen)":
            _readable(models_table(table)),
        f"Train × test matrix of the chosen model {label} (test IoU %)":
            _readable(matrix.reset_index().rename(columns={"test_set": "test generator ↓ / train generator →"})),
    }
    figures, tables = _with_robustness(full, out, rnd, figures, tables, grid.get("mode") == "detection")
    conventions = table.drop_duplicates("metric")[["metric", "threshold_rule", "aggregation", "scale"]]
    conventions = conventions[conventions["metric"].isin(list(SUMMARY_METRICS))].rename(columns={
        "threshold_rule": "threshold rule", "scale": "stored scale (shown in percent)"})
    _write_pages(out, figures, tables, _readable(conventions), rnd, label, averages)
    return out / "index.html"


_STYLE = ("<style>body{font-family:sans-serif;max-width:1200px;margin:auto;color:#111}"
          "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
          "th{background:#223;color:#fff;padding:4px 8px;text-align:left}"
          "td{border:1px solid #bbb;padding:3px 8px;color:#111;background:#fff}"
          "tr:nth-child(even) td{background:#f0f0f4}</style>")


def _write_pages(out: Path, figures: list[Path], tables: dict, conventions: pd.DataFrame, rnd: bool, label: str,
                 averages: tuple[float, float]) -> None:
    banner = f'<p style="background:#fdd;padding:1em;font-size:1.3em"><b>{RANDOM_NOTE}</b></p>' if rnd else ""
    if np.isfinite(averages[0]):
        headline = f"Best cell {label} (chosen on validation): in-domain IoU {averages[0]:.2f}, " \
                   f"out-of-domain IoU {averages[1]:.2f} (test)"
    else:
        headline = f"Best cell: {label}"
    imgs = "".join(f'<h3>{p.stem.replace("_", " ")}</h3><a href="{p.name}"><img src="{p.name}" '
                   f'style="max-width:100%"></a>' for p in figures)
    tabs = "".join(f"<h3>{name}</h3>{df.to_html(index=False)}" for name, df in tables.items())
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>declip report</title>{_STYLE}</head><body>"
            f"<h1>declip ablation report</h1>{banner}<h2>{headline}</h2>"
            "<p>All metrics in percent. A <b>collapsed</b> evaluation predicted near-constant maps (almost all "
            "fake, almost none, pixel AUC ≈ 0.5, or the same map for every image); it is marked everywhere and "
            "never chosen.</p>"
            f"{tabs}{imgs}<h3>metric conventions</h3>{conventions.to_html(index=False)}</body></html>")
    (out / "index.html").write_text(html)
    md = ["# declip ablation report", "", f"**{RANDOM_NOTE}**" if rnd else "", "", headline, "",
          "All metrics in percent; collapsed evaluations are marked and never chosen.", ""]
    for name, df in tables.items():
        md += ["", f"## {name}", "", df.to_markdown(index=False)]
    md += [""] + [f"![{p.stem}]({p.name})" for p in figures]
    (out / "index.md").write_text("\n".join(md) + "\n")
