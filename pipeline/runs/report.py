"""``declip report``: the figures and page a grid's results table deserves.

Reads ``results.parquet`` (and ``grid.json``, per-image tables and saved maps beside it) and writes PNG figures —
IoU by layer × decoder (heatmap and lines), DeCLIP's train × test generator matrix with in-domain and out-of-domain
averages, per-image IoU distributions, predicted-mask overlays — plus ``index.html``/``index.md`` linking them with
the tables. Baselines sit beside the decoders everywhere; random backbone weights are stated on every figure.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.errors import DeclipError  # noqa: E402

RANDOM_NOTE = "Backbone weights are RANDOM — these numbers show the pipeline works, not what CLIP features can do"


def _layer_key(name: str) -> int:
    digits = str(name).removeprefix("layer")
    return int(digits) if digits.isdigit() else -1


def _layers(df: pd.DataFrame) -> list[str]:
    return sorted({layer for layer in df["layer"] if layer != "-"}, key=_layer_key)


def _decorate(fig, random_weights: bool) -> None:
    if random_weights:
        fig.text(0.5, 0.005, RANDOM_NOTE, ha="center", va="bottom", fontsize=8, color="crimson")


def domain_averages(iou: pd.DataFrame) -> tuple[float, float]:
    """Mean IoU over train == test cells (in-domain) and train != test cells (out-of-domain)."""
    same = iou["train_set"] == iou["test_set"]
    return float(iou.loc[same, "value"].mean()), float(iou.loc[~same, "value"].mean())


def _heatmap(ax, table: pd.DataFrame, title: str) -> None:
    im = ax.imshow(table.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right")
    ax.set_yticks(range(table.shape[0]), table.index)
    for (i, j), v in np.ndenumerate(table.to_numpy(dtype=float)):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="white", fontsize=7)
    ax.set_title(title, fontsize=9)
    plt.colorbar(im, ax=ax, fraction=0.046)


def _split(iou: pd.DataFrame) -> dict[str, pd.DataFrame]:
    same = iou["train_set"] == iou["test_set"]
    return {"in-domain": iou[same], "out-of-domain": iou[~same]}


def fig_layer_decoder(iou: pd.DataFrame, out: Path, rnd: bool) -> tuple[Path, Path]:
    models = iou[~iou["decoder"].str.startswith("baseline")]
    layers = _layers(models)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3 + 0.4 * models["decoder"].nunique()))
    for ax, (name, part) in zip(axes, _split(models).items()):
        table = part.pivot_table(index="decoder", columns="layer", values="value", aggfunc="mean")
        _heatmap(ax, table.reindex(columns=[c for c in layers if c in table.columns]), f"mean IoU (%), {name}")
    _decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    heat = out / "iou_layer_decoder_heatmap.png"
    fig.savefig(heat, dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, (name, part) in zip(axes, _split(iou).items()):
        for decoder, rows in part.groupby("decoder"):
            if decoder.startswith("baseline"):
                ax.axhline(rows["value"].mean(), ls="--", lw=1, color="grey" if "zero" in decoder else "black",
                           label=decoder)
                continue
            means = rows.groupby("layer")["value"].mean()
            order = sorted(means.index, key=_layer_key)
            ax.plot([_layer_key(x) for x in order], means[order].to_numpy(), marker="o", label=decoder)
        ax.set_xlabel("layer (0-based block index)")
        ax.set_title(f"IoU by layer, {name}", fontsize=9)
    axes[0].set_ylabel("mean IoU (%)")
    axes[1].legend(fontsize=7)
    _decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    lines = out / "iou_by_layer.png"
    fig.savefig(lines, dpi=110)
    plt.close(fig)
    return heat, lines


def best_model(iou: pd.DataFrame) -> tuple[str, str]:
    models = iou[~iou["decoder"].str.startswith("baseline")]
    ood = models[models["train_set"] != models["test_set"]]
    scores = (ood if len(ood) else models).groupby(["decoder", "layer"])["value"].mean()
    return scores.idxmax()


def train_test_matrix(iou: pd.DataFrame, decoder: str, layer: str) -> pd.DataFrame:
    cell = iou[(iou["decoder"] == decoder) & (iou["layer"] == layer)]
    return cell.pivot_table(index="test_set", columns="train_set", values="value", aggfunc="mean")


def fig_matrix(iou: pd.DataFrame, out: Path, rnd: bool) -> tuple[Path, pd.DataFrame, tuple[float, float], str]:
    decoder, layer = best_model(iou)
    matrix = train_test_matrix(iou, decoder, layer)
    cell = iou[(iou["decoder"] == decoder) & (iou["layer"] == layer)]
    id_avg, ood_avg = domain_averages(cell)
    fig, ax = plt.subplots(figsize=(2 + 1.2 * matrix.shape[1], 1.5 + 1.0 * matrix.shape[0]))
    label = f"{decoder} @ {layer}"
    _heatmap(ax, matrix, f"IoU (%) test ↓ / train →, {label}\nID {id_avg:.2f}, OOD {ood_avg:.2f}")
    ax.set_xlabel("train generator")
    ax.set_ylabel("test generator")
    _decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path = out / "train_test_matrix.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, matrix, (id_avg, ood_avg), label


def _eval_dir(grid_dir: Path, run_id: str, test_set: str) -> Path:
    return grid_dir / "runs" / run_id / "eval" / test_set


def fig_per_image(iou: pd.DataFrame, grid_dir: Path, out: Path, rnd: bool) -> Path | None:
    data, labels = [], []
    models = iou[~iou["decoder"].str.startswith("baseline")]
    for decoder, rows in models.groupby("decoder"):
        best_layer = rows.groupby("layer")["value"].mean().idxmax()
        values = []
        for rec in rows[rows["layer"] == best_layer].itertuples():
            path = _eval_dir(grid_dir, rec.run_id, rec.test_set) / "per_image.parquet"
            if path.exists():
                per = pd.read_parquet(path)
                values += per.loc[per["label"] == 1, "iou"].dropna().tolist()
        if values:
            data.append(values)
            labels.append(f"{decoder}\n@{best_layer}")
    if not data:
        return None
    fig, ax = plt.subplots(figsize=(2 + 1.5 * len(data), 4))
    ax.boxplot(data, showmeans=True)
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.set_ylabel("per-image IoU (%), fake images")
    ax.set_title("per-image IoU distribution (best layer per decoder)", fontsize=9)
    _decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path = out / "per_image_iou.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fig_overlays(iou: pd.DataFrame, grid: dict, grid_dir: Path, out: Path, rnd: bool, limit: int) -> Path | None:
    """Image, ground truth and predicted map for a few test images of the best cell (skipped when unavailable)."""
    from PIL import Image

    from store.feature_store import FeatureStore

    decoder, layer = best_model(iou)
    rows = iou[(iou["decoder"] == decoder) & (iou["layer"] == layer) & (iou["train_set"] == iou["test_set"])]
    if rows.empty:
        return None
    rec = rows.iloc[0]
    maps = _eval_dir(grid_dir, rec["run_id"], rec["test_set"]) / "maps"
    try:
        store = FeatureStore(grid["store"], mode="r")
        samples = store.samples(grid["dataset"])
        root = Path(store.dataset_attrs(grid["dataset"])["root"])
    except Exception:  # noqa: BLE001 - the report must not die because the store moved
        return None
    picks = samples[(samples["subset"] == rec["test_set"]) & (samples["split"] == "test") & (samples["label"] == 1)]
    panels = []
    for idx, s in picks.head(limit).iterrows():
        pred = maps / Path(s["image_path"]).with_suffix(".png").name
        if not pred.exists() or not (root / s["image_path"]).exists():
            continue
        gt = store.native_mask(grid["dataset"], int(idx), (int(s["height"]), int(s["width"])))
        panels.append((Image.open(root / s["image_path"]).convert("RGB"), gt, np.asarray(Image.open(pred)) / 255.0))
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 3, figsize=(7.5, 2.5 * len(panels)), squeeze=False)
    for (image, gt, prob), ax in zip(panels, axes):
        ax[0].imshow(image)
        ax[1].imshow(gt if gt is not None else np.zeros_like(prob), cmap="gray", vmin=0, vmax=1)
        ax[2].imshow(image)
        ax[2].imshow(prob, cmap="Reds", alpha=0.5, vmin=0, vmax=1)
        ax[2].contour(prob > 0.5, levels=[0.5], colors="yellow", linewidths=0.8)
        for a, title in zip(ax, ("image", "ground truth (fake = white)", "prediction (p > 0.5 outlined)")):
            a.set_title(title, fontsize=8)
            a.axis("off")
    fig.suptitle(f"{decoder} @ {layer}, train = test = {rec['test_set']}", fontsize=9)
    _decorate(fig, rnd)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    path = out / "overlays.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _tables(iou: pd.DataFrame, matrix: pd.DataFrame, averages: tuple[float, float]) -> dict[str, pd.DataFrame]:
    pivot = iou.pivot_table(index="decoder", columns="layer", values="value", aggfunc="mean")
    pivot = pivot.reindex(columns=sorted(pivot.columns, key=_layer_key))
    matrix = matrix.copy()
    return {"IoU (%) by decoder × layer, all train/test pairs (baselines in column '-')": pivot.round(2),
            f"train × test matrix (ID {averages[0]:.2f}, OOD {averages[1]:.2f})": matrix.round(2)}


def _with_robustness(table: pd.DataFrame, out: Path, rnd: bool, figures: list, tables: dict,
                     detection: bool) -> tuple[list, dict]:
    """Add the robustness curves and table when the grid was evaluated on views (``test_views``); a detection
    grid also gets image-level AP/AUC under each view."""
    from pipeline.runs.robustness import fig_robustness, robustness_rows, robustness_table

    rows = robustness_rows(table, image_level=detection)
    if rows.empty:
        return figures, tables
    png = fig_robustness(rows, out, RANDOM_NOTE if rnd else None)
    wide = robustness_table(rows)
    wide.to_csv(out / "robustness.csv")
    name = "robustness: metric by view (columns), per decoder × layer; means over train/test sets and seeds"
    return figures + ([png] if png else []), {**tables, name: wide}


def write_report(results: str | Path, out: str | Path | None = None, *, max_overlays: int = 6) -> Path:
    results = Path(results)
    if not results.exists():
        raise DeclipError(f"{results} not found; run `declip grid` first (it writes results.parquet)")
    table = pd.read_parquet(results)
    grid_dir = results.parent
    grid = json.loads((grid_dir / "grid.json").read_text()) if (grid_dir / "grid.json").exists() else {}
    out = Path(out) if out else grid_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    views = table["view"].fillna("clean") if "view" in table.columns else pd.Series("clean", index=table.index)
    iou = table[(table["metric"] == "iou") & (views == "clean")].copy()  # views get their own section
    if iou.empty:
        raise DeclipError(f"{results} has no iou rows to report")
    rnd = bool(iou["random_weights"].fillna(False).astype(bool).any())
    figures = list(fig_layer_decoder(iou, out, rnd))
    matrix_png, matrix, averages, label = fig_matrix(iou, out, rnd)
    figures.append(matrix_png)
    figures += [p for p in (fig_per_image(iou, grid_dir, out, rnd),
                            fig_overlays(iou, grid, grid_dir, out, rnd, max_overlays)) if p is not None]
    tables = _tables(iou, matrix, averages)
    figures, tables = _with_robustness(table, out, rnd, figures, tables, grid.get("mode") == "detection")
    conventions = table.drop_duplicates("metric")[["metric", "threshold_rule", "aggregation", "scale"]]
    _write_pages(out, figures, tables, conventions, rnd, label, averages)
    return out / "index.html"


def _write_pages(out: Path, figures: list[Path], tables: dict, conventions: pd.DataFrame, rnd: bool, label: str,
                 averages: tuple[float, float]) -> None:
    banner = f'<p style="background:#fdd;padding:1em;font-size:1.3em"><b>{RANDOM_NOTE}</b></p>' if rnd else ""
    head = f"<h2>Best cell {label}: in-domain IoU {averages[0]:.2f}, out-of-domain IoU {averages[1]:.2f}</h2>"
    imgs = "".join(f'<h3>{p.stem}</h3><a href="{p.name}"><img src="{p.name}" style="max-width:100%"></a>'
                   for p in figures)
    tabs = "".join(f"<h3>{name}</h3>{df.to_html()}" for name, df in tables.items())
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>declip report</title></head><body>"
            f"<h1>declip ablation report</h1>{banner}{head}{imgs}{tabs}<h3>metric conventions</h3>"
            f"{conventions.to_html(index=False)}</body></html>")
    (out / "index.html").write_text(html)
    md = ["# declip ablation report", "", f"**{RANDOM_NOTE}**" if rnd else "", "",
          f"Best cell {label}: ID {averages[0]:.2f}, OOD {averages[1]:.2f}", ""]
    md += [f"![{p.stem}]({p.name})" for p in figures]
    for name, df in tables.items():
        md += ["", f"## {name}", "", df.to_markdown()]
    (out / "index.md").write_text("\n".join(md) + "\n")
