import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score, f1_score,
                             jaccard_score, roc_auc_score)

from declip.pipeline.metrics import pixel as mp
from declip.core.errors import DeclipError
from declip.pipeline.metrics.registry import REGISTRY, MetricAccumulator, describe_metrics, metric_names
from declip.pipeline.metrics.image import image_acc, image_ap, image_auc, image_bacc, image_score

PER_IMAGE = metric_names("image-pixel")


def random_case(seed, shape=(64, 80), quantise=None):
    """A probability map correlated with a blobby mask; ``quantise`` creates ties."""
    rng = np.random.default_rng(seed)
    gt = np.zeros(shape, bool)
    h, w = shape
    for _ in range(rng.integers(1, 4)):
        y, x = rng.integers(0, h - 10), rng.integers(0, w - 10)
        gt[y:y + rng.integers(5, 40), x:x + rng.integers(5, 40)] = True
    prob = np.clip(0.35 * gt + rng.random(shape) * 0.65, 0, 1).astype(np.float32)
    if quantise:
        prob = (np.round(prob * quantise) / quantise).astype(np.float32)
    return prob, gt


def metric(name, prob, gt):
    return REGISTRY[name].fn(mp.PixelCase(prob, gt))


CASES = [random_case(s) for s in range(4)] + [random_case(10 + s, quantise=8) for s in range(3)]


# --- against scikit-learn -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prob,gt", CASES)
def test_pixel_metrics_match_sklearn(prob, gt):
    y, s, pred = gt.ravel(), prob.ravel(), (prob > 0.5).ravel()
    assert metric("iou", prob, gt) == pytest.approx(100 * jaccard_score(y, pred), abs=1e-6)
    assert metric("iou_empty0", prob, gt) == pytest.approx(100 * jaccard_score(y, pred), abs=1e-9)
    assert metric("ap", prob, gt) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert metric("pixel_auc", prob, gt) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fake_core, real_core = mp.boundary_cores_scipy(gt)
    core = (fake_core | real_core).ravel()
    ref = f1_score(fake_core.ravel()[core], pred[core], zero_division=0)
    assert metric("f1_fixed", prob, gt) == pytest.approx(ref, abs=1e-12)


def test_pooled_metrics_match_sklearn_on_concatenated_pixels():
    acc = MetricAccumulator(["pooled_iou", "pooled_f1"])
    for i, (prob, gt) in enumerate(CASES):
        acc.add(prob, gt, 1, f"f{i}")
    y = np.concatenate([gt.ravel() for _, gt in CASES])
    pred = np.concatenate([(p > 0.5).ravel() for p, _ in CASES])
    got = acc.summary().set_index("metric")["value"]
    assert got["pooled_iou"] == pytest.approx(100 * jaccard_score(y, pred))
    assert got["pooled_f1"] == pytest.approx(f1_score(y, pred))


def test_pooled_pixel_ap_and_auc_match_sklearn_on_8_bit_maps():
    """Pooled pixel AP/AUC read the maps in 256 bins (as `--save-maps` stores them): sklearn on the concatenated
    pixels of maps quantised to floor(256 p) gives the same numbers; real images add nothing."""
    acc = MetricAccumulator(["pooled_pixel_ap", "pooled_pixel_auc"])
    for i, (prob, gt) in enumerate(CASES):
        acc.add(prob, gt, 1, f"f{i}")
    acc.add(np.full((8, 8), 0.9, np.float32), None, 0, "real")
    y = np.concatenate([gt.ravel() for _, gt in CASES])
    q = np.concatenate([np.minimum(np.floor(p.ravel().astype(np.float64) * 256), 255) for p, _ in CASES])
    got = acc.summary().set_index("metric")["value"]
    assert got["pooled_pixel_ap"] == pytest.approx(average_precision_score(y, q), abs=1e-12)
    assert got["pooled_pixel_auc"] == pytest.approx(roc_auc_score(y, q), abs=1e-12)
    ids, hist = acc.pixel_histograms()
    assert list(ids) == [f"f{i}" for i in range(len(CASES))] and hist.shape == (len(CASES), 2, 256)
    assert [int(h.sum()) for h in hist] == [gt.size for _, gt in CASES]


