"""Per-image pixel metrics (IoU, boundary-band F1, pixel AP/AUC) and the sorted-count curves they share.

The metrics named after DeCLIP (``f1_fixed``, ``f1_best``, ``ap``, ``iou``) give the numbers of DeCLIP's own
``utils.py`` (declip-method.md §6.2), edge cases included; TruFor's better-behaved variants keep names of their own
(``f1_fixed_trufor``, ``f1_best_trufor``, ``ap_positive_masks``):

* Maps are float32 probabilities at native mask size; the fixed threshold is ``p > 0.5``.
* IoU is in percent with DeCLIP's ε-trick, so an empty union scores 100; ``iou_empty0`` scores it 0 (IMDLBenCo).
* F1 ignores a boundary band: fake core = ``minimum_filter(gt, 15)``, real core = ``~maximum_filter(gt, 11)``,
  scipy's default ``mode="reflect"`` exactly as TruFor calls it (so a mask touching the image border is *not*
  eroded from that side; DeCLIP's own min/max filters, padded with +inf and 0, give the same cores).
* F1 differs in the 0/0 case. TruFor: 2TP / max(2TP + FN + FP, 1e-32), so nothing to count scores 0. DeCLIP adds
  1e-32 to the numerator too, so an empty (or fully eroded) mask with no false positive scores **1.0**.
* F1_best uses predictions ``p > t`` for distinct core values t. TruFor's ``computeMetricsContinue`` includes the
  empty prediction (t = max); DeCLIP's port pads its group-end mask with False, so it drops t = max, and a map that
  is constant over the core pixels leaves no threshold at all: ``torch.max`` of an empty tensor raises, DeCLIP
  catches it as NaN, ``max(nan, fixed)`` keeps the NaN, and its plain mean makes the dataset F1_best NaN.
  Both report max(best, fixed).
* AP is the step-wise sum Σ(Rₙ − Rₙ₋₁)·Pₙ over distinct thresholds, identical to sklearn's
  ``average_precision_score`` and torchmetrics' ``BinaryAveragePrecision`` (no interpolation). With no positive
  pixel, torchmetrics (DeCLIP) returns 0, which DeCLIP averages in; ``ap_positive_masks`` calls it undefined.

Everything that needs an ordering reuses one descending sort per image (:attr:`PixelCase.desc`).
"""

from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np
from scipy.ndimage import maximum_filter, minimum_filter

THRESHOLD = 0.5
ERODE_SIZE = 15  # TruFor extractGTs erodeKernSize
DILATE_SIZE = 11  # TruFor extractGTs dilateKernSize
IOU_EPS = 1e-8  # DeCLIP's smoothing term; makes an empty union score 100 %
F1_FLOOR = 1e-32  # TruFor computeF1 denominator floor (0/0 -> 0); DeCLIP adds it to the numerator too (0/0 -> 1)
_ERODE_KERNEL = np.ones((ERODE_SIZE, ERODE_SIZE), np.uint8)
_DILATE_KERNEL = np.ones((DILATE_SIZE, DILATE_SIZE), np.uint8)


