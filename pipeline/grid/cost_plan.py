"""``declip grid --dry-run``: what a grid will cost before it runs -- cells, store bytes, encode/train/eval hours --
and the same for DeCLIP's full ablation at Dolos size.

Times are FLOPs ÷ achieved FLOP/s. FLOPs are counted exactly (:mod:`declip.pipeline.grid.model_flops`); the achieved
rate of each stage (encode, train step, evaluation forward) is either supplied (a JSON file, e.g. written by
``bench/gpu.py``) or calibrated on the spot by timing a few batches of the grid's own models with random weights.
Training epochs are not known in advance (the plateau schedule stops them), so an assumed count is stated.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from declip.core.errors import DeclipError
from declip.core.keys import CLEAN_VIEW, DECLIP_ARCHES, BackboneKey, LayerKey, SourceKey
from declip.features.families import family_for, layer_shapes
from declip.pipeline.grid.config import GridConfig, resolved_test_views, resolved_train_views
from declip.pipeline.grid.plan import sources, subset_problems
from declip.pipeline.grid.model_flops import decoder_flops, encode_flops
from declip.pipeline.grid.budget import layer_nbytes, plan_groups, source_layers


DEFAULT_EPOCHS = 25  # DeCLIP's schedule: best epoch + 3 lr drops × (patience 5 + 1) is ~20-40 epochs


@dataclass
class Rates:
    """Achieved FLOP/s of each stage on the target device."""

    encode: float
    train: float
    eval: float
    origin: str

    @classmethod
    def from_json(cls, path: str) -> "Rates":
        try:
            raw = json.loads(Path(path).read_text())
            rates = raw.get("rates", raw)
            return cls(float(rates["encode_flops_per_s"]), float(rates["train_flops_per_s"]),
                       float(rates["eval_flops_per_s"]), f"supplied ({path})")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DeclipError(f"cannot read throughputs from {path}: {exc}; it needs encode_flops_per_s, "
                              "train_flops_per_s and eval_flops_per_s (bench/gpu.py --json writes them)") from exc


@dataclass
class Workload:
    """A grid, reduced to what its cost depends on."""

    name: str
    sources: list[str]
    decoders: list[str]
    train_rows: dict[str, tuple[int, int]]  # train set -> (train rows, valid rows)
    test_rows: dict[str, int]  # test set -> rows scored
    n_images: int
    test_split_images: int
    storage_dtype: str = "float16"
    budget_bytes: int | None = None
    width: float = 1.0
    seeds: int = 1
    epochs: int = DEFAULT_EPOCHS
    notes: list[str] = field(default_factory=list)
    evals_per_cell: int | None = None  # evaluations of one cell (default: one per test set)
    eval_rows: int | None = None  # rows one cell's evaluations score in all (default: the test sets' test rows)
    view_images: int = 0  # images each encode pass encodes again under a view (test views, training views)
    views: list[str] = field(default_factory=list)

    @property
    def cells(self) -> int:
        return len(self.sources) * len(self.decoders) * len(self.train_rows) * self.seeds

    @property
    def evaluations(self) -> int:
        return self.cells * (len(self.test_rows) if self.evals_per_cell is None else self.evals_per_cell)

    @property
    def rows_scored(self) -> int:
        """Rows one cell's evaluations score, every split and view counted."""
        return sum(self.test_rows.values()) if self.eval_rows is None else self.eval_rows


def _source_shape(source: "SourceKey | str") -> tuple[int, tuple[int, int], str, str]:
    """(channels, grid, decoder family, layer) of what a decoder on ``source`` reads (fused: channels summed on the
    ViT's grid), from the families' config-only layer shapes."""
    keys = source_layers(source)
    parts = [layer_shapes(k.backbone.arch)[k.layer] for k in keys]
    if len(parts) == 2:
        return parts[0].channels + parts[1].channels, parts[0].grid, "fused", parts[0].name
    return parts[0].channels, parts[0].grid, layer_shapes(keys[0].backbone.arch).family, parts[0].name


def _by_backbone(layers: list[LayerKey]) -> dict[BackboneKey, list[str]]:
    jobs: dict[BackboneKey, list[str]] = {}
    for key in layers:
        jobs.setdefault(key.backbone, []).append(key.layer)
    return jobs