@pytest.mark.parametrize("rule", ["mean_prob", "max_prob", "mean_logit_sigmoid"])
def test_image_metrics_match_sklearn(rule):
    rng = np.random.default_rng(5)
    acc = MetricAccumulator(metric_names("image"), image_score_rule=rule)
    labels = []
    for i in range(30):
        label = int(i % 3 == 0)
        prob = np.clip(rng.random((16, 16)) * 0.8 + 0.15 * label, 0, 1).astype(np.float32)
        acc.add(prob, prob > 0.6 if label else None, label, f"im{i}")
        labels.append(label)
    scores = acc.per_image()["image_score"].to_numpy()
    got = acc.summary().set_index("metric")
    assert got.loc["image_auc", "value"] == pytest.approx(roc_auc_score(labels, scores))
    assert got.loc["image_ap", "value"] == pytest.approx(average_precision_score(labels, scores))
    assert got.loc["image_acc", "value"] == pytest.approx(accuracy_score(labels, scores > 0.5))
    assert got.loc["image_bacc", "value"] == pytest.approx(balanced_accuracy_score(labels, scores > 0.5))
    assert (got["n_images"] == 30).all()
    assert got.loc["image_auc", "threshold_rule"].endswith(f"score={rule}")


def test_image_accuracy_counts_a_score_of_exactly_one_half_as_real():
    """DeCLIP's accuracy is ``accuracy_score(y, score > 0.5)``: 0.5 itself is a "real" prediction (hand case)."""
    scores, labels = np.array([0.5, 0.5, 0.75, 0.25]), np.array([0, 0, 1, 1])
    assert image_acc(scores, labels) == pytest.approx(0.75) == accuracy_score(labels, scores > 0.5)
    assert image_bacc(scores, labels) == pytest.approx(0.75) == balanced_accuracy_score(labels, scores > 0.5)


def test_cv2_cores_equal_trufor_scipy_reflect():
    rng = np.random.default_rng(3)
    for shape in [(37, 53), (64, 64), (5, 9)]:
        gt = rng.random(shape) < 0.6
        for fast, ref in zip(mp.boundary_cores(gt), mp.boundary_cores_scipy(gt)):
            np.testing.assert_array_equal(fast, ref)


# --- hand-computed cases -------------------------------------------------------------------------------------


def test_empty_gt_and_empty_pred():
    prob, gt = np.zeros((8, 8), np.float32), np.zeros((8, 8), bool)
    assert metric("iou", prob, gt) == pytest.approx(100.0)
    assert metric("iou_empty0", prob, gt) == 0.0
    assert metric("f1_fixed", prob, gt) == 1.0  # DeCLIP's (0 + 1e-32) / 1e-32
    assert metric("f1_fixed_trufor", prob, gt) == 0.0  # TruFor's 0/0 -> 0
    assert metric("ap", prob, gt) == 0.0  # torchmetrics' value, which DeCLIP averages in
    assert math.isnan(metric("ap_positive_masks", prob, gt)) and math.isnan(metric("pixel_auc", prob, gt))


def test_empty_gt_nonempty_pred_scores_zero_iou():
    prob, gt = np.zeros((8, 8), np.float32), np.zeros((8, 8), bool)
    prob[2, 3] = 0.9
    assert metric("iou", prob, gt) == pytest.approx(0.0, abs=1e-6)
    assert metric("iou_empty0", prob, gt) == 0.0


def test_all_fake_mask_has_empty_real_core():
    gt = np.ones((20, 20), bool)
    fake_core, real_core = mp.boundary_cores(gt)
    assert fake_core.all() and not real_core.any()  # reflect border: the mask is not eroded at the edge
    prob = np.full((20, 20), 0.2, np.float32)
    prob[:10] = 0.8
    assert metric("f1_fixed", prob, gt) == pytest.approx(2 * 200 / (2 * 200 + 200))
    assert metric("iou", prob, gt) == pytest.approx(50.0)
    assert metric("ap", prob, gt) == pytest.approx(1.0)
    assert math.isnan(metric("pixel_auc", prob, gt))


