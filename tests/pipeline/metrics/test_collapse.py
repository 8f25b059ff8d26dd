"""Collapse detection: near-constant prediction sets are flagged, real localizations are not."""
from __future__ import annotations

import numpy as np
import pytest

from declip.pipeline.metrics.collapse import CollapseRule, CollapseStats
from declip.pipeline.metrics.registry import MetricAccumulator


def _masks(n: int = 8, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = np.zeros((size, size), bool)
        y, x = rng.integers(0, size // 2, 2)
        m[y:y + size // 3, x:x + size // 3] = True
        out.append(m)
    return out


def _summary(maps, masks, metrics=("iou", "pixel_auc")):
    acc = MetricAccumulator(list(metrics))
    for i, (p, m) in enumerate(zip(maps, masks)):
        acc.add(p, m, 1, f"img{i}")
    acc.add(np.zeros((64, 64)), None, 0, "real")
    return acc.summary().set_index("metric")


@pytest.mark.parametrize("kind, reason", [
    ("all_fake", "predicted fake"), ("none", "predicted fake"), ("noise", "AUC"), ("same_map", "same map"),
])
def test_constant_or_uninformative_maps_are_collapsed(kind, reason):
    masks = _masks()
    rng = np.random.default_rng(1)
    maps = {
        "all_fake": [np.full(m.shape, 0.9, np.float32) for m in masks],
        "none": [np.full(m.shape, 0.1, np.float32) for m in masks],
        "noise": [rng.uniform(0, 1, m.shape).astype(np.float32) for m in masks],
        "same_map": [np.where(masks[0], 0.8, 0.2).astype(np.float32) for _ in masks],
    }[kind]
    s = _summary(maps, masks)
    assert s["collapsed"].all(), s[["collapsed", "collapse_reason"]]
    assert reason in s["collapse_reason"].iloc[0]


def test_a_real_localization_is_not_collapsed():
    masks = _masks()
    rng = np.random.default_rng(2)
    maps = [np.clip(np.where(m, 0.8, 0.2) + rng.normal(0, 0.1, m.shape), 0, 1).astype(np.float32) for m in masks]
    s = _summary(maps, masks)
    assert not s["collapsed"].any(), s["collapse_reason"].iloc[0]
    assert s.loc["iou", "value"] > 50
    assert 0.1 < s.loc["iou", "pred_fake_fraction"] < 0.2


def test_collapse_without_pixel_auc_uses_the_cheap_statistics():
    masks = _masks()
    s = _summary([np.full(m.shape, 0.7, np.float32) for m in masks], masks, metrics=("iou",))
    assert bool(s.loc["iou", "collapsed"])
    stats = CollapseStats()
    for m in masks:
        stats.add(np.where(m, 0.9, 0.0))
    assert stats.verdict() == (False, "")
    assert stats.fake_fraction == pytest.approx(np.mean(masks))


def test_rule_thresholds():
    rule = CollapseRule()
    assert rule.reason(0.5, 0.9, 0.2) == ""
    assert "AUC" in rule.reason(0.3, 0.505, 0.2)
    assert rule.reason(0.999, None, None).startswith("99.9%")


def _stats_with(fake: int, total: int = 10_000) -> CollapseStats:
    """One map whose thresholded prediction has exactly ``fake`` fake pixels out of ``total``, plus a second, different
    map (so the spread rule stays quiet)."""
    stats = CollapseStats()
    pred = np.zeros(total, bool)
    pred[:fake] = True
    stats.add(np.linspace(0, 1, total).reshape(100, -1), pred.reshape(100, -1))
    stats.add(np.linspace(1, 0, total).reshape(100, -1), pred.reshape(100, -1))
    return stats


# The documented thresholds (module docstring, CollapseRule): predicted-fake fraction ≥ 0.95 or ≤ 0.002, pixel AUC
# within 0.02 of 0.5, across-image spread below 0.01. Each is probed just inside and just outside, by counts.
@pytest.mark.parametrize("fake, collapsed", [(9499, False), (9500, True), (9501, True), (21, False), (20, True),
                                             (19, True)])
def test_fake_fraction_thresholds_are_pinned(fake, collapsed):
    verdict, why = _stats_with(fake).verdict()
    assert verdict is collapsed, why
    assert ("predicted fake" in why) is collapsed


@pytest.mark.parametrize("auc, collapsed", [(0.479, False), (0.481, True), (0.5, True), (0.519, True),
                                            (0.521, False)])
def test_pixel_auc_band_is_pinned(auc, collapsed):
    verdict, why = _stats_with(3000).verdict(pixel_auc=auc)
    assert verdict is collapsed, why


@pytest.mark.parametrize("half_gap, collapsed", [(0.0105, False), (0.0095, True)])
def test_image_spread_threshold_is_pinned(half_gap, collapsed):
    """Two constant maps 0.5 ± half_gap: the across-image standard deviation is half_gap at every pixel."""
    stats = CollapseStats()
    for value in (0.5 + half_gap, 0.5 - half_gap):
        stats.add(np.full((64, 64), value), np.arange(64 * 64).reshape(64, 64) < 2048)
    assert stats.spread == pytest.approx(half_gap)
    verdict, why = stats.verdict(pixel_auc=0.9)
    assert verdict is collapsed, why
    assert ("same map" in why) is collapsed


def test_thumbnail_samples_the_corners_of_a_non_square_map():
    from declip.pipeline.metrics.collapse import THUMB, thumbnail

    prob = np.arange(5 * 70, dtype=np.float32).reshape(5, 70)
    thumb = thumbnail(prob)
    assert thumb.shape == (THUMB, THUMB)
    assert thumb[0, 0] == prob[0, 0] and thumb[-1, -1] == prob[-1, -1] and thumb[-1, 0] == prob[-1, 0]
    assert (np.diff(thumb, axis=0) >= 0).all() and (np.diff(thumb, axis=1) >= 0).all()  # positions in order
    assert thumbnail(prob.T).shape == (THUMB, THUMB) and thumbnail(prob.T)[-1, 0] == prob[0, -1]
