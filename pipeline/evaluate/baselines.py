"""Feature-free baselines shown beside every decoder: what IoU costs nothing.

* ``all-zero``: predict "real" everywhere (IoU 0 on any image with a mask, 100 on empty ones).
* ``all-fake``: predict "fake" everywhere (IoU = the mask's area: what a decoder collapsed to "all fake" scores).
* ``mask-prior``: the per-pixel mean of the training generator's soft masks, thresholded at the quantile that
  matches the mean manipulated area, so its ``pred > 0.5`` mask has the typical size at the typical place.
  The map is rescaled monotonically (``0.5 · prior / threshold``, clipped), so AP/AUC rank by the prior itself.

A decoder that does not beat all three has learned nothing from the features. All three are constant maps, so
their rows are flagged ``collapsed`` by construction.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from declip.pipeline.evaluate.evaluation import test_rows
from declip.pipeline.metrics.registry import MetricAccumulator
from declip.pipeline.metrics.resize import to_native
from declip.pipeline.data.cached_splits import select_rows
from declip.store.feature_store import FeatureStore

BASELINES = ("all-zero", "all-fake", "mask-prior")


def mask_prior(store: FeatureStore, dataset: str, samples: pd.DataFrame, train_set: str) -> np.ndarray:
    rows = select_rows(samples, np.ones(len(samples), bool), (train_set,), "train", "localization")
    masks = store.soft_masks(dataset, rows).astype(np.float32) / 255.0
    prior = masks.mean(axis=0)
    area = float((masks > 0.5).mean())
    threshold = float(np.quantile(prior, 1.0 - area)) if 0 < area < 1 else 0.5
    threshold = max(threshold, 1e-6)
    return np.clip(0.5 * prior / threshold, 0.0, 1.0).astype(np.float32)


#: keep(name, train set, test set, accumulator): where a caller keeps each baseline's per-image tables.
PerImageSink = Callable[[str, str, str, MetricAccumulator], None]


def baseline_rows(store_url: str, dataset: str, train_sets, test_sets, metrics=None, split: str = "test",
                  keep: PerImageSink | None = None) -> pd.DataFrame:
    """One summary row per (baseline, train set, test set, metric); ``keep`` receives each accumulator, so the
    grid can write the per-image tables its intervals and comparisons resample."""
    store = FeatureStore(store_url, mode="r")
    samples = store.samples(dataset)
    valid = np.ones(len(samples), bool)
    # columns as arrays: pandas' per-row ``iloc`` cost more than the baselines themselves
    heights, widths, labels = (samples[c].to_numpy() for c in ("height", "width", "label"))
    paths = samples["image_path"].tolist()
    frames = []
    for train_set in train_sets:
        maps = {"all-zero": np.zeros((256, 256), np.float32), "all-fake": np.ones((256, 256), np.float32),
                "mask-prior": mask_prior(store, dataset, samples, train_set)}
        for test_set in test_sets:
            rows = test_rows(samples, valid, test_set, split, include_reals=True)
            accs = {name: MetricAccumulator(metrics) for name in maps}
            for row in rows.tolist():  # each native mask read once for the three baselines
                size = (int(heights[row]), int(widths[row]))
                gt = store.native_mask(dataset, row, size) if labels[row] == 1 else None
                for name, prob in maps.items():
                    accs[name].add(to_native(prob, size), gt, int(labels[row]), paths[row])
            for name, acc in accs.items():
                if keep is not None:
                    keep(name, train_set, test_set, acc)
                df = acc.summary()
                df["test_set"], df["train_set"], df["decoder"] = test_set, train_set, f"baseline:{name}"
                df["layer"] = df["source"] = df["backbone"] = "-"
                df["dataset"], df["split"], df["seed"], df["run_id"] = dataset, split, -1, f"baseline-{name}"
                df["faithful"], df["width"], df["random_weights"] = False, 0.0, False
                frames.append(df)
    return pd.concat(frames, ignore_index=True)
