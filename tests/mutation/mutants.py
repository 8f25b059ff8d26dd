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
OPTION_TESTS = ("tests/core/test_configs.py", "tests/cli/test_config_flags.py", "tests/pipeline/train/test_options.py")
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
MAPS_TESTS = ("tests/pipeline/evaluate/test_maps.py",)
MASK_TESTS = ("tests/pipeline/data/test_masks.py", "tests/store/test_store_failures.py",
              "tests/pipeline/extract/test_extraction.py::test_masks_cached_with_declip_polarity",
              "tests/pipeline/train/test_training_recipe.py::test_training_sees_only_fakes_and_their_soft_masks")
DECODER_TESTS = ("tests/decoders/test_decoders.py",)
SHAPE_TESTS = ("tests/test_contracts.py::test_layer_shapes_from_the_config_equal_the_built_model",)
PLAN_TESTS = ("tests/pipeline/grid/test_cost_plan.py",)
FLOP_TESTS = ("tests/pipeline/grid/test_model_flops.py",)
TAP_TESTS = ("tests/features/test_taps.py",
             "tests/pipeline/extract/test_extraction.py::test_cached_features_equal_hooked_forward")

M = Mutant
VIEW_TESTS = ("tests/features/test_views.py", "tests/test_contracts.py::test_view_operation_keeps_its_contract")
DTYPE_TESTS = ("tests/store/test_storage_dtype.py", "tests/test_contracts.py::test_storage_dtype_keeps_its_contract")
CHUNK_TESTS = ("tests/store/test_chunk_writes.py",)
PREPROCESS_TESTS = ("tests/features/test_preprocess.py",)
FUSED_TESTS = ("tests/pipeline/train/test_fused_loss.py",)
BICUBIC_TESTS = ("tests/decoders/test_bicubic.py",)
TOKEN_SCORE_TESTS = ("tests/decoders/test_token_scores.py",)
PROGRESS_TESTS = ("tests/pipeline/train/test_training_progress.py", "tests/core/test_stop.py")
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
      "weight_decay=DECLIP_TRAINING.weight_decay", "weight_decay=0.01", TRAIN_TESTS),
    M("T3", "training", "plateau lr drop not applied to the optimizer", "pipeline/train/training.py",
      '        group["lr"] = decision.lr', "        pass", TRAIN_TESTS),
    M("T4", "training", "best/ written every epoch", "pipeline/train/training.py",
      "    if decision.new_best:\n        save_decoder", "    if True:\n        save_decoder", TRAIN_TESTS),
    M("T5", "training", "detection image logit = max of pixel logits", "pipeline/train/training.py",
      "logits.mean(dim=(1, 2, 3))", "logits.amax(dim=(1, 2, 3))", TRAIN_TESTS),
    M("T6", "predict", "predict resizes maps to (W, H)", "pipeline/infer/predict.py",
      "[(image.height, image.width) for image in images]", "[(image.width, image.height) for image in images]",
      PREDICT_TESTS),
    M("T7", "recipe", "patience default 5 -> 6 (the recipe)", "pipeline/train/recipe.py",
      "    patience: int = 5", "    patience: int = 6", RECIPE_TESTS),
    M("T7b", "recipe", "patience default 5 -> 6 (the schedule)", "pipeline/train/schedule.py",
      "    patience: int = DECLIP_TRAINING.patience", "    patience: int = 6", RECIPE_TESTS),
    M("T7c", "recipe", "patience default 5 -> 6 (TrainOptions: train, grid and demo)", "pipeline/train/options.py",
      "        DECLIP_TRAINING.patience, identity=RESULT,", "        6, identity=RESULT,", RECIPE_TESTS),
    M("T7d", "recipe", "CLI flags carry their defaults, so an untyped flag overrides the grid file",
      "cli/config_flags.py", '{"dest": leaf.key, "default": None,', '{"dest": leaf.key, "default": default,',
      OPTION_TESTS),
    M("T8", "training", "training-run identity ignores the width (classified not-a-result)",
      "pipeline/train/options.py",
      "        None, identity=RESULT, rule=number(above=0, optional=True),",
      "        None, identity=NOT_RESULT, rule=number(above=0, optional=True),", IDENTITY_TESTS),
    M("T9", "masks", "native-mask done flag set before the masks are written", "store/datasets.py",
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
    M("R8", "recipe", "grid training options default to a literal lr 1e-4", "pipeline/grid/config.py",
      "    options: TrainOptions = nested(TrainOptions, help=",
      "    options: TrainOptions = nested(TrainOptions, factory=lambda: TrainOptions(lr=1e-4), help=", RECIPE_TESTS),
    M("G1", "training", "grid cells drop the grid's options (width, faithful, ...: the defaults instead)",
      "pipeline/grid/plan.py", "    options = replace(cfg.options, progress=False)",
      "    options = replace(type(cfg.options)(), progress=False)", IDENTITY_TESTS),
    # ---- options declared once (TrainOptions, core.configs, generated flags)
    M("O1", "options", "later options hashed even at their neutral value (old runs change identity)",
      "pipeline/train/config.py", "if kind == NOT_RESULT or (kind == LATER and value == neutral):",
      "if kind == NOT_RESULT:", IDENTITY_TESTS),
    M("O2", "options", "stored config.json loses the key order runs always had", "core/configs.py",
      '    order = getattr(type(cfg), "JSON_ORDER", ())', "    order = ()", IDENTITY_TESTS),
    M("O3", "options", "unknown config keys silently accepted", "core/configs.py",
      "    if unknown:\n        raise DeclipError", "    if False:\n        raise DeclipError", OPTION_TESTS),
    M("O4", "options", "a run keeps device auto / width unset instead of resolving them", "pipeline/train/config.py",
      '        object.__setattr__(self, "options", self.options.resolved())', "        pass", IDENTITY_TESTS),
    M("O5", "options", "repeated list flags keep only the last value", "cli/config_flags.py",
      '            kwargs.update(action="append", metavar=m.metavar or "VALUES")',
      '            kwargs.update(type=lambda v: [v], metavar=m.metavar or "VALUES")', OPTION_TESTS),
    M("G2", "training", "grid eval reuse ignores the evaluation identity", "pipeline/grid/plan.py",
      '    if not eval_summary_path(ev).exists() or not record.exists():\n        return False',
      '    if eval_summary_path(ev).exists():\n        return True', IDENTITY_TESTS),
    M("G3", "training", "evaluation identity ignores the metrics", "pipeline/evaluate/evaluation.py",
      'NOT_RESULTS = ("out", "save_maps", "batch_size", "device", "memory_gb", "maps_dir")',
      'NOT_RESULTS = ("out", "save_maps", "batch_size", "device", "memory_gb", "maps_dir", "metrics")',
      IDENTITY_TESTS),
    # ---- the grid's own state, without Prefect (pipeline/grid: cells, ledger, baselines table, progress)
    M("G4", "grid", "layers already in the store recorded as the grid's own", "pipeline/grid/ledger.py",
      "if (b, layer) not in mine and fs.layer_path(b, layer, g.dataset) not in fs.root}",
      "if (b, layer) not in mine}", ("tests/pipeline/grid/test_ledger.py",)),
    M("G5", "grid", "eviction deletes every layer of the group", "pipeline/grid/ledger.py",
      "ours = [(b, layer) for b, layer in pairs if (b, layer) in created]", "ours = list(pairs)",
      ("tests/pipeline/grid/test_ledger.py",)),
    M("G6", "grid", "half-written baseline rows kept beside their replacements", "pipeline/grid/baseline_table.py",
      "        kept = kept[~stale]", "        pass", ("tests/pipeline/grid/test_baseline_table.py",)),
    M("G7", "grid", "a trained cell counted on every evaluation", "pipeline/grid/progress.py",
      "self._advance(1 if self.waiting[run] == 0 else 0)", "self._advance(1)",
      ("tests/pipeline/grid/test_progress.py",)),
    M("G8", "grid", "a successful training leaves an old failed.json", "pipeline/grid/cells.py",
      "    (Path(cfg.out) / FAILED_RECORD).unlink(missing_ok=True)\n", "",
      ("tests/pipeline/grid/test_cells.py",)),
    M("G9", "grid", "evaluations of a failed cell attempted", "pipeline/grid/cells.py",
      'if trained is not None and (mine is None or mine.get("status") != "ok"):',
      "if trained is not None and mine is None:", ("tests/pipeline/grid/test_cells.py",)),
    M("G10", "grid", "grouped evaluation records lose their cell", "pipeline/grid/cells.py",
      "[dict(evaluate_cell(cfg, trained, run, label, log), run=run) for run, cfgs in work for cfg in cfgs]",
      "[evaluate_cell(cfg, trained, run, label, log) for run, cfgs in work for cfg in cfgs]",
      ("tests/pipeline/grid/test_cells.py",)),
    M("G11", "grid", "a training run's evaluation task evaluates its first cell only", "pipeline/grid/cells.py",
      "for run, cfgs in work for cfg in cfgs]", "for run, cfgs in work[:1] for cfg in cfgs]",
      ("tests/pipeline/grid/test_cells.py",)),
    M("G12", "grid", "cells trained before never get their missing evaluations", "pipeline/grid/plan.py",
      "    tasks += [[(c, needed[c.run_id])] for c in cells if c.run_id not in training and needed[c.run_id]]\n", "",
      ("tests/pipeline/grid/test_grid_groups.py",)),
    M("G13", "grid", "cells training now keep their earlier evaluations", "pipeline/grid/plan.py",
      "[ev for ev in c.evals if c.run_id in training or not eval_finished(ev)]",
      "[ev for ev in c.evals if not eval_finished(ev)]", ("tests/pipeline/grid/test_grid_groups.py",)),
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
      "base.train_sets, o.valid_split, o.mode)", "base.train_sets, o.train_split, o.mode)", TRAIN_TESTS),
    M("L4", "training", "detection selects on accuracy", "pipeline/train/training.py",
      'key = "iou" if head.cfg.options.mode == "localization" else "ap"',
      'key = "iou" if head.cfg.options.mode == "localization" else "acc"', TRAIN_TESTS),
    M("L5", "training", "schedule stepped twice per epoch", "pipeline/train/training.py",
      "    decision = head.schedule.step(scores[key])\n",
      "    decision = head.schedule.step(scores[key])\n    decision = head.schedule.step(scores[key])\n",
      TRAIN_TESTS),
    M("L6", "training", "optimizer gradients never zeroed", "pipeline/train/training.py",
      "h.optimizer.zero_grad(set_to_none=True)", "pass", TRAIN_TESTS),
    M("L6b", "training", "fused heads' gradients never zeroed", "pipeline/train/fused_loss.py",
      "optimizer.zero_grad(set_to_none=True)", "pass", TRAIN_TESTS),
    M("L7", "training", "decoder left in eval mode while training", "pipeline/train/training.py",
      "        h.decoder.train()", "        h.decoder.eval()", TRAIN_TESTS),
    M("L8", "training", "resume restarts the schedule", "pipeline/train/training.py",
      '    head.schedule = PlateauSchedule.from_state(state["schedule"])\n', "", TRAIN_TESTS),
    # ---- evaluation
    M("E1", "evaluation", "maps resized to (W, H) in evaluation", "pipeline/evaluate/maps.py",
      'return int(rec["height"]), int(rec["width"])', 'return int(rec["width"]), int(rec["height"])', EVAL_TESTS),
    M("E2", "evaluation", "predict image score = max prob", "pipeline/infer/predict.py",
      '"image_score": float(native.mean())', '"image_score": float(native.max())', PREDICT_TESTS),
    M("E3", "maps", "recomputed maps come back in batch order, not the order asked for", "pipeline/evaluate/maps.py",
      "shuffle=False, seed=0, sources=[source]", "shuffle=True, seed=0, sources=[source]", MAPS_TESTS),
    M("E4", "maps", "maps are clipped logits instead of their sigmoid", "pipeline/evaluate/maps.py",
      "torch.sigmoid(logits[:, 0].float())", "logits[:, 0].float().clamp(0, 1)", MAPS_TESTS),
    M("E5", "maps", "predict's fused source keeps the ViT class token", "pipeline/evaluate/maps.py",
      "return fuse(parts[0][0], parts[1][0]), None", "return fuse(parts[0][0], parts[1][0]), parts[0][1]",
      MAPS_TESTS),
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
    M("K4", "masks", "mask done flag set before the soft masks are written", "store/datasets.py",
      '        write_rows(group["soft_masks"], start, soft,',
      '        group["mask_done"][block] = True\n        write_rows(group["soft_masks"], start, soft,',
      MASK_TESTS),
    M("K5", "masks", "native mask unpacked transposed", "store/mask_reader.py",
      "count=h * w).reshape(h, w).astype(bool)", "count=h * w).reshape(w, h).T.astype(bool)", MASK_TESTS),
    # ---- store
    M("D1", "store", "feature done flag set before the data", "store/layers.py",
      "        write_rows(arrays.feats, start, feats, valid)",
      "        arrays.done[block] = True\n        write_rows(arrays.feats, start, feats, valid)", STORE_TESTS),
    M("D10", "store", "each read span skips its last row", "store/fastpath.py",
      "        for i in range(lo, hi):\n", "        for i in range(lo, hi - 1):\n", STORE_TESTS),
    M("D11", "store", "read spans leave the tail rows out", "store/fastpath.py",
      "return [(lo, min(n, lo + size)) for lo in range(0, n, size)]",
      "return [(lo, lo + size) for lo in range(0, n - size + 1, size)]", STORE_TESTS),
    M("D2", "store", "class tokens not written", "store/layers.py",
      "            write_chunk(arrays.cls, start, cls)", "            pass", STORE_TESTS),
    M("D3", "store", "recipe left out of the identity fields", "store/layers.py",
      '"schema_version", "backbone", "weights_checksum", "recipe", "layer",',
      '"schema_version", "backbone", "weights_checksum", "layer",', STORE_TESTS),
    M("D4", "store", "dataset checksum ignores file contents", "store/checksums.py",
      'samples[["image_path", "mask_path", "sha256"]]', 'samples[["image_path", "mask_path"]]', STORE_TESTS),
    M("D5", "store", "class-token rows read from the wrong offset", "store/readers.py",
      'cls, scales = self._small(self.arrays.cls, "cls", rows),',
      'cls, scales = self._small(self.arrays.cls, "cls", rows.min() + np.arange(len(rows))) if len(rows) else None,',
      STORE_TESTS + ("tests/pipeline/train/test_training_recipe.py::test_one_run_reproduces_the_reference_recipe",)),
    M("D6", "store", "fused channels in the wrong order", "features/fusion.py",
      "torch.cat([vit.float(), resnet.float()], dim=1)", "torch.cat([resnet.float(), vit.float()], dim=1)",
      STORE_TESTS + TAP_TESTS),
    # ---- decoders
    M("C1", "decoders", "linear upsampling bilinear instead of bicubic", "decoders/linear.py",
      'mode="bicubic", align_corners=False', 'mode="bilinear", align_corners=False', DECODER_TESTS),
    M("C13", "decoders", "linear head scores patches column by column", "decoders/linear.py",
      'token_scores(linear.weight[0], linear.bias, feats)',
      'token_scores(linear.weight[0], linear.bias, feats.transpose(2, 3))', DECODER_TESTS),
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
    M("F1", "taps", "ViT tap one block too deep", "features/open_clip.py",
      "images, indices=indices, stop_early=True,",
      "images, indices=[min(i + 1, backbone.num_blocks - 1) for i in indices], stop_early=True,",
      TAP_TESTS, fresh=True),
    M("F2", "taps", "class token replaced by the mean patch token", "features/open_clip.py",
      '{f"layer{k}": (f, p[:, 0])', '{f"layer{k}": (f, f.mean(dim=(2, 3)))', TAP_TESTS,
      fresh=True),
    M("F3", "preprocessing", "DeCLIP recipe bicubic instead of bilinear", "features/preprocess.py",
      'return Recipe("declip", size, "bilinear", False,', 'return Recipe("declip", size, "bicubic", False,',
      TAP_TESTS, fresh=True),
    M("F4", "preprocessing", "DeCLIP recipe centre-crops", "features/preprocess.py",
      'return Recipe("declip", size, "bilinear", False,', 'return Recipe("declip", size, "bilinear", True,',
      TAP_TESTS, fresh=True),
    M("F5", "preprocessing", "normalisation divides by mean", "features/preprocess.py",
      "/ np.asarray(std, dtype=np.float32)", "/ np.asarray(mean, dtype=np.float32)", TAP_TESTS,
      fresh=True),
    M("F6", "preprocessing", "channels in BGR order", "features/preprocess.py",
      "np.take(table[channel], arr[:, :, channel], out=target[channel])",
      "np.take(table[channel], arr[:, :, 2 - channel], out=target[channel])", TAP_TESTS, fresh=True),
    M("F7", "taps", "ResNet stage input stored instead of its output", "features/open_clip.py",
      '            x = getattr(v, f"layer{k}")(x)\n            if k in indices:\n                result[f"layer{k}"] = (x, None)\n',
      '            if k in indices:\n                result[f"layer{k}"] = (x, None)\n            x = getattr(v, f"layer{k}")(x)\n',
      TAP_TESTS, fresh=True),
    # ---- planning from config alone: layer shapes, disk bytes, FLOPs, format sniffing
    M("N1", "planning", "ResNet config shapes with bottleneck expansion 2", "features/open_clip.py",
      "self._info(k, 4 * width * 2 ** (k - 1),", "self._info(k, 2 * width * 2 ** (k - 1),", SHAPE_TESTS),
    M("N2", "planning", "ViT config shapes one block short", "features/open_clip.py",
      'for k in range(int(v["layers"]))))', 'for k in range(int(v["layers"]) - 1)))', SHAPE_TESTS),
    M("N3", "planning", "encode planned to the shallowest layer of a pass", "features/families.py",
      "return max(layers, key=order.__getitem__)", "return min(layers, key=order.__getitem__)", PLAN_TESTS),
    M("N4", "planning", "disk bytes without the class token", "pipeline/grid/budget.py",
      "shape.channels, shape.grid, shape.has_cls)", "shape.channels, shape.grid, False)", PLAN_TESTS),
    M("N5", "planning", "decoder FLOP memo ignores the width", "pipeline/grid/model_flops.py",
      "(int(grid[0]), int(grid[1])), family, float(width))", "(int(grid[0]), int(grid[1])), family, FULL_WIDTH)",
      FLOP_TESTS),
    M("N6", "planning", "a committed FLOP count gone stale", "pipeline/grid/flop_table.py",
      "('linear', 2048, (7, 7), 'resnet', 1.0): (200704.0, 401408.0)",
      "('linear', 2048, (7, 7), 'resnet', 1.0): (200704.0, 200704.0)", FLOP_TESTS),
    M("N7", "planning", "TorchScript sniffed by a name anywhere in the zip", "core/io.py",
      'return f"{top}/constants.pkl" in names and f"{top}/data.pkl" in names',
      'return any(n.endswith("constants.pkl") for n in names)', ("tests/core/test_io.py",)),
    # ---- views and storage dtypes (the registries of issue 18)
    M("V1", "views", "resize view leaves the mask where it was", "features/view_ops.py",
      "move_mask=lambda mask, params: resize_mask(mask, params[0]),", "move_mask=lambda mask, params: mask,",
      VIEW_TESTS),
    M("V2", "views", "view seed ignores the image", "features/views.py",
      'f"{self.name}\\x1f{image_id}"', 'f"{self.name}"', VIEW_TESTS),
    M("V3", "views", "DeCLIP augment all: JPEG before the colour jitter", "features/view_ops.py",
      'AUGMENT_KINDS.add("all", (_declip_jitter, _declip_jpeg, _declip_blur))',
      'AUGMENT_KINDS.add("all", (_declip_jpeg, _declip_jitter, _declip_blur))', VIEW_TESTS),
    M("Q1", "dtypes", "int8 codes truncated instead of rounded", "store/quantize.py",
      "return x.round_().clamp_(-127, 127).to(torch.int8)", "return x.trunc_().clamp_(-127, 127).to(torch.int8)",
      DTYPE_TESTS),
    M("Q2", "dtypes", "float8 bits decoded as integers", "store/quantize.py",
      "return codes.view(torch.float8_e4m3fn).float()", "return codes.float()", DTYPE_TESTS),
    M("Q3", "dtypes", "bytes per sample leave out the scales", "store/quantize.py",
      "scales = channels * 4 if is_quantized(name) else 0", "scales = 0", DTYPE_TESTS),
    # ---- the extraction hot path (issue 23): direct chunk files, the normalisation table, decoding into slots
    M("W1", "chunk writes", "a valid all-zero row loses its chunk (zarr's empty-chunk rule)", "store/chunk_writes.py",
      "if not valid[i] and not rows[i].any():", "if not rows[i].any():", CHUNK_TESTS),
    M("W2", "chunk writes", "chunk written in place, not through a renamed temporary", "store/chunk_writes.py",
      'tmp = f"{path}.{uuid.uuid4().hex}.partial"', "tmp = path", CHUNK_TESTS),
    M("W3", "chunk writes", "feature arrays back on nested chunk folders", "store/layers.py",
      "compressors=None, chunk_key_encoding=FLAT_CHUNK_KEYS, **(", "compressors=None, **(", CHUNK_TESTS),
    M("W4", "chunk writes", "rows written one sample off", "store/chunk_writes.py",
      "encode_chunk_key((start + i,) + tail)", "encode_chunk_key((start + i + 1,) + tail)", CHUNK_TESTS),
    M("W7", "chunk writes", "a block's short last chunk written unpadded", "store/chunk_writes.py",
      "    if len(chunk) < rows:  # the array's short last chunk\n", "    if False:\n", CHUNK_TESTS),
    M("W8", "chunk writes", "a block's chunk file named by its first row", "store/chunk_writes.py",
      "encode_chunk_key((start // rows,) + (0,) * (array.ndim - 1))",
      "encode_chunk_key((start,) + (0,) * (array.ndim - 1))", CHUNK_TESTS),
    M("W9", "chunk writes", "the done flag uncompressed: its damage goes unseen", "store/layers.py",
      'array("done", shape=(blocks,), chunks=(1,), dtype="bool", fill_value=False)',
      'array("done", shape=(blocks,), chunks=(1,), dtype="bool", fill_value=False, compressors=None)',
      ("tests/store/test_verify.py",), fresh=True),
    M("W10", "chunk writes", "a zstd chunk framed with the default level, not the array's", "store/chunk_writes.py",
      "Zstd(level=codecs[1].level, checksum=codecs[1].checksum)", "Zstd()", CHUNK_TESTS),
    M("W11", "chunk writes", "a zstd array's chunk written raw", "store/chunk_writes.py",
      "    if len(codecs) == 2:  # bytes, then zstd", "    if False:  # bytes, then zstd", CHUNK_TESTS),
    M("W12", "chunk writes", "zstd arrays left to zarr's slow write", "store/fastpath.py",
      "    if zstd and len(codecs) == 2", "    if False and len(codecs) == 2", CHUNK_TESTS),
    M("TS1", "token scores", "weight gradient averaged over the batch", "decoders/token_scores.py",
      "grad.unsqueeze(2)).sum(0)", "grad.unsqueeze(2)).mean(0)", TOKEN_SCORE_TESTS),
    M("TS2", "token scores", "the custom backward used under autocast", "decoders/token_scores.py",
      "if _autocast_on(feats.device.type) or", "if", TOKEN_SCORE_TESTS),
    M("TS3", "token scores", "no gradient for the features", "decoders/token_scores.py",
      "if ctx.needs_input_grad[0] else None", "if False else None", TOKEN_SCORE_TESTS),
    M("TS4", "token scores", "feature gradient without the weights", "decoders/token_scores.py",
      "grad_x = w.view(1, -1, 1) * grad.unsqueeze(1)", "grad_x = grad.unsqueeze(1).expand_as(x)",
      TOKEN_SCORE_TESTS),
    M("MW1", "mask writes", "an all-zero soft mask written as a chunk file", "store/datasets.py",
      "valid=soft.reshape(len(soft), -1).any(axis=1))", "valid=None)", ("tests/store/test_store.py",)),
    M("MW2", "mask writes", "every block's mask checksums written to block 0", "store/datasets.py",
      'write_chunk(group["mask_sums"], block,', 'write_chunk(group["mask_sums"], 0,', ("tests/store/test_store.py",)),
    M("MW3", "mask writes", "a real row's mask read from the file a fake would have",
      "pipeline/extract/registration.py",
      'has_mask = ((df["label"] == 1) & (df["mask_path"].fillna("").astype(str) != "")).to_numpy()',
      'has_mask = (df["label"] >= 0).to_numpy()',
      ("tests/pipeline/extract/test_extraction.py", "tests/pipeline/extract/test_extraction_inputs.py")),
    M("HC1", "host copy", "features converted on the CPU after the copy back", "features/encode.py",
      "    return tensor.to(dtype).cpu()", '    return tensor.to("cpu", dtype)', ("tests/features/test_encode.py",)),
    M("HC2", "host copy", "float storage encoding converts after the copy back", "store/quantize.py",
      "return to_host(feats, getattr(torch, spec.disk)).numpy(), None",
      'return feats.to("cpu", getattr(torch, spec.disk)).numpy(), None', ("tests/features/test_encode.py",)),
    M("HC3", "host copy", "class tokens stored in float32", "features/encode.py",
      "c = to_host(cls, cls_dtype).numpy()", "c = to_host(cls, torch.float32).numpy()",
      ("tests/features/test_encode.py",)),
    M("W5", "preprocessing", "normalisation table built in float64", "features/preprocess.py",
      "values = np.arange(256, dtype=np.float32)[:, None] / 255.0",
      "values = np.arange(256, dtype=np.float64)[:, None] / 255.0", PREPROCESS_TESTS),
    M("W6", "preprocessing", "decoded rows marked ok when they failed", "features/image_batches.py",
      "ok = torch.tensor([problem is None for problem in results], dtype=torch.bool)",
      "ok = torch.ones(len(results), dtype=torch.bool)", ("tests/features/test_encode.py",)),
    # ---- fused multi-head loss, epoch lines and the stop flag (issues 23 and 19)
    M("U11", "fused loss", "reported loss's softplus loses its relu(u) term", "pipeline/train/fused_loss.py",
      "return torch.relu(u).sum() - log_p - torch.dot(u, targets.reshape(-1))",
      "return -log_p - torch.dot(u, targets.reshape(-1))", FUSED_TESTS),
    M("U12", "fused loss", "reported loss's softplus on u instead of |u|", "pipeline/train/fused_loss.py",
      "p = torch.sigmoid(u.abs())", "p = torch.sigmoid(u)", FUSED_TESTS),
    M("U13", "fused loss", "reported loss drops the logits after the last whole block of 32",
      "pipeline/train/fused_loss.py", " + torch.log(p[whole:]).sum()", "", FUSED_TESTS),
    M("U1", "fused loss", "written-out gradient forgets the mean's 1/N", "pipeline/train/fused_loss.py",
      "scale = (grad_losses / ctx.count).repeat_interleave(ctx.rows)", "scale = grad_losses.repeat_interleave(ctx.rows)",
      FUSED_TESTS),
    M("U16", "fused loss", "gradient of the logits without the soft targets", "pipeline/train/fused_loss.py",
      "torch.matmul(torch.sigmoid(u).sub_(y), ww)", "torch.matmul(torch.sigmoid(u), ww)", FUSED_TESTS),
    M("U17", "fused loss", "every chunk of rows scored against the first chunk's targets",
      "pipeline/train/fused_loss.py", "u, y = upsample(scores[at], wh, ww), targets[lo:lo + step]",
      "u, y = upsample(scores[at], wh, ww), targets[0:min(step, rows - lo)]", FUSED_TESTS),
    M("U2", "fused loss", "bicubic matrices with a = -0.5 (not PyTorch's -0.75)", "decoders/bicubic.py",
      "BICUBIC_A = -0.75", "BICUBIC_A = -0.5", FUSED_TESTS + BICUBIC_TESTS),
    M("U3", "fused loss", "every head upsampled from the first head's scores", "pipeline/train/fused_loss.py",
      "at = slice(k * rows + lo, k * rows + min(lo + step, rows))", "at = slice(lo, min(lo + step, rows))",
      FUSED_TESTS),
    M("U10", "fused loss", "matrix upsampling with the axes' matrices swapped", "decoders/bicubic.py",
      "return torch.matmul(wh, torch.matmul(scores, ww.T))", "return torch.matmul(ww, torch.matmul(scores, wh.T))",
      FUSED_TESTS + BICUBIC_TESTS),
    M("U14", "fused loss", "validation's matrix logits with the grid's axes swapped", "decoders/bicubic.py",
      "scores = decoder.token_scores(feats, cls).reshape(-1, h, w)",
      "scores = decoder.token_scores(feats, cls).reshape(-1, w, h).transpose(1, 2)", BICUBIC_TESTS),
    M("U15", "fused loss", "validation scores every image with the first image's map", "pipeline/evaluate/maps.py",
      "logits = matrix_logits(decoder, feats, cls)", "logits = matrix_logits(decoder, feats[:1].expand_as(feats), cls)",
      ("tests/pipeline/evaluate/test_validation.py",)),
    M("U9", "fused loss", "reported loss without the soft targets' term", "pipeline/train/fused_loss.py",
      "- log_p - torch.dot(u, targets.reshape(-1))", "- log_p", FUSED_TESTS),
    M("U4", "fused loss", "detection heads fused with the localization loss", "pipeline/train/training.py",
      'return mode == "localization" and h.decoder.scores_then_upsample',
      "return h.decoder.scores_then_upsample", FUSED_TESTS),
    M("U5", "progress", "the stop flag never checked in the training loop", "pipeline/train/training.py",
      'check_stop(f"epoch {epoch}")', "pass", PROGRESS_TESTS),
    M("U6", "progress", "epoch lines to the module logger, not the flow's", "pipeline/train/training.py",
      'log.info("%s", epoch_line(', 'logging.getLogger(__name__).info("%s", epoch_line(', PROGRESS_TESTS),
    M("U7", "progress", "grid groups train without their logger", "pipeline/grid/cells.py",
      "summaries = train_heads(cfgs, log)", "summaries = train_heads(cfgs)", PROGRESS_TESTS),
    M("U8", "progress", "a stop request caught as a failed cell", "core/stop.py",
      "class Interrupted(KeyboardInterrupt):", "class Interrupted(Exception):", PROGRESS_TESTS),
]

