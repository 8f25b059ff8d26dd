"""Image-level detection metrics over real + fake images, from one score per image derived from the map.

DeCLIP's localisation model has no detection head, so the image score is a declared reduction of the map
(datasets.md Part 2: "max or mean of the map — must be declared"). Rules:

* ``mean_prob``: mean of the per-pixel sigmoids (DeCLIP's evaluation).
* ``mean_logit_sigmoid``: sigmoid of the mean logit (DeCLIP's training-time image score). Logits are recovered
  from probabilities clipped to [1e-7, 1 − 1e-7], so saturated float32 pixels contribute at most ±16.1.
* ``max_prob``: the largest pixel probability.

A map's score is computed on whatever map :class:`pipeline.metrics.MetricAccumulator` receives (native size).
Accuracy and balanced accuracy predict "fake" when ``score > 0.5``. Metrics needing both classes return nan.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from declip.pipeline.metrics.pixel import binary_ap, binary_auc

THRESHOLD = 0.5
LOGIT_CLIP = 1e-7


def _mean_prob(prob: np.ndarray) -> float:
    return float(np.mean(prob, dtype=np.float64))


def _mean_logit_sigmoid(prob: np.ndarray) -> float:
    p = np.clip(np.asarray(prob, dtype=np.float64), LOGIT_CLIP, 1 - LOGIT_CLIP)
    mean_logit = float(np.mean(np.log(p) - np.log1p(-p)))
    return float(1.0 / (1.0 + np.exp(-mean_logit)))


def _max_prob(prob: np.ndarray) -> float:
    return float(np.max(prob))


SCORE_RULES: dict[str, Callable[[np.ndarray], float]] = {
    "mean_prob": _mean_prob,
    "mean_logit_sigmoid": _mean_logit_sigmoid,
    "max_prob": _max_prob,
}


def image_score(prob_map: np.ndarray, rule: str = "mean_prob") -> float:
    """Reduce a probability map to one image score by a named rule (see module docstring)."""
    try:
        fn = SCORE_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown image score rule {rule!r}; choose one of {sorted(SCORE_RULES)}") from None
    return fn(np.asarray(prob_map))


def _both_classes(labels: np.ndarray) -> bool:
    return bool(labels.size) and bool(labels.any()) and bool((~labels).any())


def image_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC of image scores, fake = positive; nan unless both classes are present."""
    labels = np.asarray(labels, dtype=bool)
    return binary_auc(np.asarray(scores), labels) if _both_classes(labels) else float("nan")


def image_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of image scores, fake = positive; nan unless both classes are present."""
    labels = np.asarray(labels, dtype=bool)
    return binary_ap(np.asarray(scores), labels) if _both_classes(labels) else float("nan")


def image_acc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of ``score > 0.5`` -> fake; defined for one class too, nan only with no images."""
    labels = np.asarray(labels, dtype=bool)
    if not labels.size:
        return float("nan")
    return float(np.mean((np.asarray(scores) > THRESHOLD) == labels))


def image_bacc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Balanced accuracy (mean of real and fake recall) at 0.5; nan unless both classes are present."""
    labels = np.asarray(labels, dtype=bool)
    if not _both_classes(labels):
        return float("nan")
    pred = np.asarray(scores) > THRESHOLD
    return float((np.mean(pred[labels]) + np.mean(~pred[~labels])) / 2)
