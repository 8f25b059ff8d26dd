"""A small grid's total wall time, cached (extract once, train and evaluate on the cache) ÷ the same grid run the
DeCLIP way (every training step, validation pass and test pass re-encodes its images), with the per-stage split.

The DeCLIP way is measured with the same training/evaluation code: its feature source decodes, preprocesses and
runs the frozen backbone for every batch it is asked for, instead of reading the store.
Usage: python bench/grid_vs_declip.py [--images 12] [--epochs 2]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import workdir


class ReencodingSource:
    """Stands in for a cached FeatureSource: same interface, but encodes images on every request."""

    def __init__(self, cached, backbone, layer: str, root: Path, paths: list[str]):
        from declip.features.preprocess import make_recipe

        self.cached, self.backbone, self.layer, self.root, self.paths = cached, backbone, layer, root, paths
        self.recipe = make_recipe("declip", backbone.image_size, backbone.mean, backbone.std)
        self.channels, self.grid, self.family, self.meta = cached.channels, cached.grid, cached.family, cached.meta

    def valid(self):
        return self.cached.valid()

    def nbytes(self, n_rows=None):
        return 1 << 60  # never "fits": nothing is held

    def load_into_memory(self):
        pass

    def get(self, rows):
        from declip.features.encode import encode_files

        files = [self.root / self.paths[int(r)] for r in rows]
        feats, cls = encode_files(self.backbone, self.recipe, files, [self.layer])[self.layer]
        return feats, cls


def run_grid(store, dataset, out, layers, decoders, gens, epochs, backbone_key, declip_way: bool) -> dict:
    from declip.features.backbones import load_backbone
    from declip.pipeline.evaluate import evaluation
    from declip.pipeline.train import training
    from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate
    from declip.core.keys import SourceKey
    from declip.pipeline.data.cached_splits import CachedSplits
    from declip.pipeline.train.training import TrainConfig, TrainOptions, train

    options = TrainOptions(width=0.125, batch_size=16, max_epochs=epochs, min_steps_per_epoch=0, collapse_patience=0,
                           progress=False)
    original_open = CachedSplits.open
    if declip_way:
        backbone = load_backbone(backbone_key)

        def reencoding_open(store_url, ds, sources, memory_gb, **kw):
            data = original_open(store_url, ds, sources, memory_gb, **kw)
            root = Path(data.store.dataset_attrs(ds)["root"])
            paths = data.samples["image_path"].tolist()
            for name in list(data.sources):
                data.sources[name] = ReencodingSource(data.sources[name], backbone, name.layer, root,
                                                      paths)
            return data

        training.CachedSplits.open = evaluation.CachedSplits.open = reencoding_open
    t = {"train": 0.0, "evaluate": 0.0}
    try:
        for layer in layers:
            for decoder in decoders:
                for gen in gens:
                    run = out / f"{layer}-{decoder}-{gen}"
                    start = time.perf_counter()
                    train(TrainConfig(store=str(store), source=SourceKey.single(backbone_key, layer), dataset=dataset,
                                      train_sets=(gen,), out=str(run), decoder=decoder, options=options))
                    t["train"] += time.perf_counter() - start
                    start = time.perf_counter()
                    evaluate(EvalConfig(store=str(store), checkpoint=str(run / "best"), dataset=dataset,
                                        test_subsets=tuple(gens), out=str(run / "eval"), metrics=("iou",)))
                    t["evaluate"] += time.perf_counter() - start
    finally:
        training.CachedSplits.open = evaluation.CachedSplits.open = original_open
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=12, help="fake images per generator")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--backbone", default="demo-vit-small@random-0")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from declip.pipeline.grid.demo_data import build_demo_dataset
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
    from declip.pipeline.data.manifest import scan_dataset, write_manifest

    root = workdir("grid")
    data = build_demo_dataset(root / "data", seed=0, size=args.images)
    scanned = scan_dataset(data, "dolos", progress=False)
    write_manifest(scanned.manifest, root / "m.parquet", data, "dolos")
    dataset = str(scanned.manifest["dataset"].iloc[0])
    gens = ["telea", "ns"]
    layers, decoders = ["layer3", "layer7"], ["linear", "conv-4"]
    start = time.perf_counter()
    run_extraction(ExtractConfig(manifest=str(root / "m.parquet"), store=str(root / "s.zarr"), backbone=args.backbone,
                                 layers=",".join(layers), progress=False))
    extract = time.perf_counter() - start
    cached = run_grid(root / "s.zarr", dataset, root / "cached", layers, decoders, gens, args.epochs, args.backbone,
                      False)
    declip = run_grid(root / "s.zarr", dataset, root / "declip", layers, decoders, gens, args.epochs, args.backbone,
                      True)
    total_cached = extract + cached["train"] + cached["evaluate"]
    total_declip = declip["train"] + declip["evaluate"]
    cells = len(layers) * len(decoders) * len(gens)
    print(f"grid: {cells} cells ({len(layers)} layers × {len(decoders)} decoders × {len(gens)} train sets), "
          f"{len(gens)} test sets, {args.epochs} epochs, {len(scanned.manifest)} images, {args.backbone}")
    print(f"  cached:     extract {extract:7.1f} s  train {cached['train']:7.1f} s  evaluate {cached['evaluate']:7.1f} s"
          f"  total {total_cached:7.1f} s")
    print(f"  DeCLIP way: extract {0:7.1f} s  train {declip['train']:7.1f} s  evaluate {declip['evaluate']:7.1f} s"
          f"  total {total_declip:7.1f} s")
    print(f"  ratio cached ÷ DeCLIP way: {total_cached / total_declip:.3f}  (speed-up {total_declip / total_cached:.2f}×)")


if __name__ == "__main__":
    main()