try:  # imported as tests.mutation.mutants (the suite) or as mutants (run.py puts this folder on sys.path)
    from tests.mutation.interval_mutants import INTERVAL_MUTANTS  # noqa: E402  (issue 20's statistics)
except ImportError:
    from interval_mutants import INTERVAL_MUTANTS  # noqa: E402

try:
    from tests.mutation.control_mutants import CONTROL_MUTANTS  # noqa: E402  (issue 21's oracle repairs)
except ImportError:
    from control_mutants import CONTROL_MUTANTS  # noqa: E402

MUTANTS += [Mutant(*fields) for fields in INTERVAL_MUTANTS + CONTROL_MUTANTS]

try:  # issue 19/21's data floor: splits, EXIF orientation, DeCLIP's mask rules, the list layout
    from tests.mutation.data_mutants import DATA_MUTANTS  # noqa: E402
except ImportError:
    from data_mutants import DATA_MUTANTS  # noqa: E402

MUTANTS += [Mutant(*fields) for fields in DATA_MUTANTS]

try:  # issue 21's integrity work
    from tests.mutation.integrity_mutants import INTEGRITY_MUTANTS  # noqa: E402
except ImportError:
    from integrity_mutants import INTEGRITY_MUTANTS  # noqa: E402

MUTANTS += [Mutant(*fields) for fields in INTEGRITY_MUTANTS]

try:  # issue 22's cluster areas
    from tests.mutation.cluster_mutants import CLUSTER_MUTANTS  # noqa: E402
except ImportError:
    from cluster_mutants import CLUSTER_MUTANTS  # noqa: E402

MUTANTS += [Mutant(*fields) for fields in CLUSTER_MUTANTS]

try:  # issue 19/21's user-experience work (signals, one-line errors, help, run index)
    from tests.mutation.ux_mutants import UX_MUTANTS  # noqa: E402
except ImportError:
    from ux_mutants import UX_MUTANTS  # noqa: E402

MUTANTS += [Mutant(*fields) for fields in UX_MUTANTS]

def anchor_count(root: Path, m: Mutant) -> int:
    """How often the mutant's anchor text occurs in its file under ``root`` (0 when the file is gone)."""
    path = root / m.file
    return path.read_text().count(m.old) if path.exists() else 0


def anchor_state(root: Path, m: Mutant) -> str:
    """``ok`` when the anchor occurs exactly once (the mutant can be applied), else why it cannot."""
    n = anchor_count(root, m)
    return "ok" if n == 1 else ("anchor-missing" if n == 0 else f"anchor-ambiguous({n})")
