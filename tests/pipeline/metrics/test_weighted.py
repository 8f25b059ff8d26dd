"""Metrics of a count-weighted image set against scikit-learn with sample weights (and repeated rows)."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score, roc_auc_score

from declip.pipeline.metrics.weighted import (ImageScores, image_metric, image_metrics, pixel_histograms,
                                              pooled_count_metric, pooled_curve_metric)


def detection_case(seed, n=60, ties=False):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.5
    scores = np.clip(0.3 * labels + rng.random(n) * 0.7, 0, 1)
    if ties:
        scores = np.round(scores * 5) / 5
    weights = rng.integers(0, 4, size=(6, n)).astype(float)  # like bootstrap counts, zeros included
    weights[:, np.flatnonzero(labels)[0]] += 1  # every row keeps both classes
    weights[:, np.flatnonzero(~labels)[0]] += 1
    return scores, labels, weights


SKLEARN = {"image_auc": roc_auc_score, "image_ap": average_precision_score,
           "image_acc": lambda y, s, sample_weight: accuracy_score(y, s > 0.5, sample_weight=sample_weight),
           "image_bacc": lambda y, s, sample_weight: balanced_accuracy_score(y, s > 0.5, sample_weight=sample_weight)}


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name", list(SKLEARN))
def test_image_metrics_under_weights_equal_sklearn_with_sample_weight(name, ties):
    scores, labels, weights = detection_case(3, ties=ties)
    got = image_metric(name, scores, labels, weights)
    for b, w in enumerate(weights):
        assert got[b] == pytest.approx(SKLEARN[name](labels, scores, sample_weight=w), abs=1e-12)
    # integer weights are repeated images: the same as sklearn on the repeated rows
    rep = np.repeat(np.arange(len(scores)), weights[0].astype(int))
    assert got[0] == pytest.approx(SKLEARN[name](labels[rep], scores[rep], sample_weight=None), abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("name", ["image_auc", "image_ap"])
def test_leave_one_out_rows_equal_sklearn_without_that_image(name, ties):
    scores, labels, _ = detection_case(5, n=30, ties=ties)
    loo = 1.0 - np.eye(len(scores))  # what BCa's jackknife asks for: each image left out once
    got = image_metric(name, scores, labels, loo)
    for i in range(len(scores)):
        keep = np.arange(len(scores)) != i
        assert got[i] == pytest.approx(SKLEARN[name](labels[keep], scores[keep], sample_weight=None), abs=1e-12)


def test_leave_one_out_of_the_only_fake_is_undefined():
    scores, labels = np.array([0.9, 0.2, 0.4, 0.1]), np.array([True, False, False, False])
    got = image_metric("image_ap", scores, labels, 1.0 - np.eye(4))
    assert np.isnan(got[0]) and got[1] == 1.0


def test_image_metrics_need_both_classes_and_name_unknown_metrics():
    scores, labels, _ = detection_case(4)
    only_fakes = labels.astype(float)[None]
    got = image_metrics(("image_auc", "image_ap", "image_bacc"), ImageScores(scores, labels), only_fakes)
    assert np.isnan(got["image_auc"]) and np.isnan(got["image_bacc"])
    with pytest.raises(ValueError, match="image_f1"):
        image_metric("image_f1", scores, labels, only_fakes)


def test_pooled_counts_give_pooled_iou_and_f1_by_hand():
    counts = np.array([[10, 2, 3], [0, 5, 0], [4, 0, 6]])  # per-image TP, FP, FN
    w = np.array([[1, 1, 1], [2, 0, 1], [0, 1, 0]], float)
    iou = pooled_count_metric("pooled_iou", counts, w)
    f1 = pooled_count_metric("pooled_f1", counts, w)
    # row 0: TP 14, FP 7, FN 9; row 1: TP 24, FP 4, FN 12; row 2: only the image with no TP and no FN
    assert iou[0] == pytest.approx(100 * 14 / 30) and iou[1] == pytest.approx(100 * 24 / 40) and iou[2] == 0.0
    assert f1[0] == pytest.approx(28 / 44) and f1[1] == pytest.approx(48 / 64)
    assert np.isnan(pooled_count_metric("pooled_iou", np.zeros((3, 3)), w)[0])


def quantised_maps(seed, n=12, shape=(20, 24)):
    rng = np.random.default_rng(seed)
    probs, masks = [], []
    for _ in range(n):
        gt = np.zeros(shape, bool)
        y, x = rng.integers(0, 10, 2)
        gt[y:y + rng.integers(3, 10), x:x + rng.integers(3, 12)] = True
        prob = np.clip(0.4 * gt + 0.6 * rng.random(shape), 0, 1)
        probs.append(np.round(prob * 255) / 255)  # the resolution of a saved uint8 map
        masks.append(gt)
    return probs, masks


@pytest.mark.parametrize("name,oracle", [("pooled_pixel_ap", average_precision_score),
                                         ("pooled_pixel_auc", roc_auc_score)])
def test_pooled_pixel_curves_from_histograms_equal_sklearn_over_the_pooled_pixels(name, oracle):
    probs, masks = quantised_maps(6)
    hist = np.stack([pixel_histograms(p, g) for p, g in zip(probs, masks)])
    w = np.array([np.ones(len(probs)), np.r_[2.0, np.zeros(len(probs) - 3), 1.0, 1.0]])
    got = pooled_curve_metric(name, hist, w)
    y = np.concatenate([g.ravel() for g in masks])
    s = np.concatenate([p.ravel() for p in probs])
    assert got[0] == pytest.approx(oracle(y, s), abs=1e-12)
    pick = [0, 0, len(probs) - 2, len(probs) - 1]  # row 1: image 0 twice and the last two images
    assert got[1] == pytest.approx(oracle(np.concatenate([masks[i].ravel() for i in pick]),
                                          np.concatenate([probs[i].ravel() for i in pick])), abs=1e-12)


def test_histogram_bins_cover_zero_and_one():
    hist = pixel_histograms(np.array([0.0, 1.0, 0.5, 0.999]), np.array([True, True, False, False]), bins=4)
    np.testing.assert_array_equal(hist, [[1, 0, 0, 1], [0, 0, 1, 1]])