def square_case():
    gt = np.zeros((64, 64), bool)
    gt[20:40, 20:40] = True  # 20x20
    return gt


def test_band_counts_exact_for_a_square():
    gt = square_case()
    case = mp.PixelCase(np.ones((64, 64), np.float32), gt)
    fake_core, real_core = case.cores
    assert fake_core.sum() == 6 * 6  # 20 - 2*7
    assert real_core.sum() == 64 * 64 - 30 * 30  # 20 + 2*5
    assert case.band_counts == (36, 64 * 64 - 900, 0)


def test_predictions_inside_the_band_are_ignored():
    gt = square_case()
    prob, _ = random_case(7, shape=(64, 64))
    fake_core, real_core = mp.boundary_cores(gt)
    band = ~(fake_core | real_core)
    flipped = prob.copy()
    flipped[band] = 1 - flipped[band]
    for name in ["f1_fixed", "f1_best", "f1_fixed_trufor", "f1_best_trufor", "f1_inverted"]:
        assert metric(name, flipped, gt) == metric(name, prob, gt)
    assert metric("iou", flipped, gt) != metric("iou", prob, gt)  # IoU has no band


def brute_force_f1_best_trufor(prob, gt):
    """TruFor's oracle threshold by brute force, every F1 from scikit-learn on the scipy cores (no code of ours)."""
    fake_core, real_core = mp.boundary_cores_scipy(gt)
    core = fake_core | real_core

    def f1_at(pred):
        return f1_score(fake_core[core], pred[core], zero_division=0)

    best = max(f1_at(prob > t) for t in np.unique(prob[core]))
    return max(best, f1_at(prob > 0.5))  # TruFor/DeCLIP report max(F1_best, F1_fixed)


@pytest.mark.parametrize("prob,gt", [random_case(s, shape=(40, 40), quantise=q) for s, q in [(1, None), (2, 6)]])
def test_f1_best_trufor_equals_brute_force(prob, gt):
    assert metric("f1_best_trufor", prob, gt) == pytest.approx(brute_force_f1_best_trufor(prob, gt), abs=1e-12)


def test_f1_best_and_inverted_beat_fixed_by_hand():
    """p = 0.3 on the fake square, 0.1 elsewhere: nothing passes 0.5, the threshold 0.1 separates exactly."""
    gt = square_case()
    prob = np.where(gt, 0.3, 0.1).astype(np.float32)
    fake_core, real_core = mp.boundary_cores_scipy(gt)
    n_fake, n_real = int(fake_core.sum()), int(real_core.sum())
    assert n_fake > 0 and n_real > 0
    assert metric("f1_fixed_trufor", prob, gt) == 0.0  # TP = 0
    assert metric("f1_fixed", prob, gt) == pytest.approx(0.0, abs=1e-30)  # DeCLIP's 1e-32 numerator
    assert metric("f1_best_trufor", prob, gt) == pytest.approx(1.0)
    assert metric("f1_best", prob, gt) == pytest.approx(1.0)
    # inverted: 1 - p > 0.5 everywhere, i.e. all predicted fake: F1 = 2F / (2F + R) on the cores
    assert metric("f1_inverted", prob, gt) == pytest.approx(2 * n_fake / (2 * n_fake + n_real))
    # and with the roles reversed, the fixed threshold is already perfect: nothing to gain
    exact = np.where(gt, 0.9, 0.1).astype(np.float32)
    assert metric("f1_fixed_trufor", exact, gt) == metric("f1_best_trufor", exact, gt) == 1.0
    assert metric("f1_inverted", exact, gt) == 1.0


def test_f1_best_thresholds_are_strict_so_a_flat_map_scores_zero():
    """TruFor predicts ``p > t`` for each distinct value t: a flat map below 0.5 never predicts every pixel fake."""
    gt = square_case()
    flat = np.full(gt.shape, 0.3, np.float32)
    assert metric("f1_best_trufor", flat, gt) == 0.0  # p > 0.3 is empty; "p >= 0.3" (all fake) would score 2F/(2F+R)
    assert brute_force_f1_best_trufor(flat, gt) == 0.0