def estimate(work: Workload, rates: Rates) -> dict:
    """Bytes, groups and seconds of every stage of ``work`` at ``rates``."""
    layers = list(dict.fromkeys(k for s in work.sources for k in source_layers(s)))
    per_image = {k: layer_nbytes(k, 1, work.storage_dtype) for k in layers}
    nbytes = {k: v * work.n_images for k, v in per_image.items()}
    groups = plan_groups(work.sources, nbytes, work.budget_bytes)
    encode_s, passes = 0.0, 0
    for group in groups:
        for backbone, group_layers in _by_backbone(group.layers).items():
            deepest = layer_shapes(backbone.arch).deepest(group_layers)
            encode_s += (work.n_images + work.view_images) * encode_flops(backbone.arch, deepest) / rates.encode
            passes += 1
    train_s = eval_s = 0.0
    per_decoder: dict[str, float] = {}
    for source in work.sources:
        channels, grid, family, _ = _source_shape(source)
        for decoder in work.decoders:
            fwd, step = decoder_flops(decoder, channels, grid, family, work.width)
            for n_train, n_valid in work.train_rows.values():
                t = work.seeds * work.epochs * (n_train * step / rates.train + n_valid * fwd / rates.eval)
                e = work.seeds * work.rows_scored * fwd / rates.eval
                train_s, eval_s = train_s + t, eval_s + e
                per_decoder[decoder] = per_decoder.get(decoder, 0.0) + t + e
    return {
        "name": work.name, "cells": work.cells, "evaluations": work.evaluations,
        "views": work.views, "view_images": work.view_images,
        "view_bytes": sum(per_image.values()) * work.view_images,
        "n_images": work.n_images, "storage_dtype": work.storage_dtype,
        "layers": [{"layer": str(k), "shape": _shape_text(k), "bytes_per_image": per_image[k],
                    "bytes": nbytes[k], "bytes_test_view": per_image[k] * work.test_split_images}
                   for k in layers],
        "total_bytes": sum(nbytes.values()), "budget_bytes": work.budget_bytes,
        "groups": [{"sources": g.sources, "held_bytes": g.held_bytes} for g in groups],
        "encode_passes": passes, "epochs_assumed": work.epochs,
        "seconds": {"encode": encode_s, "train": train_s, "evaluate": eval_s,
                    "total": encode_s + train_s + eval_s},
        "seconds_per_decoder": per_decoder, "rates": asdict(rates), "notes": work.notes,
    }


def _shape_text(layer: LayerKey) -> str:
    s = layer_shapes(layer.backbone.arch)[layer.layer]
    return f"{s.channels}×{s.grid[0]}×{s.grid[1]}" + (" +cls" if s.has_cls else "")


def grid_workload(cfg: GridConfig, epochs: int = DEFAULT_EPOCHS) -> Workload:
    """The grid's own workload, with row counts from its manifest (or the store's registered rows): every
    evaluation the grid runs (each evaluation split, and each test view on the test split, × test sets) and every
    view it extracts (test views on the test split, training views on the train split)."""
    samples = _samples(cfg)
    problems = subset_problems(cfg, samples)
    if problems:
        raise DeclipError(f"grid on {cfg.dataset}: " + "; ".join(problems) + "; fix train_sets/test_sets")
    partial = samples["kind"] == "partial"
    masked = partial & (samples["mask_path"] != "") & (samples["label"] == 1)
    train_rows = {}
    for t in cfg.train_sets:
        of = masked & samples["subset"].isin(_expand(t, samples))
        train_rows[t] = (int((of & (samples["split"] == cfg.options.train_split)).sum()),
                         int((of & (samples["split"] == cfg.options.valid_split)).sum()))

    def scored(test: str, split: str) -> int:  # the test set's fakes and every real of the split
        of_split = samples["split"] == split
        return int((of_split & (samples["subset"] == test) & (samples["label"] == 1)).sum()
                   + (of_split & (samples["label"] == 0)).sum())

    test_views = resolved_test_views(cfg) if "test" in cfg.eval_splits else []
    plan = [split for split in cfg.eval_splits] + ["test"] * len(test_views)
    train_views = [v for v in resolved_train_views(cfg) if v != CLEAN_VIEW]
    split_rows = samples["split"].value_counts()
    budget = int(cfg.max_store_gb * 2**30) if cfg.max_store_gb is not None else None
    return Workload("this grid", sources(cfg), list(cfg.decoders), train_rows,
                    {t: scored(t, "test") for t in cfg.test_sets}, len(samples),
                    int(split_rows.get("test", 0)), cfg.storage_dtype, budget, cfg.options.width,
                    len(cfg.seeds), min(epochs, cfg.options.max_epochs),
                    evals_per_cell=len(plan) * len(cfg.test_sets),
                    eval_rows=sum(scored(t, split) for split in plan for t in cfg.test_sets),
                    view_images=int(split_rows.get("test", 0)) * len(resolved_test_views(cfg))
                    + int(split_rows.get(cfg.options.train_split, 0)) * len(train_views),
                    views=resolved_test_views(cfg) + train_views)


