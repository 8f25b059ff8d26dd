"""The named metric registry and the accumulator the evaluator feeds one image at a time.

Peer tools disagree on thresholds, inversion, boundary bands, empty-mask rules and per-image vs pooled
aggregation (datasets.md Part 2), so every metric here is a :class:`MetricSpec` that states all of them, and
:meth:`MetricAccumulator.summary` copies those statements into every result row.

Levels:
    ``image-pixel``: computed per FAKE image, then the mean over images. Undefined (nan) values are skipped and
    counted, except for metrics that copy DeCLIP's plain mean (``undefined="propagate"``), where one nan image makes
    the mean nan, as in DeCLIP's ``sum(values) / len(values)``.
    ``pooled``: TP/FP/FN summed over all fake images at ``p > 0.5``, then one value (pooled IoU/F1); or the fake
    and real pixel histograms of all fake images summed, then one curve (pooled pixel AP/AUC, maps read in the 256
    bins of an 8-bit map).
    ``image``: detection over real + fake images from one declared image score per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from declip.pipeline.metrics import image as mi
from declip.pipeline.metrics.collapse import CollapseStats
from declip.pipeline.metrics import pixel as mp
from declip.pipeline.metrics.weighted import HISTOGRAM_BINS, pixel_histograms, pooled_curve_metric
from declip.core.errors import DeclipError
from declip.core.registry import Registry, import_submodules

Level = Literal["image-pixel", "pooled", "image"]
COUNT_COLUMNS = ("tp", "fp", "fn")  # per-image columns of every fake image (not metrics: pooled metrics sum them)
LEVELS: tuple[str, ...] = ("image-pixel", "pooled", "image")


@dataclass(frozen=True)
class MetricSpec:
    """Everything a result row must say about a metric, plus the function that computes it."""

    name: str
    level: Level
    description: str
    threshold_rule: str
    aggregation: str
    fn: Callable = field(repr=False, compare=False)
    higher_is_better: bool = True
    scale: Literal["percent", "unit"] = "unit"
    inverted: bool = False
    boundary_band: bool = False
    undefined: Literal["skip", "propagate"] = "skip"  # what a nan image does to the mean over images
    pooled_from: Literal["counts", "histograms"] = "counts"  # a pooled metric's sufficient statistic per image


REGISTRY: Registry[MetricSpec] = Registry("metric", loader=lambda: import_submodules("declip.pipeline.metrics"))


def register(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to the registry; names are unique."""
    return REGISTRY.add(spec.name, spec)


_MEAN, _POOLED, _DATASET = "mean over images", "pooled pixels", "dataset"
_BAND = "band: fake core = gt min-filtered 15x15, real core = not(gt max-filtered 11x11), reflect border; "