def test_f1_inverted_rescues_an_inverted_map():
    gt = square_case()
    prob = np.where(gt, 0.1, 0.9).astype(np.float32)
    assert metric("f1_fixed_trufor", prob, gt) == 0.0
    assert metric("f1_inverted", prob, gt) == pytest.approx(1.0)
    assert REGISTRY["f1_inverted"].inverted and not REGISTRY["f1_fixed"].inverted


def test_ap_undefined_is_excluded_from_mean_and_counted():
    prob, gt = random_case(1)
    acc = MetricAccumulator(["ap_positive_masks", "ap", "iou"])
    acc.add(prob, gt, 1, "a")
    acc.add(np.full((8, 8), 0.7, np.float32), np.zeros((8, 8), bool), 1, "empty-mask")
    acc.add(np.full((8, 8), 0.7, np.float32), None, 0, "real")
    s = acc.summary().set_index("metric")
    one = average_precision_score(gt.ravel(), prob.ravel())
    assert s.loc["ap_positive_masks", "value"] == pytest.approx(one)
    assert (s.loc["ap_positive_masks", "n_images"], s.loc["ap_positive_masks", "n_undefined"]) == (2, 1)
    assert s.loc["ap", "value"] == pytest.approx(one / 2)  # DeCLIP: the empty mask's 0 counts in the mean
    assert s.loc["ap", "n_undefined"] == 0
    assert s.loc["iou", "n_undefined"] == 0


def test_pooled_and_per_image_differ_by_hand():
    big_gt = np.zeros((4, 4), bool)
    big_gt[:2] = True  # 8 px, predicted exactly -> IoU 100
    small_gt = np.zeros((4, 4), bool)
    small_gt[3, :2] = True  # 2 px, predicted nothing -> IoU 0
    acc = MetricAccumulator(["iou", "pooled_iou", "pooled_f1"])
    acc.add(big_gt.astype(np.float32), big_gt, 1, "big")
    acc.add(np.zeros((4, 4), np.float32), small_gt, 1, "small")
    s = acc.summary().set_index("metric")["value"]
    assert s["iou"] == pytest.approx(50.0)
    assert s["pooled_iou"] == pytest.approx(80.0)  # 8 / (8 + 0 + 2)
    assert s["pooled_f1"] == pytest.approx(16 / 18)


def test_image_metrics_with_one_class_are_nan():
    acc = MetricAccumulator(metric_names("image"))
    for i in range(3):
        acc.add(np.full((4, 4), 0.8, np.float32), np.ones((4, 4), bool), 1, f"f{i}")
    s = acc.summary().set_index("metric")
    for name in ["image_auc", "image_ap", "image_bacc"]:
        assert math.isnan(s.loc[name, "value"]) and s.loc[name, "n_images"] == 3
    assert s.loc["image_acc", "value"] == 1.0
    assert math.isnan(image_auc(np.array([]), np.array([]))) and math.isnan(image_ap([0.2], [0]))
    assert math.isnan(image_bacc(np.array([0.2, 0.9]), np.array([1, 1])))


def test_image_score_rules_by_hand():
    prob = np.array([[0.5, 0.9], [0.1, 0.5]], np.float32)
    assert image_score(prob, "mean_prob") == pytest.approx(0.5)
    assert image_score(prob, "max_prob") == pytest.approx(0.9)
    assert image_score(prob, "mean_logit_sigmoid") == pytest.approx(0.5)  # logits +a, -a, 0, 0
    with pytest.raises(ValueError, match="score rule"):
        image_score(prob, "median")


# --- accumulator and registry --------------------------------------------------------------------------------