def _expand(train_set: str, samples) -> set[str]:
    return set(samples.loc[samples["kind"] == "partial", "subset"]) if train_set == "all" else {train_set}


def _samples(cfg: GridConfig):
    if cfg.manifest:
        from declip.pipeline.data.manifest import read_manifest

        return read_manifest(cfg.manifest).df
    from declip.store.feature_store import FeatureStore

    try:
        return FeatureStore(cfg.store, mode="r").samples(cfg.dataset)
    except DeclipError as exc:
        raise DeclipError(f"--dry-run needs the dataset's rows: give manifest = \"...\" or a store that has "
                          f"{cfg.dataset!r} ({exc})") from exc


# Dolos at the size DeCLIP used (~40k images). Per inpainting generator: 8,000 train, 500 valid, 500 test fakes;
# 4,000 reals (3,000/500/500). Assumed split sizes: the released dataset's exact counts may differ by a few %.
DOLOS_GENERATORS = ("pluralistic", "lama", "repaint-p2-9k", "ldm")
DOLOS_FAKES = (8000, 500, 500)
DOLOS_REALS = (3000, 500, 500)


def declip_full_ablation(storage_dtype: str = "float16", budget_bytes: int | None = None,
                         epochs: int = DEFAULT_EPOCHS) -> Workload:
    """DeCLIP's per-layer ablation: 24 ViT-L/14 + 4 RN50 layers × 5 decoders × 4 train sets, each on 4 test sets."""
    towers = [BackboneKey.parse(key) for key in DECLIP_ARCHES.values()]  # ViT-L-14@openai, RN50@openai
    srcs = [str(SourceKey.single(key, name)) for key in towers for name in layer_shapes(key.arch).names]
    n_images = len(DOLOS_GENERATORS) * sum(DOLOS_FAKES) + sum(DOLOS_REALS)
    return Workload(
        "DeCLIP full ablation, Dolos size", srcs, ["linear", "attention", "conv-4", "conv-12", "conv-20"],
        {g: DOLOS_FAKES[:2] for g in DOLOS_GENERATORS}, {g: DOLOS_FAKES[2] + DOLOS_REALS[2] for g in DOLOS_GENERATORS},
        n_images, len(DOLOS_GENERATORS) * DOLOS_FAKES[2] + DOLOS_REALS[2], storage_dtype, budget_bytes, 1.0, 1, epochs,
        notes=[f"assumed Dolos split per generator {DOLOS_FAKES} (train, valid, test) fakes, reals {DOLOS_REALS}"])


