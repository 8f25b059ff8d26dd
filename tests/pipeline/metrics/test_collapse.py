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
