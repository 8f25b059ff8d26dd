"""DeCLIP's training recipe checked against oracles written from the method description, not from our code.

* the loss on hand-computed cases (soft targets; detection's image logit = mean pixel logit);
* a plain-torch reference loop (AdamW lr 1e-3, betas (0.9, 0.999), no weight decay, BCE on the 256×256 soft masks
  of the fake training images, read from the mask files) that single-head, multi-head, streaming and resumed runs
  must all reproduce;
* the epoch-end logic driven by scripted validation scores: the optimizer's lr at every step and which epoch's
  weights end up in ``best/``.
"""
from functools import partial
import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tests.fixtures import TINY_BACKBONE, TINY_DATASET, train_config
from declip.decoders import build_decoder, load_decoder
from declip.pipeline.data.manifest import read_manifest
from declip.pipeline.train import training
from declip.pipeline.train.training import train, train_heads
from declip.store.feature_store import FeatureStore

DS = TINY_DATASET


_cfg = partial(train_config, max_epochs=3, patience=50)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bce(x: float, y: float) -> float:
    return -(y * math.log(_sigmoid(x)) + (1 - y) * math.log(1 - _sigmoid(x)))


# ---------------------------------------------------------------- the loss, by hand
def test_localization_loss_is_mean_bce_on_soft_targets():
    logits = torch.tensor([[[[1.0, -2.0], [0.5, 3.0]]]])  # (B=1, 1, 2, 2)
    soft = torch.tensor([[[0.25, 0.0], [0.75, 1.0]]])  # soft edge values are targets, not thresholded
    expected = (_bce(1.0, 0.25) + _bce(-2.0, 0.0) + _bce(0.5, 0.75) + _bce(3.0, 1.0)) / 4
    got = training._loss(logits, soft, torch.tensor([1]), "localization")
    assert float(got) == pytest.approx(expected, rel=1e-6)
    hard = (_bce(1.0, 0.0) + _bce(-2.0, 0.0) + _bce(0.5, 1.0) + _bce(3.0, 1.0)) / 4
    assert abs(expected - hard) > 0.02  # the case tells soft from thresholded targets


def test_detection_loss_uses_the_mean_pixel_logit_as_image_logit():
    logits = torch.zeros(2, 1, 2, 2)
    logits[0, 0] = torch.tensor([[4.0, -2.0], [0.0, -1.0]])  # mean 0.25, max 4
    logits[1, 0] = torch.tensor([[-3.0, 1.0], [1.0, -3.0]])  # mean -1, max 1
    labels = torch.tensor([1, 0])
    expected = (_bce(0.25, 1.0) + _bce(-1.0, 0.0)) / 2
    got = training._loss(logits, torch.zeros(2, 2, 2), labels, "detection")
    assert float(got) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- an independent reference training loop
def _train_rows(samples: pd.DataFrame, subset: str = "tint") -> np.ndarray:
    keep = (samples["subset"] == subset) & (samples["label"] == 1) & (samples["split"] == "train")
    return np.flatnonzero(keep.to_numpy())