def calibrate(cfg: GridConfig, batch: int = 4, steps: int = 2) -> Rates:
    """Achieved FLOP/s of the grid's first backbone and decoders on its device, with random weights, in seconds."""
    from declip.decoders import build_decoder
    from declip.features.backbones import load_backbone
    from declip.features.taps import forward_layers

    device = cfg.options.device
    if device.startswith("cuda") and not torch.cuda.is_available():  # a SLURM grid planned on a login node
        raise DeclipError(f"the grid runs on {device} (its workers' GPUs) but this machine has no CUDA to time them "
                          "on: run `python bench/gpu.py --json rates.json` on a compute node and pass "
                          "--throughputs rates.json (or --device cpu to plan for CPUs)")
    arch = sources(cfg)[0].backbone.arch  # the grid's first backbone (of a fused source: the ViT)
    backbone = load_backbone(family_for(arch).offline_key(arch), device)  # random (or fixed) weights: no download
    deepest = layer_shapes(arch).deepest([k.layer for s in sources(cfg) for k in source_layers(s)
                                          if k.backbone.arch == arch])
    x = torch.randn(batch, 3, backbone.image_size, backbone.image_size, device=device)
    encode_s = _timed(lambda: forward_layers(backbone, x, [deepest]), steps, device)
    encode_rate = batch * encode_flops(arch, deepest) / encode_s
    del backbone
    channels, grid, family, layer = _source_shape(sources(cfg)[0])
    train_rates, eval_rates = [], []
    for name in cfg.decoders:
        model = build_decoder(name, in_channels=channels, grid=grid, family=family, layer=layer,
                              width=cfg.options.width, seed=0).to(device)
        feats = torch.randn(batch * 2, channels, *grid, device=device)
        cls = torch.randn(batch * 2, channels, device=device)
        target = torch.rand(batch * 2, 256, 256, device=device)
        opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3)

        def step():
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(feats, cls)[:, 0], target)
            opt.zero_grad()
            loss.backward()
            opt.step()

        fwd, train = decoder_flops(name, channels, grid, family, cfg.options.width)
        model.train()
        train_rates.append(batch * 2 * train / _timed(step, steps, device))
        model.eval()
        with torch.no_grad():
            eval_rates.append(batch * 2 * fwd / _timed(lambda: model(feats, cls), steps, device))
    return Rates(encode_rate, float(np.median(train_rates)), float(np.median(eval_rates)),
                 f"calibrated on {device} ({arch} to {deepest}, decoders {', '.join(cfg.decoders)}, random weights)")


def _timed(fn, steps: int, device: str) -> float:
    fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def render(plan: dict, list_cells: list[str] | None = None) -> str:
    """The plan as text, one section per workload."""
    lines = [f"== {plan['name']}: {plan['cells']} cells, {plan['evaluations']} evaluations, "
             f"{plan['n_images']} images, features in {plan['storage_dtype']}"]
    if list_cells is not None:
        shown = (list_cells if len(list_cells) <= 40
                 else list_cells[:20] + [f"... ({len(list_cells) - 40} more)"] + list_cells[-20:])
        lines += [f"   cell {c}" for c in shown]
    lines.append(f"   {'layer':<40s} {'shape':>16s} {'bytes/image':>12s} {'this view':>10s} {'test-split view':>16s}")
    for row in plan["layers"]:
        lines.append(f"   {row['layer']:<40s} {row['shape']:>16s} {row['bytes_per_image']:>12,d} "
                     f"{_gb(row['bytes']):>10s} {_gb(row['bytes_test_view']):>16s}")
    budget = "no budget" if plan["budget_bytes"] is None else f"max_store_gb {plan['budget_bytes'] / 2**30:.3g}"
    peak = max(g["held_bytes"] for g in plan["groups"])
    lines.append(f"   store: {_gb(plan['total_bytes'])} for every layer; {budget}: {len(plan['groups'])} group(s), "
                 f"peak {_gb(peak)} on disk, {plan['encode_passes']} encode pass(es)")
    if plan.get("views"):
        lines.append(f"   views: {', '.join(plan['views'])}: {plan['view_images']} more images per encode pass, "
                     f"{_gb(plan['view_bytes'])} more in the store (included in encode and total)")
    s = plan["seconds"]
    lines.append(f"   time: encode {_h(s['encode'])}, train {_h(s['train'])} "
                 f"({plan['epochs_assumed']} epochs assumed), "
                 f"evaluate {_h(s['evaluate'])}; total {_h(s['total'])}")
    lines.append("   by decoder: " + ", ".join(f"{d} {_h(v)}" for d, v in plan["seconds_per_decoder"].items()))
    r = plan["rates"]
    lines.append(f"   rates: encode {r['encode'] / 1e12:.3g}, train {r['train'] / 1e12:.3g}, "
                 f"evaluate {r['eval'] / 1e12:.3g} TFLOP/s, {r['origin']}")
    lines += [f"   note: {n}" for n in plan["notes"]]
    return "\n".join(lines)


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.3g} h" if seconds >= 360 else f"{seconds:.3g} s"