def test_per_image_table_and_summary_columns():
    acc = MetricAccumulator()
    prob, gt = CASES[0]
    acc.add(prob, gt, 1, "fake")
    acc.add(prob, None, 0, "real")
    per = acc.per_image()
    assert list(per.columns) == ["image_id", "label", "image_score", *PER_IMAGE, "tp", "fp", "fn"]
    assert per.loc[per.image_id == "real", [*PER_IMAGE, "tp", "fp", "fn"]].isna().all(axis=None)
    gt = np.asarray(CASES[0][1], bool)
    pred = np.asarray(CASES[0][0]) > 0.5  # the fake's TP/FP/FN at p > 0.5, counted here by hand
    fake = per[per.image_id == "fake"].iloc[0]
    assert (fake["tp"], fake["fp"], fake["fn"]) == ((pred & gt).sum(), (pred & ~gt).sum(), (~pred & gt).sum())
    s = acc.summary()
    for col in ["metric", "value", "level", "threshold_rule", "aggregation", "scale", "n_images", "n_undefined",
                "description"]:
        assert col in s.columns
    assert list(s["metric"]) == metric_names()
    assert s.set_index("metric").loc["iou", "n_images"] == 1


def test_unknown_names_and_rules_fail_early():
    with pytest.raises(DeclipError, match="nope"):
        MetricAccumulator(["iou", "nope"])
    with pytest.raises(ValueError):
        MetricAccumulator(image_score_rule="median")
    with pytest.raises(ValueError, match="differ"):
        MetricAccumulator(["iou"]).add(np.zeros((4, 4)), np.zeros((5, 4), bool), 1, "x")


def test_registry_declares_every_convention():
    assert set(metric_names()) >= {"iou", "iou_empty0", "f1_fixed", "f1_best", "f1_inverted", "ap", "pixel_auc",
                                   "pooled_iou", "pooled_f1", "image_auc", "image_ap", "image_acc", "image_bacc"}
    assert metric_names("pooled") == ["pooled_iou", "pooled_f1", "pooled_pixel_ap", "pooled_pixel_auc"]
    table = describe_metrics()
    assert isinstance(table, pd.DataFrame) and len(table) == len(REGISTRY)
    assert table.set_index("metric").loc["iou", "scale"] == "percent"
    assert table[table.inverted]["metric"].str.contains("inverted").all()
    assert table.set_index("metric").loc["f1_best", "threshold_rule"] == "oracle per image"
    with pytest.raises(ValueError):
        metric_names("bogus")


# --- DeCLIP's own code, edge cases included ------------------------------------------------------------------
# ``declip_reference`` restates DeCLIP's utils.py in torch (its GPU min/max filters, ascending cumulative counts,
# group-end mask padded with False, exceptions caught as nan, Python's max(best, fixed), plain means), so the
# registry's DeCLIP-named metrics are checked against that code path rather than against our own formulas.

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def _declip_cores(gt):
    pad = 7
    eroded = -F.max_pool2d(-F.pad(gt[None], (pad,) * 4, value=float("inf")), 15, stride=1)[0]
    pad = 5
    real = torch.logical_not(F.max_pool2d(F.pad(gt[None], (pad,) * 4), 11, stride=1)[0])
    return real.float(), eroded


def _declip_f1(fp, tp, fn):
    return (2 * tp + 1e-32) / torch.maximum(2 * tp + fn + fp, torch.tensor(1e-32))


def declip_reference(prob, gt):
    """(f1_best, f1_fixed) exactly as DeCLIP's localization_f1 computes them."""
    pred, g = torch.tensor(prob, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32)
    real, fake = _declip_cores(g)
    try:
        p, r, f = pred.flatten(), real.flatten(), fake.flatten()
        inds = torch.argsort(p)
        inds = inds[(r[inds] + f[inds]) > 0]
        th, r, f = p[inds], r[inds], f[inds]
        tn, fn = torch.cumsum(r, 0), torch.cumsum(f, 0)
        fp, tp = torch.sum(r) - tn, torch.sum(f) - fn
        mask = F.pad(th[1:] > th[:-1], (0, 1), mode="constant")
        best = torch.max(_declip_f1(fp[mask], tp[mask], fn[mask]))
    except (RuntimeError, IndexError):
        best = torch.tensor(float("nan"))
    core = (real + fake).flatten() > 0
    pb, gb = (pred > 0.5).flatten()[core], g.flatten()[core] > 0
    tp = (pb & gb).sum().float()
    fixed = _declip_f1((pb & ~gb).sum().float(), tp, (~pb & gb).sum().float())
    return float(max(best, fixed)), float(fixed)


