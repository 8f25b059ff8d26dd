"""The mutants of the mutation check: one realistic change each, anchored on literal text of the code.

``tests`` is the fast selection expected to catch the change; ``fresh`` rebuilds the tiny fixtures with the mutated
code (needed when the change is upstream of the cached store); ``equivalent`` argues why a mutant cannot change any
result (it is then left out of the kill ratio). The first ten are the changes of issue 15's table.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Mutant:
    id: str
    area: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    fresh: bool = False
    equivalent: str = ""


RECIPE_TESTS = ("tests/pipeline/train/test_recipe.py", "tests/pipeline/train/test_training_recipe.py")
TRAIN_TESTS = ("tests/pipeline/train/test_training_recipe.py",)
IDENTITY_TESTS = ("tests/pipeline/train/test_run_identity.py",)
SCHEDULE_TESTS = ("tests/pipeline/train/test_schedule.py",
                  "tests/pipeline/train/test_training_recipe.py::test_epoch_end_lr_and_best_checkpoint_"
                  "follow_scripted_validation")
METRIC_TESTS = ("tests/pipeline/metrics/test_metrics.py", "tests/pipeline/metrics/test_resize.py")
EVAL_TESTS = ("tests/pipeline/train/test_training.py::test_evaluate_scores_native_masks",
              "tests/pipeline/train/test_training_recipe.py::test_detection_trains_on_reals_and_fakes_and_selects_on_"
              "sklearn_ap")
PREDICT_TESTS = ("tests/pipeline/infer/test_predict_cli.py::"
                 "test_predict_folder_with_broken_file_matches_cached_features",)
STORE_TESTS = ("tests/store/test_store.py", "tests/store/test_store_failures.py", "tests/store/test_store_identity.py",
               "tests/store/test_readers.py", "tests/store/test_fastpath.py", "tests/store/test_hdf5.py")
MASK_TESTS = ("tests/pipeline/data/test_masks.py", "tests/store/test_store_failures.py",
              "tests/pipeline/extract/test_extraction.py::test_masks_cached_with_declip_polarity",
              "tests/pipeline/train/test_training_recipe.py::test_training_sees_only_fakes_and_their_soft_masks")
DECODER_TESTS = ("tests/decoders/test_decoders.py",)
TAP_TESTS = ("tests/features/test_taps.py",
             "tests/pipeline/extract/test_extraction.py::test_cached_features_equal_hooked_forward")

M = Mutant
MUTANTS: list[Mutant] = [
    # ---- the table of issue 15
    M("T1", "training", "BCE targets thresholded (hard) instead of soft", "pipeline/data/cached_splits.py",
      "masks = torch.from_numpy(self.masks(rows)).float() / 255.0",
      "masks = (torch.from_numpy(self.masks(rows)) > 127).float()", TRAIN_TESTS),
    M("T1c", "training", "BCE targets thresholded (hard) on the device-resident path",
      "pipeline/data/resident_features.py",
      "return self.masks.index_select(0, idx).float() / 255.0",
      "return (self.masks.index_select(0, idx) > 127).float()", ("tests/pipeline/train/test_device_training.py",)),
    M("T1b", "training", "BCE targets thresholded inside the loss", "pipeline/train/training.py",
      "F.binary_cross_entropy_with_logits(logits[:, 0], masks)",
      "F.binary_cross_entropy_with_logits(logits[:, 0], (masks > 0.5).float())", TRAIN_TESTS),
    M("T2", "training", "AdamW weight decay 0 -> 0.01", "pipeline/train/training.py",
      "weight_decay=RECIPE.weight_decay", "weight_decay=0.01", TRAIN_TESTS),
    M("T3", "training", "plateau lr drop not applied to the optimizer", "pipeline/train/training.py",
      '        group["lr"] = decision.lr', "        pass", TRAIN_TESTS),
    M("T4", "training", "best/ written every epoch", "pipeline/train/training.py",
      "    if decision.new_best:\n        save_decoder", "    if True:\n        save_decoder", TRAIN_TESTS),
    M("T5", "training", "detection image logit = max of pixel logits", "pipeline/train/training.py",
      "logits.mean(dim=(1, 2, 3))", "logits.amax(dim=(1, 2, 3))", TRAIN_TESTS),
    M("T6", "predict", "predict resizes maps to (W, H)", "pipeline/infer/predict.py",
      "to_native(prob, (image.height, image.width))", "to_native(prob, (image.width, image.height))", PREDICT_TESTS),
    M("T7", "recipe", "patience default 5 -> 6 (the recipe)", "pipeline/train/recipe.py",
      "    patience: int = 5", "    patience: int = 6", RECIPE_TESTS),
    M("T7b", "recipe", "patience default 5 -> 6 (the schedule)", "pipeline/train/schedule.py",
      "    patience: int = RECIPE.patience", "    patience: int = 6", RECIPE_TESTS),
    M("T7c", "recipe", "patience default 5 -> 6 (TrainConfig)", "pipeline/train/training.py",
      "    patience: int = RECIPE.patience", "    patience: int = 6", RECIPE_TESTS),
    M("T7d", "recipe", "patience default 5 -> 6 (CLI)", "cli/train.py",
      "default=RECIPE.patience", "default=6", RECIPE_TESTS),
    M("T8", "training", "training-run identity ignores faithful and width", "pipeline/train/training.py",
      'NOT_RESULTS = ("out", "progress", "memory_gb", "device", "channels_last", "compile", "device_memory_gb")',
      'NOT_RESULTS = ("out", "progress", "memory_gb", "device", "channels_last", "compile", "device_memory_gb", '
      '"faithful", "width")', IDENTITY_TESTS),
    M("T9", "masks", "native-mask done flag set before the masks are written", "store/feature_store.py",
      '        offsets = group["native_offsets"][start:start + len(soft) + 1]\n',
      '        group["mask_done"][block] = True\n'
      '        offsets = group["native_offsets"][start:start + len(soft) + 1]\n',
      MASK_TESTS),
    # ---- recipe and grid
    M("R1", "recipe", "lr 1e-3 -> 1e-4", "pipeline/train/recipe.py", "    lr: float = 1e-3", "    lr: float = 1e-4",
      RECIPE_TESTS),
    M("R2", "recipe", "batch size 64 -> 32", "pipeline/train/recipe.py", "    batch_size: int = 64",
      "    batch_size: int = 32", RECIPE_TESTS),
    M("R3", "recipe", "max epochs 400 -> 300", "pipeline/train/recipe.py", "    max_epochs: int = 400",
      "    max_epochs: int = 300", RECIPE_TESTS),
    M("R4", "recipe", "betas (0.9, 0.999) -> (0.5, 0.999)", "pipeline/train/recipe.py",
      "= (0.9, 0.999)", "= (0.5, 0.999)", RECIPE_TESTS),
    M("R5", "recipe", "min lr 1e-6 -> 1e-7", "pipeline/train/recipe.py", "    min_lr: float = 1e-6",
      "    min_lr: float = 1e-7", RECIPE_TESTS),
    M("R6", "recipe", "later margin 0.002 -> 0.001", "pipeline/train/recipe.py", "    later_margin: float = 0.002",
      "    later_margin: float = 0.001", RECIPE_TESTS),
    M("R7", "recipe", "weight decay 0.0 -> 0.01 (the recipe)", "pipeline/train/recipe.py",
      "    weight_decay: float = 0.0", "    weight_decay: float = 0.01", RECIPE_TESTS),
    M("R8", "recipe", "grid lr default a literal 1e-4", "pipeline/grid/config.py", "    lr: float = RECIPE.lr",
      "    lr: float = 1e-4", RECIPE_TESTS),
    M("G1", "training", "grid cells drop the grid's width and faithful", "pipeline/grid/plan.py",
      "decoder=decoder, width=cfg.width, faithful=cfg.faithful, mode=cfg.mode,", "decoder=decoder, mode=cfg.mode,",
      IDENTITY_TESTS),
    M("G2", "training", "grid eval reuse ignores the evaluation identity", "pipeline/grid/plan.py",
      '    if not eval_summary_path(ev).exists() or not record.exists():\n        return False',
      '    if eval_summary_path(ev).exists():\n        return True', IDENTITY_TESTS),
    M("G3", "training", "evaluation identity ignores the metrics", "pipeline/evaluate/evaluation.py",
      'NOT_RESULTS = ("out", "save_maps", "batch_size", "device", "memory_gb")',
      'NOT_RESULTS = ("out", "save_maps", "batch_size", "device", "memory_gb", "metrics")', IDENTITY_TESTS),
    # ---- schedule
    M("S1", "schedule", "best on >= instead of strict >", "pipeline/train/schedule.py",
      "new_best = score > self.best", "new_best = score >= self.best", SCHEDULE_TESTS),
    M("S2", "schedule", "improvement needs > reference + margin", "pipeline/train/schedule.py",
      "score >= self.reference + self.delta", "score > self.reference + self.delta", SCHEDULE_TESTS),
    M("S3", "schedule", "margin stays 0.001 after a drop", "pipeline/train/schedule.py",
      "return self.first_delta if self.drops == 0 else self.later_delta", "return self.first_delta",
      SCHEDULE_TESTS),
    M("S4", "schedule", "plateau after patience + 1 epochs", "pipeline/train/schedule.py",
      "if self.counter >= self.patience:", "if self.counter > self.patience:", SCHEDULE_TESTS),
    M("S5", "schedule", "stop one drop early (lr <= min_lr)", "pipeline/train/schedule.py",
      "if new_lr < self.min_lr * (1 - 1e-9):", "if new_lr <= self.min_lr * (1 + 1e-9):", SCHEDULE_TESTS),
    M("S6", "schedule", "reference kept across an lr drop", "pipeline/train/schedule.py",
      "self.reference, self.counter = None, 0", "self.counter = 0", SCHEDULE_TESTS),
    M("S7", "schedule", "best epoch off by one", "pipeline/train/schedule.py",
      "self.best, self.best_epoch = score, self.epoch - 1", "self.best, self.best_epoch = score, self.epoch",
      SCHEDULE_TESTS),
    M("S8", "schedule", "lr factor applied twice", "pipeline/train/schedule.py",
      "new_lr = self.lr * self.factor", "new_lr = self.lr * self.factor * self.factor", SCHEDULE_TESTS),
    M("S9", "schedule", "max_epochs ignored", "pipeline/train/schedule.py",
      "if not stop and self.epoch >= self.max_epochs:", "if False:", SCHEDULE_TESTS),
    # ---- training loop
    M("L1", "training", "data order identical every epoch", "pipeline/train/training.py",
      "seed = cfg.seed * 100_003 + epoch + rep * 1_000_003", "seed = cfg.seed * 100_003 + rep * 1_000_003",
      TRAIN_TESTS),
    M("L2", "training", "localization trains on reals too", "pipeline/data/cached_splits.py",
      'keep = is_fake & (samples["kind"] == "partial") & (samples["mask_path"] != "")',
      'keep = is_fake | (samples["label"] == 0)', TRAIN_TESTS),
    M("L3", "training", "validation on the training split", "pipeline/train/training.py",
      "base.train_subsets, base.valid_split, base.mode)", "base.train_subsets, base.train_split, base.mode)",
      TRAIN_TESTS),
    M("L4", "training", "detection selects on accuracy", "pipeline/train/training.py",
      'key = "iou" if head.cfg.mode == "localization" else "ap"',
      'key = "iou" if head.cfg.mode == "localization" else "acc"', TRAIN_TESTS),
    M("L5", "training", "schedule stepped twice per epoch", "pipeline/train/training.py",
      "    decision = head.schedule.step(scores[key])\n",
      "    decision = head.schedule.step(scores[key])\n    decision = head.schedule.step(scores[key])\n",
      TRAIN_TESTS),
    M("L6", "training", "optimizer gradients never zeroed", "pipeline/train/training.py",
      "h.optimizer.zero_grad(set_to_none=True)", "pass", TRAIN_TESTS),
    M("L7", "training", "decoder left in eval mode while training", "pipeline/train/training.py",
      "        h.decoder.train()", "        h.decoder.eval()", TRAIN_TESTS),
    M("L8", "training", "resume restarts the schedule", "pipeline/train/training.py",
      '    head.schedule = PlateauSchedule.from_state(state["schedule"])\n', "", TRAIN_TESTS),
    # ---- evaluation
    M("E1", "evaluation", "maps resized to (W, H) in evaluation", "pipeline/evaluate/evaluation.py",
      'truth.append(((int(rec["height"]), int(rec["width"])), gt, label, paths[int(row)]))',
      'truth.append(((int(rec["width"]), int(rec["height"])), gt, label, paths[int(row)]))', EVAL_TESTS),
    M("E2", "evaluation", "predict image score = max prob", "pipeline/infer/predict.py",
      '"image_score": float(native.mean())', '"image_score": float(native.max())', PREDICT_TESTS),
    # ---- metrics
    M("P1", "metrics", "fixed threshold p >= 0.5", "pipeline/metrics/pixel.py", "return self.prob > THRESHOLD",
      "return self.prob >= THRESHOLD", METRIC_TESTS),
    M("P2", "metrics", "IoU without false negatives", "pipeline/metrics/pixel.py",
      "100.0 * (tp + IOU_EPS) / (tp + fp + fn + IOU_EPS)", "100.0 * (tp + IOU_EPS) / (tp + fp + IOU_EPS)",
      METRIC_TESTS),
    M("P3", "metrics", "erosion 15 -> 13", "pipeline/metrics/pixel.py", "ERODE_SIZE = 15", "ERODE_SIZE = 13",
      METRIC_TESTS),
    M("P4", "metrics", "dilation 11 -> 9", "pipeline/metrics/pixel.py", "DILATE_SIZE = 11", "DILATE_SIZE = 9",
      METRIC_TESTS),
    M("P5", "metrics", "interpolated AP", "pipeline/metrics/pixel.py", "    precision = tps / (tps + fps)\n",
      "    precision = np.maximum.accumulate((tps / (tps + fps))[::-1])[::-1]\n", METRIC_TESTS),
    M("P6", "metrics", "AUC axes swapped", "pipeline/metrics/pixel.py", "np.trapezoid(tpr, fpr)",
      "np.trapezoid(fpr, tpr)", METRIC_TESTS),
    M("P7", "metrics", "F1_best without the max with F1_fixed", "pipeline/metrics/pixel.py",
      "return float(max(np.max(f1_declip_from_counts(tps, fps, fns)), f1_fixed(case)))",
      "return float(np.max(f1_declip_from_counts(tps, fps, fns)))", METRIC_TESTS),
    M("P7b", "metrics", "TruFor F1_best without the max with F1_fixed_trufor", "pipeline/metrics/pixel.py",
      "return float(max(np.max(f1_from_counts(tps, fps, fns)), f1_fixed_trufor(case)))",
      "return float(np.max(f1_from_counts(tps, fps, fns)))", METRIC_TESTS),
    M("P8", "metrics", "F1_best thresholds p >= t", "pipeline/metrics/pixel.py",
      "        tps = np.concatenate(([0], tps_ge[:-1]))\n        fps = np.concatenate(([0], fps_ge[:-1]))\n",
      "        tps, fps = tps_ge, fps_ge\n", METRIC_TESTS),
    M("P9", "metrics", "F1 without false positives", "pipeline/metrics/pixel.py",
      "2 * tp / np.maximum(2 * tp + fn + fp, F1_FLOOR)", "2 * tp / np.maximum(2 * tp + fn, F1_FLOOR)", METRIC_TESTS),
    M("P10", "metrics", "image accuracy at >= 0.5", "pipeline/metrics/image.py",
      "return float(np.mean((np.asarray(scores) > THRESHOLD) == labels))",
      "return float(np.mean((np.asarray(scores) >= THRESHOLD) == labels))", METRIC_TESTS),
    M("P11", "metrics", "mean_prob image score = max", "pipeline/metrics/image.py",
      "return float(np.mean(prob, dtype=np.float64))", "return float(np.max(prob))", METRIC_TESTS),
    M("P12", "metrics", "resize without antialias", "pipeline/metrics/resize.py",
      't[None, None], size=target, mode="bilinear", align_corners=False, antialias=True)',
      't[None, None], size=target, mode="bilinear", align_corners=False, antialias=False)',
      METRIC_TESTS),
    M("P13", "metrics", "resize with align_corners", "pipeline/metrics/resize.py",
      't[None, None], size=target, mode="bilinear", align_corners=False, antialias=True)',
      't[None, None], size=target, mode="bilinear", align_corners=True, antialias=True)',
      METRIC_TESTS),
    M("P14", "metrics", "control: an unused name added", "pipeline/metrics/pixel.py", "F1_FLOOR = 1e-32",
      "F1_FLOOR = 1e-32\nnp_floor_hack = None", METRIC_TESTS,
      equivalent="adds an unused name: a control mutant that must survive (checks the harness does not kill everything)"),
    # ---- masks
    M("K1", "masks", "evaluation binarisation >= 129", "pipeline/data/masks.py",
      "return np.asarray(mask_fake_white_u8) > 127", "return np.asarray(mask_fake_white_u8) > 128", MASK_TESTS),
    M("K2", "masks", "soft targets resized nearest", "pipeline/data/masks.py",
      "(TARGET_SIZE, TARGET_SIZE), Image.Resampling.BILINEAR", "(TARGET_SIZE, TARGET_SIZE), Image.Resampling.NEAREST",
      MASK_TESTS, fresh=True),
    M("K3", "masks", "Dolos polarity not inverted", "pipeline/data/masks.py", "        return 255 - mask\n",
      "        return mask\n", MASK_TESTS, fresh=True),
    M("K4", "masks", "mask done flag set before the soft masks are written", "store/feature_store.py",
      '        group["soft_masks"][start:start + len(soft)] = soft\n',
      '        group["mask_done"][block] = True\n        group["soft_masks"][start:start + len(soft)] = soft\n',
      MASK_TESTS),
    M("K5", "masks", "native mask unpacked transposed", "store/feature_store.py",
      "count=h * w).reshape(h, w).astype(bool)", "count=h * w).reshape(w, h).T.astype(bool)", MASK_TESTS),
    # ---- store
    M("D1", "store", "feature done flag set before the data", "store/feature_store.py",
      "        arrays.feats[start:stop] = feats\n",
      "        arrays.done[block] = True\n        arrays.feats[start:stop] = feats\n", STORE_TESTS),
    M("D2", "store", "class tokens not written", "store/feature_store.py",
      "            arrays.cls[start:stop] = cls", "            pass", STORE_TESTS),
    M("D3", "store", "recipe left out of the identity fields", "store/feature_store.py",
      '"schema_version", "backbone", "weights_checksum", "recipe", "layer",',
      '"schema_version", "backbone", "weights_checksum", "layer",', STORE_TESTS),
    M("D4", "store", "dataset checksum ignores file contents", "store/feature_store.py",
      'samples[["image_path", "mask_path", "sha256"]]', 'samples[["image_path", "mask_path"]]', STORE_TESTS),
    M("D5", "store", "class-token rows read from the wrong offset", "store/readers.py",
      "self._small(self.arrays.cls, rows))",
      "self._small(self.arrays.cls, rows.min() + np.arange(len(rows))) if len(rows) else None)",
      STORE_TESTS + ("tests/pipeline/train/test_training_recipe.py::test_one_run_reproduces_the_reference_recipe",)),
    M("D6", "store", "fused channels in the wrong order", "features/fusion.py",
      "torch.cat([vit.float(), resnet.float()], dim=1)", "torch.cat([resnet.float(), vit.float()], dim=1)",
      STORE_TESTS + TAP_TESTS),
    # ---- decoders
    M("C1", "decoders", "linear upsampling bilinear instead of bicubic", "decoders/linear.py",
      'mode="bicubic", align_corners=False', 'mode="bilinear", align_corners=False', DECODER_TESTS),
    M("C2", "decoders", "init gain 0.02 -> 0.01", "decoders/weight_init.py", "INIT_GAIN = 0.02", "INIT_GAIN = 0.01",
      DECODER_TESTS),
    M("C3", "decoders", "conv kernel 5 -> 3", "decoders/conv.py",
      "nn.Conv2d(c_in, c_out, kernel_size=5, padding=2)", "nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)",
      DECODER_TESTS),
    M("C4", "decoders", "causal mask on the diagonal too", "decoders/attention.py", ".triu_(1)", ".triu_(2)",
      DECODER_TESTS),
    M("C5", "decoders", "faithful trainable rule ignores resblock", "decoders/registry.py",
      'return [n for n in names if "fc" in n and "resblock" not in n]', 'return [n for n in names if "fc" in n]',
      DECODER_TESTS,
      equivalent="our decoders have no parameter named *resblock* (DeCLIP's rule excludes the backbone's): "
                 "no parameter set can change"),
    M("C6", "decoders", "conv BatchNorm dropped from the block", "decoders/conv.py",
      "nn.BatchNorm2d(c_out), nn.ReLU()", "nn.ReLU()", DECODER_TESTS),
    M("C7", "decoders", "QuickGELU constant 1.702 -> 1.0", "decoders/attention.py", "torch.sigmoid(1.702 * x)",
      "torch.sigmoid(1.0 * x)", DECODER_TESTS),
    # ---- taps and preprocessing
    M("F1", "taps", "ViT tap one block too deep", "features/families.py",
      "images, indices=indices, stop_early=True,",
      "images, indices=[min(i + 1, backbone.num_blocks - 1) for i in indices], stop_early=True,",
      TAP_TESTS, fresh=True),
    M("F2", "taps", "class token replaced by the mean patch token", "features/families.py",
      '{f"layer{k}": (f, p[:, 0])', '{f"layer{k}": (f, f.mean(dim=(2, 3)))', TAP_TESTS,
      fresh=True),
    M("F3", "preprocessing", "DeCLIP recipe bicubic instead of bilinear", "features/preprocess.py",
      'return Recipe("declip", size, "bilinear", False,', 'return Recipe("declip", size, "bicubic", False,',
      TAP_TESTS, fresh=True),
    M("F4", "preprocessing", "DeCLIP recipe centre-crops", "features/preprocess.py",
      'return Recipe("declip", size, "bilinear", False,', 'return Recipe("declip", size, "bilinear", True,',
      TAP_TESTS, fresh=True),
    M("F5", "preprocessing", "normalisation divides by mean", "features/preprocess.py",
      "/ np.asarray(recipe.std, dtype=np.float32)", "/ np.asarray(recipe.mean, dtype=np.float32)", TAP_TESTS,
      fresh=True),
    M("F6", "preprocessing", "channels in BGR order", "features/preprocess.py", "arr.transpose(2, 0, 1)",
      "arr[..., ::-1].transpose(2, 0, 1)", TAP_TESTS, fresh=True),
    M("F7", "taps", "ResNet stage input stored instead of its output", "features/families.py",
      '            x = getattr(v, f"layer{k}")(x)\n            if k in indices:\n                result[f"layer{k}"] = (x, None)\n',
      '            if k in indices:\n                result[f"layer{k}"] = (x, None)\n            x = getattr(v, f"layer{k}")(x)\n',
      TAP_TESTS, fresh=True),
]


def anchor_count(root: Path, m: Mutant) -> int:
    """How often the mutant's anchor text occurs in its file under ``root`` (0 when the file is gone)."""
    path = root / m.file
    return path.read_text().count(m.old) if path.exists() else 0


def anchor_state(root: Path, m: Mutant) -> str:
    """``ok`` when the anchor occurs exactly once (the mutant can be applied), else why it cannot."""
    n = anchor_count(root, m)
    return "ok" if n == 1 else ("anchor-missing" if n == 0 else f"anchor-ambiguous({n})")
