"""Dataset-level metrics of a count-weighted set of images: what one bootstrap resample of a test set computes.

Pooled and image-level metrics (image AUC/AP/accuracy, pooled IoU/F1, pooled pixel AP/AUC) are not means over
images, so their intervals resample *images* and recompute the metric from per-image sufficient statistics, never
pixels (pixels of one image are not independent draws):

* image metrics: the image score and label of each image;
* pooled IoU / F1: each image's (TP, FP, FN) at ``p > 0.5``;
* pooled pixel AP / AUC: each image's histograms of fake-pixel and real-pixel probabilities
  (:func:`pixel_histograms`). A resample's pooled curve is the count-weighted sum of histograms, so AP/AUC equal
  scikit-learn's on the maps quantised to the bins (all pixels of a bin tie, as equal scores do in sklearn).

Every function takes ``weights`` of shape (B, n) (B resamples, n images; the observed data is one row of ones)
and returns one value per resample, with the conventions of :mod:`pipeline.metrics.registry` (nan when a metric
needs both classes and a resample lacks one).
"""
from __future__ import annotations

import numpy as np

from declip.pipeline.metrics.image import THRESHOLD as IMAGE_THRESHOLD

IMAGE_METRICS = ("image_auc", "image_ap", "image_acc", "image_bacc")
POOLED_COUNT_METRICS = ("pooled_iou", "pooled_f1")
POOLED_CURVE_METRICS = ("pooled_pixel_ap", "pooled_pixel_auc")
HISTOGRAM_BINS = 256  # the resolution of the uint8 maps `evaluate --save-maps` writes


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def ap_from_curve(tps: np.ndarray, fps: np.ndarray) -> np.ndarray:
    """Step-wise AP per row from cumulative (B, G) TP/FP weights at descending thresholds (sklearn's definition).

    A threshold group that adds no positive adds nothing (its precision may be 0/0 there); nan without positives.
    """
    total = tps[:, -1]
    gained = np.diff(tps, axis=1, prepend=0.0)
    precision = np.where(gained > 0, _divide(tps, tps + fps), 0.0)
    return np.where(total > 0, _divide(np.sum(gained * precision, axis=1), total), np.nan)


def auc_from_curve(tps: np.ndarray, fps: np.ndarray) -> np.ndarray:
    """Trapezoidal ROC AUC per row (ties count half, as sklearn); nan unless both classes have weight."""
    p, n = tps[:, -1], fps[:, -1]
    ok = (p > 0) & (n > 0)
    tpr = np.concatenate([np.zeros((len(tps), 1)), tps], axis=1) / np.where(ok, p, 1)[:, None]
    fpr = np.concatenate([np.zeros((len(fps), 1)), fps], axis=1) / np.where(ok, n, 1)[:, None]
    return np.where(ok, np.trapezoid(tpr, fpr, axis=1), np.nan)


def weighted_curve(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (B, G) fake / real weight with ``score >= t`` at each distinct score t, descending.

    The images are sorted once; every resample only re-weights them (one cumulative sum per class).
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    s = np.asarray(scores)[order]
    y = np.asarray(labels, dtype=bool)[order]
    w = weights[:, order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    tps = np.cumsum(w * y, axis=1)[:, ends]
    fps = np.cumsum(w * ~y, axis=1)[:, ends]
    return tps, fps


def image_metrics(names: tuple[str, ...], scores: np.ndarray, labels: np.ndarray,
                  weights: np.ndarray) -> dict[str, np.ndarray]:
    """Image-level metrics (fake = positive, ``score > 0.5`` predicts fake) per resample, {name: (B,)}.

    AUC and AP share one weighted curve.
    """
    unknown = set(names) - set(IMAGE_METRICS)
    if unknown:
        raise ValueError(f"unknown image metric(s) {sorted(unknown)}; choose from {IMAGE_METRICS}")
    labels = np.asarray(labels, dtype=bool)
    out = {}
    if {"image_auc", "image_ap"} & set(names):
        tps, fps = weighted_curve(scores, labels, weights)
        out.update(image_auc=auc_from_curve(tps, fps), image_ap=ap_from_curve(tps, fps))
    correct = ((np.asarray(scores) > IMAGE_THRESHOLD) == labels).astype(np.float64)
    out["image_acc"] = _divide(weights @ correct, weights.sum(axis=1))
    fake_recall = _divide(weights @ (correct * labels), weights @ labels.astype(np.float64))
    real_recall = _divide(weights @ (correct * ~labels), weights @ (~labels).astype(np.float64))
    out["image_bacc"] = (fake_recall + real_recall) / 2
    return {name: out[name] for name in names}


def image_metric(name: str, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One image-level metric per resample: (B,) (see :func:`image_metrics`)."""
    return image_metrics((name,), scores, labels, weights)[name]


def pooled_count_metric(name: str, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pooled IoU (percent) or F1 from per-image (n, 3) TP/FP/FN counts, per resample: (B,); nan if nothing to count."""
    tp, fp, fn = (weights @ np.asarray(counts, dtype=np.float64)).T
    union = tp + fp + fn
    if name == "pooled_iou":
        return np.where(union > 0, 100.0 * _divide(tp, union), np.nan)
    if name == "pooled_f1":
        return np.where(union > 0, _divide(2 * tp, 2 * tp + fp + fn), np.nan)
    raise ValueError(f"unknown pooled count metric {name!r}; choose one of {POOLED_COUNT_METRICS}")


def pixel_histograms(prob: np.ndarray, gt: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """One image's sufficient statistic for pooled pixel AP/AUC: (2, bins) counts of fake / real pixels per bin.

    Bin k holds probabilities in ``[k/bins, (k+1)/bins)``, the last one also 1.0.
    """
    p = np.asarray(prob, dtype=np.float64).ravel()
    fake = np.asarray(gt, dtype=bool).ravel()
    index = np.clip((p * bins).astype(np.int64), 0, bins - 1)
    return np.stack([np.bincount(index[fake], minlength=bins), np.bincount(index[~fake], minlength=bins)])


def pooled_curve_metric(name: str, histograms: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pooled pixel AP or AUC from per-image (n, 2, bins) histograms (:func:`pixel_histograms`), per resample."""
    hist = np.asarray(histograms, dtype=np.float64)
    fake = weights @ hist[:, 0, ::-1]  # (B, bins), highest bin first: thresholds descending
    real = weights @ hist[:, 1, ::-1]
    tps, fps = np.cumsum(fake, axis=1), np.cumsum(real, axis=1)
    if name == "pooled_pixel_ap":
        return ap_from_curve(tps, fps)
    if name == "pooled_pixel_auc":
        return auc_from_curve(tps, fps)
    raise ValueError(f"unknown pooled curve metric {name!r}; choose one of {POOLED_CURVE_METRICS}")