def _edge_cases():
    empty = np.zeros((32, 32), bool)
    tiny = empty.copy()
    tiny[10:14, 10:14] = True  # erodes to nothing under the 15x15 filter
    square = empty.copy()
    square[4:28, 4:28] = True
    ramp = np.linspace(0, 0.4, 32 * 32, dtype=np.float32).reshape(32, 32)
    return {
        "empty mask, quiet map": (ramp, empty),
        "eroded-away mask, quiet map": (ramp, tiny),
        "empty mask, constant map": (np.full((32, 32), 0.3, np.float32), empty),
        "square, constant map": (np.full((32, 32), 0.7, np.float32), square),
        "square, two values": (np.where(square, 0.9, 0.2).astype(np.float32), square),
        "random": random_case(5, shape=(48, 48)),
        "random, ties": random_case(6, shape=(48, 48), quantise=5),
    }


@pytest.mark.parametrize("name", list(_edge_cases()))
def test_declip_named_f1_equals_declip_code(name):
    prob, gt = _edge_cases()[name]
    best, fixed = declip_reference(prob, gt)
    assert metric("f1_fixed", prob, gt) == pytest.approx(fixed, rel=1e-6)
    got = metric("f1_best", prob, gt)
    assert (math.isnan(got) and math.isnan(best)) or got == pytest.approx(best, rel=1e-6)


def test_declip_edge_cases_by_hand():
    cases = _edge_cases()
    for name in ["empty mask, quiet map", "eroded-away mask, quiet map"]:
        prob, gt = cases[name]
        assert metric("f1_fixed", prob, gt) == 1.0 and metric("f1_fixed_trufor", prob, gt) == 0.0
    prob, gt = cases["square, constant map"]
    assert math.isnan(metric("f1_best", prob, gt))  # no threshold left: DeCLIP's nan
    assert metric("f1_best_trufor", prob, gt) == pytest.approx(metric("f1_fixed_trufor", prob, gt))


def test_declip_f1_best_nan_makes_the_mean_nan_while_trufor_skips_nothing():
    acc = MetricAccumulator(["f1_best", "f1_best_trufor", "f1_fixed"])
    prob, gt = random_case(5, shape=(48, 48))
    acc.add(prob, gt, 1, "ok")
    acc.add(np.full((48, 48), 0.7, np.float32), gt, 1, "constant")
    s = acc.summary().set_index("metric")
    assert math.isnan(s.loc["f1_best", "value"]) and s.loc["f1_best", "n_undefined"] == 1
    assert not math.isnan(s.loc["f1_best_trufor", "value"]) and s.loc["f1_best_trufor", "n_undefined"] == 0
    assert REGISTRY["f1_best"].undefined == "propagate" and REGISTRY["f1_best_trufor"].undefined == "skip"


def test_image_scores_only_where_an_image_metric_is_asked_for():
    """Validation asks for IoU alone: no image score is computed (nan in the per-image table); with an image-level
    metric every image gets its mean probability (the default rule, by hand)."""
    prob = np.full((4, 6), 0.25, np.float32)
    prob[:2] = 0.75
    gt = np.zeros((4, 6), bool)
    gt[:2] = True
    pixel_only, both = MetricAccumulator(["iou"]), MetricAccumulator(["iou", "image_auc"])
    for acc in (pixel_only, both):
        acc.add(prob, gt, 1, "fake.png")
        acc.add(prob, None, 0, "real.png")
    assert pixel_only.per_image()["image_score"].isna().all()
    assert both.per_image()["image_score"].tolist() == pytest.approx([0.5, 0.5])
    assert pixel_only.per_image()["iou"].iloc[0] == both.per_image()["iou"].iloc[0] == pytest.approx(100.0)