def _soft_targets_from_files(manifest_path, samples, rows) -> torch.Tensor:
    """DeCLIP §5.1: the mask file as greyscale, inverted for Dolos, bilinear resize to 256×256, /255, not binarised."""
    manifest = read_manifest(manifest_path)
    out = []
    for r in rows:
        m = Image.open(manifest.abspath(samples["mask_path"].iloc[r])).convert("L")
        m = Image.fromarray(255 - np.asarray(m))
        out.append(np.asarray(m.resize((256, 256), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(out))


def reference_weights(store_path, manifest_path, layer: str, epochs: int, decoder: str = "linear", seed: int = 0,
                      width: float = 1.0):
    """Full-batch AdamW(lr 1e-3, betas (0.9, 0.999), weight decay 0) on BCE with soft targets: the recipe, by hand."""
    store = FeatureStore(str(store_path), mode="r")
    samples = store.samples(DS)
    rows = _train_rows(samples)
    arrays = store.open_layer(TINY_BACKBONE, layer, DS)
    feats = torch.from_numpy(np.stack([arrays.feats[int(r)] for r in rows]).astype(np.float32))
    cls = torch.from_numpy(np.stack([arrays.cls[int(r)] for r in rows]).astype(np.float32))
    targets = _soft_targets_from_files(manifest_path, samples, rows)
    assert ((targets > 0) & (targets < 1)).any(), "the fixture must have soft mask edges"
    net = build_decoder(decoder, in_channels=feats.shape[1], grid=tuple(feats.shape[2:]), family="vit", layer=layer,
                        seed=seed, width=width)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0)
    for _ in range(epochs):
        net.train()
        loss = F.binary_cross_entropy_with_logits(net(feats, cls)[:, 0], targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.state_dict()


def _final_weights(run_dir) -> dict:
    return torch.load(run_dir / "state.pt", weights_only=True)["decoder"]


def _assert_same(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=2e-6, msg=k)


@pytest.fixture(scope="module")
def reference(tiny_store, tiny_manifest):
    return {layer: reference_weights(tiny_store, tiny_manifest, layer, epochs=3) for layer in ("layer1", "layer3")}


def test_one_run_reproduces_the_reference_recipe(tiny_store, reference, tmp_path):
    # batch 64 (the default) > 16 training fakes: one full batch per epoch, as in the reference
    train(_cfg(tiny_store, tmp_path / "run"))
    _assert_same(_final_weights(tmp_path / "run"), reference["layer1"])


def test_heads_trained_together_each_reproduce_the_reference(tiny_store, reference, tmp_path):
    cfgs = [_cfg(tiny_store, tmp_path / name, source=f"{TINY_BACKBONE}/{name}") for name in ("layer1", "layer3")]
    train_heads(cfgs)
    for name in ("layer1", "layer3"):
        _assert_same(_final_weights(tmp_path / name), reference[name])


def test_streaming_reproduces_the_reference(tiny_store, reference, tmp_path):
    train(_cfg(tiny_store, tmp_path / "stream", memory_gb=0.0))
    _assert_same(_final_weights(tmp_path / "stream"), reference["layer1"])


def test_resumed_run_reproduces_the_reference(tiny_store, reference, tmp_path, monkeypatch):
    real_end = training._end_epoch

    def crash_after_epoch_1(head, scores, loss, epoch, seconds):
        real_end(head, scores, loss, epoch, seconds)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_end_epoch", crash_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_store, tmp_path / "cut"))
    monkeypatch.setattr(training, "_end_epoch", real_end)
    summary = train(_cfg(tiny_store, tmp_path / "cut"))
    assert summary["epochs"] == 3
    assert pd.read_csv(tmp_path / "cut" / "epochs.csv")["epoch"].tolist() == [0, 1, 2]
    _assert_same(_final_weights(tmp_path / "cut"), reference["layer1"])


def test_conv_decoder_trains_batchnorm_in_train_mode_like_the_reference(tiny_store, tiny_manifest, tmp_path):
    # two full-batch steps: the second shows gradients that were not zeroed (conv heads are not in the fused path)
    want = reference_weights(tiny_store, tiny_manifest, "layer1", epochs=2, decoder="conv-4", width=0.0625)
    train(_cfg(tiny_store, tmp_path / "conv", decoder="conv-4", width=0.0625, max_epochs=2))
    got = _final_weights(tmp_path / "conv")
    # A conv bias followed by BatchNorm has a zero gradient in exact arithmetic (BN removes the mean), so Adam's
    # update of it is rounding noise divided by its own size, and that noise shows in the next BN's running mean:
    # those are not comparable. Every weight, BN scale and shift, and the last conv's bias are.
    net = build_decoder("conv-4", in_channels=64, grid=(8, 8), family="vit", layer="layer1", width=0.0625)
    modules = list(net.fc)
    noise = {f"fc.{i}.bias" for i, m in enumerate(modules[:-1])
             if isinstance(m, torch.nn.Conv2d) and isinstance(modules[i + 1], torch.nn.BatchNorm2d)}
    compared = [k for k in want if k not in noise and "running" not in k and "num_batches" not in k]
    assert noise and any(k.endswith(".weight") and "fc.1." in k for k in compared)  # BN scales are compared
    for k in compared:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5, msg=k)
    assert int(got["fc.1.num_batches_tracked"]) == 2  # BatchNorm ran in train mode for both steps


def test_each_epoch_visits_every_training_fake_once_in_a_new_order(tiny_store, tmp_path, monkeypatch):
    batches = []
    real_targets = training._batch_targets

    def spy(batch, device):  # every head's loss reads the batch's targets from here
        masks, labels = real_targets(batch, device)
        batches.append(tuple(round(float(s), 3) for s in masks.sum(dim=(1, 2))))  # one fingerprint per image
        return masks, labels

    monkeypatch.setattr(training, "_batch_targets", spy)
    train(_cfg(tiny_store, tmp_path / "run", max_epochs=2, batch_size=5))
    per_epoch = len(batches) // 2
    first = [x for b in batches[:per_epoch] for x in b]
    second = [x for b in batches[per_epoch:] for x in b]
    assert len(first) == 16 and sorted(first) == sorted(second)  # every training fake, once per epoch
    assert first != second  # reshuffled each epoch (DeCLIP's DataLoader shuffles every epoch)


def test_training_sees_only_fakes_and_their_soft_masks(tiny_store, tiny_manifest, tmp_path, monkeypatch):
    seen = []
    real_targets = training._batch_targets

    def spy(batch, device):  # every head's loss reads the batch's targets from here
        masks, labels = real_targets(batch, device)
        seen.append((masks.clone(), labels.clone()))
        return masks, labels

    monkeypatch.setattr(training, "_batch_targets", spy)
    train(_cfg(tiny_store, tmp_path / "run", max_epochs=1, batch_size=5))
    masks = torch.cat([m for m, _ in seen])
    labels = torch.cat([lab for _, lab in seen])
    samples = FeatureStore(str(tiny_store), mode="r").samples(DS)
    want = _soft_targets_from_files(tiny_manifest, samples, _train_rows(samples))
    assert len(labels) == len(want) and bool((labels == 1).all())
    assert masks.shape[1:] == (256, 256)
    # same multiset of targets (order is shuffled): compare per-image sums, sorted
    torch.testing.assert_close(masks.sum(dim=(1, 2)).sort().values, want.sum(dim=(1, 2)).sort().values,
                               rtol=0, atol=1e-3)
    assert ((masks > 0) & (masks < 1)).any()


# ---------------------------------------------------------------- the epoch end, scripted
# patience 2, min_lr 1e-5. Expected by hand from declip-method §5.4 (improvement: score ≥ reference + margin, margin
# 0.001 before the first lr drop and 0.002 after it; best: strict > over all epochs; lr ÷10 after 2 epochs without
# improvement; stop once the divided lr falls below min_lr).
SCRIPT = [
    (10.0, "ref", 1e-3, True),
    (20.0, "ref", 1e-3, True),
    (20.0015, "ref (+0.0015 ≥ first margin 0.001)", 1e-3, True),
    (20.0015, "no gain 1", 1e-3, False),
    (20.002, "no gain 2 → lr 1e-4", 1e-3, True),  # strict best, though not an improvement for the plateau
    (15.0, "new reference after the drop", 1e-4, False),
    (30.0, "ref", 1e-4, True),
    (30.0015, "no gain 1 (< later margin 0.002)", 1e-4, True),
    (29.0, "no gain 2 → lr 1e-5", 1e-4, False),
    (29.0, "new reference", 1e-5, False),
    (29.0, "no gain 1", 1e-5, False),
    (29.0, "no gain 2 → 1e-6 < min_lr: stop", 1e-5, False),
]
BEST_EPOCH = 7


def test_epoch_end_lr_and_best_checkpoint_follow_scripted_validation(tiny_store, tmp_path, monkeypatch):
    snapshots, step_lrs, step_groups = [], [], []

    def scripted_validation(models, data, rows, mode, device, batch_size=64):
        epoch = len(snapshots)
        snapshots.append({k: v.detach().clone() for k, v in models[0][0].state_dict().items()})
        return [{"iou": SCRIPT[epoch][0]}]

    real_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        step_lrs.append((len(snapshots), self.param_groups[0]["lr"]))
        step_groups.append({k: v for k, v in self.param_groups[0].items() if k != "params"})
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(training, "validate_many", scripted_validation)
    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    summary = train(_cfg(tiny_store, tmp_path / "run", patience=2, min_lr=1e-5, max_epochs=100, batch_size=8))

    assert summary["epochs"] == len(SCRIPT) == len(snapshots)
    per_epoch = {}
    for epoch, lr in step_lrs:
        per_epoch.setdefault(epoch, set()).add(lr)
    assert len(per_epoch) == len(SCRIPT)
    for epoch, (_, why, lr, _) in enumerate(SCRIPT):
        assert all(abs(x - lr) <= 1e-9 * lr for x in per_epoch[epoch]), (epoch, why, per_epoch[epoch])
    # the recipe's AdamW: betas (0.9, 0.999), no weight decay, plain (not AMSGrad)
    for group in step_groups:
        assert group["betas"] == (0.9, 0.999) and group["weight_decay"] == 0.0 and group["amsgrad"] is False
    assert len(step_groups) == len(SCRIPT) * 2  # 16 training fakes in batches of 8

    log = pd.read_csv(tmp_path / "run" / "epochs.csv")
    assert log["new_best"].tolist() == [s[3] for s in SCRIPT]
    assert summary["best_epoch"] == BEST_EPOCH
    best, meta = load_decoder(tmp_path / "run" / "best")
    assert meta["epoch"] == BEST_EPOCH
    for k, v in best.state_dict().items():
        torch.testing.assert_close(v, snapshots[BEST_EPOCH][k], rtol=0, atol=0)
    later = snapshots[-1]
    assert any(not torch.equal(later[k], snapshots[BEST_EPOCH][k]) for k in later)  # the check can fail


def test_best_checkpoint_and_config_record_the_run(tiny_store, tmp_path):
    summary = train(_cfg(tiny_store, tmp_path / "run", max_epochs=2))
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["identity"] == _cfg(tiny_store, tmp_path / "elsewhere", max_epochs=2).identity()
    meta = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert meta["epoch"] == summary["best_epoch"] and meta["run_identity"] == cfg["identity"]


# ---------------------------------------------------------------- detection
def test_detection_trains_on_reals_and_fakes_and_selects_on_sklearn_ap(tiny_store, tmp_path, monkeypatch):
    from sklearn.metrics import average_precision_score

    from declip.pipeline.metrics.resize import to_native

    labels_seen = []
    real_targets = training._batch_targets

    def spy(batch, device):  # every head's loss reads the batch's targets from here
        masks, labels = real_targets(batch, device)
        labels_seen.append(labels.clone())
        return masks, labels

    monkeypatch.setattr(training, "_batch_targets", spy)
    summary = train(_cfg(tiny_store, tmp_path / "det", mode="detection", max_epochs=3, batch_size=8))
    labels = torch.cat(labels_seen)
    store = FeatureStore(str(tiny_store), mode="r")
    samples = store.samples(DS)
    n_train_real = int(((samples["label"] == 0) & (samples["split"] == "train")).sum())
    n_train_fake = len(_train_rows(samples))
    assert int((labels == 0).sum()) == 3 * n_train_real and int((labels == 1).sum()) == 3 * n_train_fake

    # validation AP of the best epoch, recomputed: image score = mean of the per-pixel sigmoids (§4) at native size
    valid = np.flatnonzero((((samples["subset"] == "tint") & (samples["label"] == 1)) | (samples["label"] == 0))
                           .to_numpy() & (samples["split"] == "valid").to_numpy())
    decoder, meta = load_decoder(tmp_path / "det" / "best")
    arrays = store.open_layer(TINY_BACKBONE, "layer1", DS)
    feats = torch.from_numpy(np.stack([arrays.feats[int(r)] for r in valid]).astype(np.float32))
    cls = torch.from_numpy(np.stack([arrays.cls[int(r)] for r in valid]).astype(np.float32))
    with torch.no_grad():
        probs = torch.sigmoid(decoder(feats, cls)[:, 0]).numpy()
    sizes = samples[["height", "width"]].to_numpy()[valid]
    scores = [to_native(p, tuple(s)).mean() for p, s in zip(probs, sizes)]
    ap = average_precision_score(samples["label"].to_numpy()[valid], scores)
    assert meta["val"]["ap"] == pytest.approx(ap, abs=1e-6)
    log = pd.read_csv(tmp_path / "det" / "epochs.csv")
    assert summary["best_epoch"] == int(np.argmax(log["val_ap"].to_numpy()))
    assert summary["best_val"] == pytest.approx(log["val_ap"].max())


def test_detection_selects_the_best_epoch_on_ap_not_accuracy(tiny_store, tmp_path, monkeypatch):
    script = [{"ap": 0.6, "acc": 0.9, "auc": 0.5}, {"ap": 0.8, "acc": 0.5, "auc": 0.5},
              {"ap": 0.7, "acc": 0.95, "auc": 0.9}]
    calls = []

    def scripted_validation(models, data, rows, mode, device, batch_size=64):
        calls.append(mode)
        return [dict(script[len(calls) - 1])]

    monkeypatch.setattr(training, "validate_many", scripted_validation)
    summary = train(_cfg(tiny_store, tmp_path / "det", mode="detection", max_epochs=3, batch_size=8))
    assert calls == ["detection"] * 3
    assert summary["best_epoch"] == 1 and summary["best_val"] == pytest.approx(0.8)
    assert load_decoder(tmp_path / "det" / "best")[1]["epoch"] == 1
