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

import os
import threading
from pathlib import Path

import numpy as np

from declip.pipeline.metrics.image import THRESHOLD as IMAGE_THRESHOLD
from declip.pipeline.metrics.resampling import leave_one_out_rows

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


class ImageScores:
    """One evaluation's image scores and labels, sorted once for every resample of its image metrics.

    A resample only re-weights the sorted images. Leave-one-out weights (every image once but one, what BCa's
    jackknife asks for, n of them per interval) take a closed form instead: O(n) for all n of them.
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype=np.float64)
        self.fake = np.asarray(labels, dtype=bool)
        self.order = np.argsort(-self.scores, kind="stable")
        s = self.scores[self.order]
        self.fake_sorted = self.fake[self.order]
        self.ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))  # last position of each tie group
        self.group = np.empty(len(s), np.int64)  # each image's tie group, in original order
        self.group[self.order] = np.cumsum(np.r_[0, (s[1:] != s[:-1]).astype(np.int64)])
        self.correct = ((self.scores > IMAGE_THRESHOLD) == self.fake).astype(np.float64)
        self._loo: dict[str, np.ndarray] = {}

    def curve(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative (B, G) fake / real weight with ``score >= t`` at each distinct score t, descending."""
        w = weights[:, self.order]
        total = np.cumsum(w, axis=1)[:, self.ends]
        tps = np.cumsum(w * self.fake_sorted, axis=1)[:, self.ends]
        return tps, total - tps

    def leave_one_out(self, name: str) -> np.ndarray:
        """AUC or AP of the unit-weight set without image i, for every i: (n,) (computed once per metric)."""
        if name not in self._loo:
            self._loo[name] = self._leave_one_out(name)
        return self._loo[name]

    def _leave_one_out(self, name: str) -> np.ndarray:
        f_g = np.bincount(self.group[self.fake], minlength=len(self.ends)).astype(np.float64)
        r_g = np.bincount(self.group[~self.fake], minlength=len(self.ends)).astype(np.float64)
        tp, fp = np.cumsum(f_g), np.cumsum(r_g)
        p, n, g = tp[-1], fp[-1], self.group
        if name == "image_auc":
            # fake i beats the reals below it and half of its ties; real j loses to the fakes above and half its ties
            beats = (n - fp)[g] + 0.5 * r_g[g]
            loses = (tp - f_g)[g] + 0.5 * f_g[g]
            u = float(np.sum(beats[self.fake]))
            return np.where(self.fake, _divide(u - beats, (p - 1) * n), _divide(u - loses, p * (n - 1)))
        if name != "image_ap":
            raise ValueError(f"no leave-one-out rule for {name!r}")
        term = f_g * _divide(tp, tp + fp)  # each group's share of AP * P
        before = np.cumsum(term) - term  # groups above the removed image are unchanged
        fake_after = np.nan_to_num(f_g * _divide(tp - 1, tp - 1 + fp))  # every group below loses one TP
        real_after = np.nan_to_num(f_g * _divide(tp, tp + fp - 1))  # ... or one FP
        fake_tail = np.cumsum(fake_after[::-1])[::-1] - fake_after  # groups strictly below
        real_tail = np.cumsum(real_after[::-1])[::-1]  # the removed real's group and below
        fake_own = np.nan_to_num((f_g - 1) * _divide(tp - 1, tp - 1 + fp))
        without_fake = _divide((before + fake_own + fake_tail)[g], np.full(len(g), p - 1))
        without_real = (before + real_tail)[g] / p
        return np.where(p - self.fake > 0, np.where(self.fake, without_fake, without_real), np.nan)


def weighted_curve(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (B, G) fake / real weight with ``score >= t`` at each distinct score t, descending."""
    return ImageScores(scores, labels).curve(weights)


def image_metrics(names: tuple[str, ...], images: ImageScores, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Image-level metrics (fake = positive, ``score > 0.5`` predicts fake) per resample, {name: (B,)}."""
    unknown = set(names) - set(IMAGE_METRICS)
    if unknown:
        raise ValueError(f"unknown image metric(s) {sorted(unknown)}; choose from {IMAGE_METRICS}")
    out = {}
    curves = [m for m in ("image_auc", "image_ap") if m in names]
    if curves:
        loo, left_out = leave_one_out_rows(weights)
        rest = np.setdiff1d(np.arange(len(weights)), loo)
        tps, fps = images.curve(weights[rest]) if rest.size else (None, None)
        for name in curves:
            values = np.empty(len(weights))
            values[loo] = images.leave_one_out(name)[left_out]
            if rest.size:
                values[rest] = (auc_from_curve if name == "image_auc" else ap_from_curve)(tps, fps)
            out[name] = values
    fake, correct = images.fake.astype(np.float64), images.correct
    if "image_acc" in names:
        out["image_acc"] = _divide(weights @ correct, weights.sum(axis=1))
    if "image_bacc" in names:
        fake_recall = _divide(weights @ (correct * fake), weights @ fake)
        real_recall = _divide(weights @ (correct * (1 - fake)), weights @ (1 - fake))
        out["image_bacc"] = (fake_recall + real_recall) / 2
    return {name: out[name] for name in names}


def image_metric(name: str, scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One image-level metric per resample: (B,) (see :func:`image_metrics`)."""
    return image_metrics((name,), ImageScores(scores, labels), weights)[name]


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


HISTOGRAM_FILE = "pixel_hist.npz"  # beside an evaluation's per_image table: its fake images' pixel histograms


def save_histograms(path: Path, image_ids: np.ndarray, histograms: np.ndarray) -> None:
    """Write (image ids, (n, 2, bins) histograms) compressed, via a temporary file (a reader never sees half)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.partial.npz")
    np.savez_compressed(tmp, image_id=np.asarray(image_ids, dtype=str), hist=np.asarray(histograms, np.uint32))
    tmp.replace(path)


def load_histograms(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(image ids, histograms) written by :func:`save_histograms`; None when there is no such file."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return data["image_id"].astype(object), data["hist"]
