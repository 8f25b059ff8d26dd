"""Collapse detection: a set of prediction maps that is (nearly) constant carries no localization.

A decoder that predicts every pixel fake scores IoU = mask area, one that predicts nothing scores 0, and one that
outputs the same map for every image is a mask prior; all three can look like results in a table. Each evaluation
is therefore flagged ``collapsed`` (with the reason) when, over the pixels of its fake images:

* almost all pixels are predicted fake (``p > 0.5`` on ≥ :attr:`CollapseRule.max_fake_fraction`), or
* almost none are (≤ :attr:`CollapseRule.min_fake_fraction`), or
* the mean per-image pixel AUC is within :attr:`CollapseRule.auc_band` of 0.5 (the maps do not rank fake above
  real pixels), or
* the maps hardly vary between images (mean across-image standard deviation of the probability, on a 32×32
  thumbnail, below :attr:`CollapseRule.min_image_spread`).

The statistics are cheap (no sorting) except pixel AUC, which is used when the evaluation computed it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

THUMB = 32


@dataclass(frozen=True)
class CollapseRule:
    max_fake_fraction: float = 0.95
    min_fake_fraction: float = 0.002
    auc_band: float = 0.02
    min_image_spread: float = 0.01

    def reason(self, fake_fraction: float, pixel_auc: float | None, spread: float | None) -> str:
        """Why these statistics mean a collapse ("" when they do not); several reasons are joined by '; '."""
        reasons = []
        if fake_fraction >= self.max_fake_fraction:
            reasons.append(f"{100 * fake_fraction:.1f}% of pixels predicted fake")
        elif fake_fraction <= self.min_fake_fraction:
            reasons.append(f"{100 * fake_fraction:.2f}% of pixels predicted fake")
        if pixel_auc is not None and np.isfinite(pixel_auc) and abs(pixel_auc - 0.5) < self.auc_band:
            reasons.append(f"pixel AUC {pixel_auc:.3f} ≈ 0.5")
        if spread is not None and np.isfinite(spread) and spread < self.min_image_spread:
            reasons.append(f"same map for every image (spread {spread:.4f})")
        return "; ".join(reasons)


DEFAULT_RULE = CollapseRule()


@lru_cache(maxsize=256)
def _thumbnail_index(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.ix_(np.linspace(0, h - 1, THUMB).astype(int), np.linspace(0, w - 1, THUMB).astype(int))


def thumbnail(prob: np.ndarray) -> np.ndarray:
    """A THUMB×THUMB nearest-neighbour sample of a map of any size (enough to see whether maps differ); the sample
    positions are computed once per map size (validation asks for one per head and image, every epoch)."""
    return prob[_thumbnail_index(*prob.shape)]


class CollapseStats:
    """Accumulates what the rule needs, one fake image at a time."""

    def __init__(self) -> None:
        self.fake_pixels = 0
        self.pixels = 0
        self.images = 0
        self._sum = np.zeros((THUMB, THUMB), np.float64)
        self._sumsq = np.zeros((THUMB, THUMB), np.float64)

    def add(self, prob: np.ndarray, pred: np.ndarray | None = None) -> None:
        pred = prob > 0.5 if pred is None else pred
        self.fake_pixels += int(np.count_nonzero(pred))
        self.pixels += int(pred.size)
        thumb = thumbnail(prob).astype(np.float64)
        self._sum += thumb
        self._sumsq += thumb * thumb
        self.images += 1

    @property
    def fake_fraction(self) -> float:
        return self.fake_pixels / self.pixels if self.pixels else float("nan")

    @property
    def spread(self) -> float:
        """Mean over thumbnail pixels of the across-image standard deviation (nan with fewer than 2 images)."""
        if self.images < 2:
            return float("nan")
        mean = self._sum / self.images
        var = np.maximum(self._sumsq / self.images - mean * mean, 0.0)
        return float(np.sqrt(var).mean())

    def verdict(self, pixel_auc: float | None = None, rule: CollapseRule = DEFAULT_RULE) -> tuple[bool, str]:
        if not self.pixels:
            return False, ""
        why = rule.reason(self.fake_fraction, pixel_auc, self.spread)
        return bool(why), why