def desc_counts(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative TP/FP for ``score >= t`` at each distinct t, descending (sklearn's ``_binary_clf_curve``).

    Returns (tps, fps, thresholds); one O(n log n) sort instead of a loop over thresholds.
    """
    order = np.argsort(scores)[::-1]  # order within ties is irrelevant: counts are taken at group ends
    return desc_counts_sorted(scores[order], y[order])


def desc_counts_sorted(s: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`desc_counts` for scores already sorted descending, with labels in the same order."""
    if s.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, s[:0]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    tps = np.cumsum(y, dtype=np.int64)[ends]
    fps = ends + 1 - tps
    return tps, fps, s[ends]


def ap_from_counts(tps: np.ndarray, fps: np.ndarray) -> float:
    """Step-wise average precision; nan when there are no positives (recall undefined)."""
    if tps.size == 0 or tps[-1] == 0:
        return float("nan")
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def auc_from_counts(tps: np.ndarray, fps: np.ndarray) -> float:
    """Trapezoidal ROC AUC (ties count half, as sklearn); nan unless both classes are present."""
    if tps.size == 0 or tps[-1] == 0 or fps[-1] == 0:
        return float("nan")
    tpr = np.concatenate(([0.0], tps / tps[-1]))
    fpr = np.concatenate(([0.0], fps / fps[-1]))
    return float(np.trapezoid(tpr, fpr))


def binary_ap(scores: np.ndarray, y: np.ndarray) -> float:
    """Average precision of ``scores`` for binary labels ``y`` (equals sklearn's ``average_precision_score``)."""
    tps, fps, _ = desc_counts(np.asarray(scores).ravel(), np.asarray(y, dtype=bool).ravel())
    return ap_from_counts(tps, fps)


def binary_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of ``scores`` for binary labels ``y`` (equals sklearn's ``roc_auc_score``); nan for one class."""
    tps, fps, _ = desc_counts(np.asarray(scores).ravel(), np.asarray(y, dtype=bool).ravel())
    return auc_from_counts(tps, fps)


def f1_from_counts(tp: np.ndarray | int, fp: np.ndarray | int, fn: np.ndarray | int) -> np.ndarray | float:
    """TruFor's F1 = 2TP / max(2TP + FN + FP, 1e-32), so 0/0 scores 0."""
    tp = np.asarray(tp, dtype=np.float64)
    return 2 * tp / np.maximum(2 * tp + fn + fp, F1_FLOOR)


def f1_declip_from_counts(tp: np.ndarray | int, fp: np.ndarray | int, fn: np.ndarray | int) -> np.ndarray | float:
    """DeCLIP's ``compute_f1``: (2TP + 1e-32) / max(2TP + FN + FP, 1e-32), so 0/0 scores 1."""
    tp = np.asarray(tp, dtype=np.float64)
    return (2 * tp + F1_FLOOR) / np.maximum(2 * tp + fn + fp, F1_FLOOR)


def boundary_cores(gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fake_core, real_core) boolean masks: TruFor's ``extractGTs`` (15×15 erosion, 11×11 dilation, reflect).

    OpenCV's erode/dilate with ``BORDER_REFLECT`` give exactly scipy's ``minimum_filter``/``maximum_filter``
    with its default ``mode="reflect"`` (checked in tests) at ~25× the speed.
    """
    g = np.ascontiguousarray(gt, dtype=np.uint8)
    fake_core = cv2.erode(g, _ERODE_KERNEL, borderType=cv2.BORDER_REFLECT).astype(bool)
    real_core = ~cv2.dilate(g, _DILATE_KERNEL, borderType=cv2.BORDER_REFLECT).astype(bool)
    return fake_core, real_core


def boundary_cores_scipy(gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TruFor's literal ``extractGTs`` (scipy, reflect border): the reference :func:`boundary_cores` must equal."""
    g = np.asarray(gt, dtype=np.uint8)
    return minimum_filter(g, ERODE_SIZE).astype(bool), ~maximum_filter(g, DILATE_SIZE).astype(bool)


def confusion(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int]:
    """(TP, FP, FN) of two boolean masks."""
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(gt)) - tp
    return tp, fp, fn


class PixelCase:
    """One fake image's probability map and mask, with lazily cached intermediates shared by the metrics."""

    def __init__(self, prob: np.ndarray, gt: np.ndarray) -> None:
        prob = np.asarray(prob, dtype=np.float32)
        gt = np.asarray(gt, dtype=bool)
        if prob.shape != gt.shape:
            raise ValueError(f"prediction {prob.shape} and mask {gt.shape} differ; resize with to_native first")
        self.prob = prob
        self.gt = gt

    @cached_property
    def pred(self) -> np.ndarray:
        """Binary prediction at the fixed threshold, ``p > 0.5``."""
        return self.prob > THRESHOLD

    @cached_property
    def counts(self) -> tuple[int, int, int]:
        """(TP, FP, FN) over all pixels at ``p > 0.5``: IoU and pooled metrics."""
        return confusion(self.pred, self.gt)

    @cached_property
    def cores(self) -> tuple[np.ndarray, np.ndarray]:
        """(fake_core, real_core) of the boundary band."""
        return boundary_cores(self.gt)

    @cached_property
    def band_counts(self) -> tuple[int, int, int]:
        """(TP, FP, FN) at ``p > 0.5`` counting only core pixels."""
        fake_core, real_core = self.cores
        tp = int(np.count_nonzero(self.pred & fake_core))
        fn = int(np.count_nonzero(fake_core)) - tp
        fp = int(np.count_nonzero(self.pred & real_core))
        return tp, fp, fn

    @cached_property
    def order(self) -> np.ndarray:
        """Flat pixel indices by descending probability: the one sort shared by AP, AUC and F1_best."""
        return np.ascontiguousarray(np.argsort(self.prob.ravel())[::-1])

    @cached_property
    def sorted_prob(self) -> np.ndarray:
        """Probabilities in :attr:`order`."""
        return self.prob.ravel()[self.order]

    @cached_property
    def sorted_gt(self) -> np.ndarray:
        """Mask in :attr:`order`."""
        return self.gt.ravel()[self.order]

    @cached_property
    def desc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tps, fps, thresholds) over all pixels for ``p >= t``."""
        return desc_counts_sorted(self.sorted_prob, self.sorted_gt)

    @cached_property
    def band_curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(TP, FP, FN) over core pixels for TruFor's threshold set {``p > t``: t a distinct core value}."""
        fake_core, real_core = self.cores
        # One gather of a 2-bit code instead of one per mask: bit 0 fake core, bit 1 real core.
        code = (fake_core.view(np.uint8) | (real_core.view(np.uint8) << 1)).ravel()[self.order]
        keep = code != 0
        y = (code[keep] & 1).astype(bool)
        tps_ge, fps_ge, _ = desc_counts_sorted(self.sorted_prob[keep], y)
        # p > t_k equals p >= t_{k-1} (the next larger value); p > max is the empty prediction.
        tps = np.concatenate(([0], tps_ge[:-1]))
        fps = np.concatenate(([0], fps_ge[:-1]))
        return tps, fps, int(np.count_nonzero(y)) - tps


def iou(case: PixelCase) -> float:
    """DeCLIP IoU in percent: 100·(|A∩B| + 1e-8)/(|A∪B| + 1e-8); both masks empty -> 100."""
    tp, fp, fn = case.counts
    return 100.0 * (tp + IOU_EPS) / (tp + fp + fn + IOU_EPS)


def iou_empty0(case: PixelCase) -> float:
    """IoU in percent with an empty union scored 0 (IMDLBenCo's convention)."""
    tp, fp, fn = case.counts
    union = tp + fp + fn
    return 100.0 * tp / union if union else 0.0


def f1_fixed(case: PixelCase) -> float:
    """DeCLIP F1_fixed: boundary-band F1 at ``p > 0.5``; nothing to count (no core positives, no FP) scores 1.0."""
    return float(f1_declip_from_counts(*case.band_counts))


def f1_fixed_trufor(case: PixelCase) -> float:
    """TruFor's F1_fixed: boundary-band F1 at ``p > 0.5``; nothing to count scores 0."""
    return float(f1_from_counts(*case.band_counts))


def f1_best(case: PixelCase) -> float:
    """DeCLIP F1_best: oracle threshold without the empty prediction, max with F1_fixed; NaN on a core-constant map."""
    tps, fps, fns = (c[1:] for c in case.band_curve)  # index 0 is p > max, which DeCLIP's mask drops
    if tps.size == 0:
        return float("nan")  # DeCLIP: torch.max(empty) raises -> nan, and max(nan, fixed) stays nan
    return float(max(np.max(f1_declip_from_counts(tps, fps, fns)), f1_fixed(case)))


def f1_best_trufor(case: PixelCase) -> float:
    """TruFor's F1_best: oracle threshold including the empty prediction, reported as max(best, F1_fixed_trufor)."""
    tps, fps, fns = case.band_curve
    return float(max(np.max(f1_from_counts(tps, fps, fns)), f1_fixed_trufor(case)))


def f1_inverted(case: PixelCase) -> float:
    """max(F1(p), F1(1−p)) at 0.5 with the band (TruFor / IMDLBenCo "double"); the inverted F1 uses FN as TP."""
    tp, fp, fn = case.band_counts
    _, real_core = case.cores
    tn = int(np.count_nonzero(real_core)) - fp
    return float(max(f1_from_counts(tp, fp, fn), f1_from_counts(fn, tn, tp)))


def f1_best_inverted(case: PixelCase) -> float:
    """TruFor's own F1_best: oracle threshold, maximised over p and 1−p (no max with the fixed value)."""
    tps, fps, fns = case.band_curve
    tns = int(np.count_nonzero(case.cores[1])) - fps
    return float(max(np.max(f1_from_counts(tps, fps, fns)), np.max(f1_from_counts(fns, tns, tps))))


def ap(case: PixelCase) -> float:
    """DeCLIP AP: pixel AP over all pixels (no band); 0 when the mask has no positives, as torchmetrics returns."""
    value = ap_from_counts(*case.desc[:2])
    return 0.0 if np.isnan(value) else value


def ap_positive_masks(case: PixelCase) -> float:
    """Pixel AP over all pixels (no band); nan (undefined, left out of the mean) when the mask has no positives."""
    return ap_from_counts(*case.desc[:2])


def pixel_auc(case: PixelCase) -> float:
    """Pixel ROC AUC over all pixels; nan when the mask is all one class."""
    return auc_from_counts(*case.desc[:2])
