"""The overlay panel: image, ground truth and predicted map for a few in-domain test images of the chosen model.

Maps come from the grid's saved ones (``save_maps``) or, when it saved none (the default), are recomputed from the
cell's checkpoint and the cached features by :func:`declip.pipeline.evaluate.maps.maps_of_rows`, the function
evaluation scores with, so the panel shows the maps the numbers were computed on.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from declip.pipeline.report.labels import decorate, short_source  # noqa: E402
from declip.pipeline.report.tables import eval_dir, iou_on_test  # noqa: E402


def recompute_maps(grid: dict, grid_dir: Path, run_id: str, source: str, rows: list[int]) -> list[np.ndarray]:
    """Native-size maps of dataset ``rows`` from run ``run_id``'s best checkpoint and the grid's cached ``source``."""
    from declip.decoders import load_decoder
    from declip.pipeline.data.cached_splits import CachedSplits
    from declip.pipeline.evaluate.maps import maps_of_rows

    decoder, _ = load_decoder(grid_dir / "runs" / str(run_id) / "best")
    data = CachedSplits.open(grid["store"], grid["dataset"], [source], None)
    return [prob for _, prob in maps_of_rows(decoder, data, source, rows)]


def _note_figure(out: Path, text: str, rnd: bool) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 1.8))
    ax.axis("off")
    ax.text(0.5, 0.6, text, ha="center", va="center", fontsize=9, wrap=True)
    decorate(fig, rnd)
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
    iou = iou_on_test(table)
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
    maps_dir = eval_dir(grid_dir, rec["run_id"], rec["test_set"]) / "maps"
    saved = [maps_dir / Path(p).with_suffix(".png").name for p in picks["image_path"]]
    how = "saved maps"
    if picks.empty:
        return _note_figure(out, f"No overlay: no readable test image of {rec['test_set']} under {root}.", rnd)
    if all(p.exists() for p in saved):
        probs = [np.asarray(Image.open(p)) / 255.0 for p in saved]
    else:
        try:
            probs = recompute_maps(grid, grid_dir, rec["run_id"], source, [int(i) for i in picks.index])
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
    fig.suptitle(f"{decoder} @ {short_source(source)}, train = test = {rec['test_set']} ({how}){flag}", fontsize=9)
    bottom = decorate(fig, rnd)
    fig.tight_layout(rect=(0, bottom, 1, 0.97))
    path = out / "overlays.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