for _spec in (
    MetricSpec("iou", "image-pixel", "DeCLIP headline IoU, percent: 100*(|A&B|+1e-8)/(|A|B|+1e-8); empty union "
               "(empty gt and empty prediction) scores 100", "pred>0.5", _MEAN, mp.iou, scale="percent"),
    MetricSpec("iou_empty0", "image-pixel", "IoU in percent with an empty union scored 0 (IMDLBenCo convention)",
               "pred>0.5", _MEAN, mp.iou_empty0, scale="percent"),
    MetricSpec("f1_fixed", "image-pixel", "DeCLIP F1_fixed, (2TP+1e-32)/max(2TP+FN+FP, 1e-32) over core pixels "
               "only; " + _BAND + "nothing to count (empty or fully eroded mask, no FP) scores 1", "pred>0.5", _MEAN,
               mp.f1_fixed, boundary_band=True),
    MetricSpec("f1_best", "image-pixel", "DeCLIP F1_best: band F1 (DeCLIP's) maximised over thresholds pred>t for "
               "every distinct core value t except the largest (oracle), reported as max(F1_best, F1_fixed); "
               + _BAND + "a map constant over the core scores nan and makes the mean nan, as in DeCLIP",
               "oracle per image", _MEAN, mp.f1_best, boundary_band=True, undefined="propagate"),
    MetricSpec("f1_fixed_trufor", "image-pixel", "TruFor F1_fixed, 2TP/max(2TP+FN+FP, 1e-32) over core pixels only; "
               + _BAND + "nothing to count scores 0", "pred>0.5", _MEAN, mp.f1_fixed_trufor, boundary_band=True),
    MetricSpec("f1_best_trufor", "image-pixel", "TruFor F1_best: band F1 maximised over thresholds pred>t for every "
               "distinct core value t, the empty prediction included (always defined), reported as max(best, "
               "f1_fixed_trufor); " + _BAND + "0/0 scores 0", "oracle per image", _MEAN, mp.f1_best_trufor,
               boundary_band=True),
    MetricSpec("f1_inverted", "image-pixel", "INVERTED band F1: max(F1(p), F1(1-p)) at 0.5 (TruFor / IMDLBenCo "
               "'double'); not comparable to DeCLIP's F1_fixed", "pred>0.5 or pred<=0.5", _MEAN, mp.f1_inverted,
               inverted=True, boundary_band=True),
    MetricSpec("f1_best_inverted", "image-pixel", "INVERTED oracle band F1 as TruFor reports F1_best: "
               "max over thresholds of max(F1(p), F1(1-p))", "oracle per image, inverted", _MEAN,
               mp.f1_best_inverted, inverted=True, boundary_band=True),
    MetricSpec("ap", "image-pixel", "DeCLIP pixel AP over all pixels (step-wise, = sklearn / torchmetrics binary AP), "
               "no band; a mask with no positives scores 0 and counts in the mean (torchmetrics' value)", "none",
               _MEAN, mp.ap),
    MetricSpec("ap_positive_masks", "image-pixel", "pixel AP over all pixels, no band; undefined (skipped, counted) "
               "when the mask has no positives", "none", _MEAN, mp.ap_positive_masks),
    MetricSpec("pixel_auc", "image-pixel", "pixel ROC AUC over all pixels; undefined (skipped, counted) when the "
               "mask is all one class", "none", _MEAN, mp.pixel_auc),
    MetricSpec("pooled_iou", "pooled", "IoU in percent from TP/FP/FN summed over all fake images (large masks "
               "dominate); nan if no positive pixel anywhere", "pred>0.5", _POOLED,
               lambda tp, fp, fn: 100.0 * tp / (tp + fp + fn) if tp + fp + fn else float("nan"), scale="percent"),
    MetricSpec("pooled_f1", "pooled", "F1 2TP/(2TP+FP+FN) from counts summed over all fake images, all pixels, "
               "no band; nan if no positive pixel anywhere", "pred>0.5", _POOLED,
               lambda tp, fp, fn: 2.0 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")),
    MetricSpec("pooled_pixel_ap", "pooled", "pixel AP over the pixels of all fake images pooled (large masks "
               f"dominate), from summed fake/real pixel histograms of {HISTOGRAM_BINS} bins (a map read as 8 bit); "
               "nan if no positive pixel anywhere", "none", _POOLED,
               lambda hist: float(pooled_curve_metric("pooled_pixel_ap", hist[None], np.ones((1, 1)))[0]),
               pooled_from="histograms"),
    MetricSpec("pooled_pixel_auc", "pooled", "pixel ROC AUC over the pixels of all fake images pooled, from summed "
               f"fake/real pixel histograms of {HISTOGRAM_BINS} bins; nan unless both classes are present", "none",
               _POOLED, lambda hist: float(pooled_curve_metric("pooled_pixel_auc", hist[None], np.ones((1, 1)))[0]),
               pooled_from="histograms"),
    MetricSpec("image_auc", "image", "image ROC AUC, fake = positive; nan unless both classes present", "none",
               _DATASET, mi.image_auc),
    MetricSpec("image_ap", "image", "image average precision, fake = positive; nan unless both classes present",
               "none", _DATASET, mi.image_ap),
    MetricSpec("image_acc", "image", "image accuracy, score>0.5 predicts fake", "score>0.5", _DATASET,
               mi.image_acc),
    MetricSpec("image_bacc", "image", "balanced accuracy (mean of real and fake recall); nan unless both classes "
               "present", "score>0.5", _DATASET, mi.image_bacc),
):
    register(_spec)


def metric_names(level: str | None = None) -> list[str]:
    """Registered metric names in registry order, optionally only one level."""
    if level is not None and level not in LEVELS:
        raise ValueError(f"unknown metric level {level!r}; choose one of {LEVELS}")
    return [n for n, s in REGISTRY.items() if level is None or s.level == level]


def describe_metrics() -> pd.DataFrame:
    """One row per registered metric with every convention, for ``--list`` and the report."""
    cols = ["level", "scale", "threshold_rule", "aggregation", "higher_is_better", "inverted", "boundary_band",
            "undefined", "description"]
    return pd.DataFrame([{"metric": s.name, **{c: getattr(s, c) for c in cols}} for s in REGISTRY.values()])


def _resolve(names: Sequence[str] | None) -> list[str]:
    if names is None:
        return metric_names()
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise DeclipError(f"unknown metric(s) {unknown}; known: {', '.join(metric_names())}")
    return list(dict.fromkeys(names))


class MetricAccumulator:
    """Collects per-image results and pooled counts; pixel metrics use fake images, image metrics use all."""

    def __init__(self, names: Sequence[str] | None = None, image_score_rule: str = "mean_prob") -> None:
        self.names = _resolve(names)
        mi.image_score(np.zeros((1, 1)), image_score_rule)  # fail early on an unknown rule
        self.image_score_rule = image_score_rule
        self._pixel = [n for n in self.names if REGISTRY[n].level == "image-pixel"]
        # image scores only where an image-level metric is asked for (per-epoch validation asks for IoU alone, once
        # per head and image); the per-image table says nan otherwise
        self._image = any(REGISTRY[n].level == "image" for n in self.names)
        self._rows: list[dict] = []
        self._pooled = np.zeros(3, dtype=np.int64)  # TP, FP, FN
        self._histograms = any(REGISTRY[n].pooled_from == "histograms" for n in self.names)
        self._hist: dict[str, np.ndarray] = {}  # image id -> (2, bins) fake/real pixel counts (fake images only)
        self.collapse = CollapseStats()

    def add(self, prob_native: np.ndarray, gt: np.ndarray | None, label: int, image_id: str) -> None:
        """Score one image; ``gt`` is its native-size boolean mask (None or ignored for real images)."""
        prob = np.asarray(prob_native, dtype=np.float32)
        row: dict = {"image_id": image_id, "label": int(label),
                     "image_score": mi.image_score(prob, self.image_score_rule) if self._image else float("nan")}
        if int(label) == 1:
            row.update(self._pixel_values(prob, gt))
        self._rows.append(row)
        if self._histograms and int(label) == 1 and gt is not None:
            self._hist[image_id] = pixel_histograms(prob, gt)

    def _pixel_values(self, prob: np.ndarray, gt: np.ndarray | None) -> dict[str, float]:
        """Per-image metric values of a fake image, and its TP/FP/FN at ``p > 0.5`` (what pooled metrics and their
        bootstrap intervals sum); a fake without a mask gets nan everywhere."""
        if gt is None:
            return {n: float("nan") for n in self._pixel}
        case = mp.PixelCase(prob, gt)
        self._pooled += case.counts
        self.collapse.add(case.prob, case.pred)
        return {**{n: float(REGISTRY[n].fn(case)) for n in self._pixel},
                **dict(zip(COUNT_COLUMNS, (int(c) for c in case.counts)))}

    def per_image(self) -> pd.DataFrame:
        """One row per image: image_id, label, image_score, each per-image metric and the fake images' TP/FP/FN at
        ``p > 0.5`` (nan for real images): the ground truth every interval of the results is resampled from."""
        cols = ["image_id", "label", "image_score", *self._pixel, *COUNT_COLUMNS]
        return pd.DataFrame(self._rows, columns=cols)

    def pixel_histograms(self) -> tuple[np.ndarray, np.ndarray]:
        """(image ids, (n, 2, bins) uint32 fake/real pixel histograms) of the fake images with a mask, in the order
        they were added; empty unless a pooled pixel AP/AUC metric was asked for."""
        ids = np.array(list(self._hist), dtype=object)
        hist = np.stack(list(self._hist.values())) if self._hist else np.zeros((0, 2, HISTOGRAM_BINS))
        return ids, hist.astype(np.uint32)

    def summary(self) -> pd.DataFrame:
        """One row per metric with its value, conventions, images used and undefined count, plus the evaluation's
        collapse verdict (the same on every row: it describes the set of maps, see :mod:`pipeline.metrics.collapse`)."""
        per_image = self.per_image()
        fakes = per_image[per_image["label"] == 1]
        values = {name: self._aggregate(REGISTRY[name], per_image, fakes) for name in self.names}
        auc = values["pixel_auc"][0] if "pixel_auc" in values else None
        collapsed, why = self.collapse.verdict(auc)
        rows = []
        for name in self.names:
            spec = REGISTRY[name]
            value, n_images, n_undefined = values[name]
            rule = spec.threshold_rule
            if spec.level == "image":
                rule = f"{rule}; score={self.image_score_rule}"
            rows.append({"metric": name, "value": value, "level": spec.level, "threshold_rule": rule,
                         "aggregation": spec.aggregation, "scale": spec.scale, "n_images": n_images,
                         "n_undefined": n_undefined, "inverted": spec.inverted,
                         "boundary_band": spec.boundary_band, "higher_is_better": spec.higher_is_better,
                         "description": spec.description, "collapsed": collapsed, "collapse_reason": why,
                         "pred_fake_fraction": self.collapse.fake_fraction})
        return pd.DataFrame(rows)

    def _aggregate(self, spec: MetricSpec, per_image: pd.DataFrame, fakes: pd.DataFrame) -> tuple[float, int, int]:
        """(value, n_images, n_undefined); dataset-level metrics report n_undefined 0 and a nan value if undefined."""
        if spec.level == "image-pixel":
            vals = fakes[spec.name].to_numpy(dtype=np.float64)
            ok = ~np.isnan(vals)
            if spec.undefined == "propagate":
                return (float(vals.mean()) if vals.size else float("nan")), int(vals.size), int((~ok).sum())
            return (float(vals[ok].mean()) if ok.any() else float("nan")), int(vals.size), int((~ok).sum())
        if spec.level == "pooled" and spec.pooled_from == "histograms":
            _, hist = self.pixel_histograms()
            return float(spec.fn(hist.sum(axis=0))), len(fakes), 0
        if spec.level == "pooled":
            return float(spec.fn(*(int(c) for c in self._pooled))), len(fakes), 0
        scores = per_image["image_score"].to_numpy(dtype=np.float64)
        labels = per_image["label"].to_numpy() == 1
        return float(spec.fn(scores, labels)), len(per_image), 0
