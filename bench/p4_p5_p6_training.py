"""P4: a decoder epoch re-encoding images through the frozen backbone (the DeCLIP way) ÷ an epoch from the cache,
for linear, attention and conv-4, with the bound (enc+dec)/dec measured in the same run (target ≥ 0.8 × bound).
P5: K = 8 linear heads (one per layer) trained together from one read of each batch ÷ 8 separate runs (≤ 0.5);
``p5grid`` measures the same through the grid: cells planned by ``declip.pipeline.grid.plan`` and trained by the grid
flow's own task, grouped into one multi-head run ÷ the same cells trained one by one.
P6: training peak RSS streaming from a store 4× larger ÷ the smaller store's (≤ 1.1), each in a fresh process.

Usage: python bench/p4_p5_p6_training.py [--images 128] [--backbone demo-vit-small@random-0] [--only p4,p5,p5grid,p6]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import report, workdir

BENCH = Path(__file__).resolve().parent


def build(root: Path, size: int, backbone: str, layers: str) -> tuple[Path, Path, str]:
    from declip.pipeline.grid.demo_data import build_demo_dataset
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
    from declip.pipeline.data.manifest import scan_dataset, write_manifest

    data = build_demo_dataset(root / "data", seed=0, size=size)
    result = scan_dataset(data, "dolos", progress=False)
    manifest = root / "manifest.parquet"
    write_manifest(result.manifest, manifest, data, "dolos")
    store = root / "declip.store.zarr"
    run_extraction(ExtractConfig(manifest=str(manifest), store=str(store), backbone=backbone, layers=layers,
                                 batch_size=32, progress=False))
    return manifest, store, str(result.manifest["dataset"].iloc[0])


def p4(manifest: Path, store: Path, dataset: str, backbone_key: str, layer: str, width: float) -> None:
    """Same batches, same decoder step; the DeCLIP way decodes, preprocesses and encodes every image each step."""
    from declip.decoders import build_decoder
    from declip.features.backbones import load_backbone
    from declip.features.encode import encode_pixels, images_to_pixels
    from declip.features.images import open_rgb
    from declip.core.keys import SourceKey
    from declip.pipeline.data.cached_splits import CachedSplits, select_rows

    source = SourceKey.single(backbone_key, layer)
    data = CachedSplits.open(str(store), dataset, [source], None)
    rows = select_rows(data.samples, data.valid, ("all",), "train", "localization")
    data.warm(rows)
    src = data.sources[source]
    backbone = load_backbone(backbone_key)
    recipe = backbone.recipe()
    root = Path(data.store.dataset_attrs(dataset)["root"])
    paths = data.samples["image_path"].tolist()
    batches = [rows[i:i + 32] for i in range(0, len(rows), 32)]
    print(f"P4: {len(rows)} training images, {backbone_key}/{layer}, batch 32, one epoch each way")
    for name in ("linear", "attention", "conv-4"):
        dec = build_decoder(name, in_channels=src.channels, grid=src.grid, family="vit", layer=layer,
                            width=width, seed=0)
        opt = torch.optim.AdamW(dec.trainable_parameters(), lr=1e-3, weight_decay=0.0)

        def step(feats, masks):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(dec(feats.float())[:, 0], masks)
            opt.zero_grad()
            loss.backward()
            opt.step()

        t_cache = t_declip = t_enc = 0.0
        for b in batches:
            start = time.perf_counter()
            batch = data.load(b, [source])
            step(batch.features[source][0], batch.masks)
            t_cache += time.perf_counter() - start
        for b in batches:
            start = time.perf_counter()
            masks = torch.from_numpy(data.masks(b).astype(np.float32) / 255)
            x = images_to_pixels(recipe, [open_rgb(str(root / paths[r]), exif=recipe.applies_exif) for r in b])
            enc_start = time.perf_counter()
            feats = encode_pixels(backbone, x, [layer])[layer][0]
            t_enc += time.perf_counter() - enc_start
            step(feats, masks)
            t_declip += time.perf_counter() - start
        bound = (t_enc + t_cache) / t_cache
        ratio = t_declip / t_cache
        report(f"P4 {name}: epoch re-encoding ÷ epoch from cache (bound (enc+dec)/dec = {bound:.2f})",
               ("from cache, s", t_cache), ("re-encoding (DeCLIP way), s", t_declip), ratio,
               f"≥ 0.8 × bound = {0.8 * bound:.2f}")


def p5(store: Path, dataset: str, backbone_key: str, layers: list[str], memory_gb: float | None, label: str) -> None:
    from declip.core.keys import SourceKey
    from declip.pipeline.train.training import TrainConfig, TrainOptions, train, train_heads

    root = workdir("p5")
    options = TrainOptions(max_epochs=2, patience=10, memory_gb=memory_gb, min_steps_per_epoch=0, collapse_patience=0,
                           progress=False)
    cfgs = [TrainConfig(store=str(store), source=SourceKey.single(backbone_key, layer), dataset=dataset,
                        train_sets=("all",), out=str(root / "together" / layer), decoder="linear", options=options)
            for layer in layers]
    start = time.perf_counter()
    train_heads(cfgs)
    together = time.perf_counter() - start
    start = time.perf_counter()
    for c in cfgs:
        train(replace(c, out=str(root / "alone" / c.source.layer)))
    alone = time.perf_counter() - start
    report(f"P5 {len(cfgs)} linear heads, 2 epochs, {label}: together ÷ separate runs",
           ("separate runs, s", alone), ("together (one read per batch), s", together), together / alone, "≤ 0.5")


def p5_grid(store: Path, dataset: str, backbone_key: str, layers: list[str], train_set: str, repeats: int = 4) -> None:
    """Both sides planned by the grid and trained by the grid flow's own code, interleaved ``repeats`` times (fresh
    run directories each time); the fastest of each side is reported, wall and CPU time (CPU time is steadier when
    other processes share the machine)."""
    from declip.pipeline.grid.cells import train_cell, train_cells
    from declip.pipeline.grid.config import GridConfig
    from declip.pipeline.grid.plan import plan_cells, training_groups

    wall = {"separate": [], "together": []}
    cpu = {"separate": [], "together": []}
    for rep in range(repeats):
        for how in (("separate", "together") if rep % 2 == 0 else ("together", "separate")):
            g = GridConfig.from_dict(dict(
                store=str(store), dataset=dataset, out=str(workdir("p5grid") / how), backbones=(backbone_key,),
                layers=tuple(layers), decoders=("linear",), train_sets=(train_set,), test_sets=(train_set,),
                max_epochs=2, patience=10, min_steps_per_epoch=0, collapse_patience=0))
            groups = training_groups(plan_cells(g))
            cfgs = [[c.train for c in group] for group in groups]
            w0, c0 = time.perf_counter(), time.process_time()
            if how == "together":
                records = [r for group in cfgs for r in train_cells(group)]
            else:
                records = [train_cell(c) for group in cfgs for c in group]
            wall[how].append(time.perf_counter() - w0)
            cpu[how].append(time.process_time() - c0)
            assert all(r["status"] == "ok" for r in records), records
            runs = len(groups) if how == "together" else len(records)
            print(f"  {how}: {len(records)} cells in {runs} training run(s): {wall[how][-1]:.1f} s wall, "
                  f"{cpu[how][-1]:.1f} s CPU")
    title = f"P5 through the grid: {len(layers)} linear heads (one per layer), 2 epochs: grouped ÷ one run per cell"
    report(title + " (wall)", ("one run per cell, s", min(wall["separate"])),
           ("grouped multi-head run, s", min(wall["together"])), min(wall["together"]) / min(wall["separate"]),
           "≤ 0.5")
    report(title + " (CPU time)", ("one run per cell, s", min(cpu["separate"])),
           ("grouped multi-head run, s", min(cpu["together"])), min(cpu["together"]) / min(cpu["separate"]), "≤ 0.5")


def p6_child(store: str, dataset: str, source: str) -> None:
    """Run in a fresh process: stream-train one epoch and print peak RSS."""
    import resource

    from declip.pipeline.train.training import TrainConfig, TrainOptions, train

    out = workdir("p6")
    train(TrainConfig(store=store, source=source, dataset=dataset, train_sets=("all",), out=str(out), decoder="linear",
                      options=TrainOptions(max_epochs=1, memory_gb=0.0, min_steps_per_epoch=0, progress=False)))
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def p6(root: Path, size: int, backbone: str, layer: str) -> None:
    rss = {}
    for factor in (1, 4):
        _, store, dataset = build(root / f"x{factor}", size * factor, backbone, layer)
        out = subprocess.run([sys.executable, __file__, "--p6-child", str(store), dataset, f"{backbone}/{layer}"],
                             capture_output=True, text=True, check=True)
        rss[factor] = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    report("P6 peak RSS while streaming (MiB): 4× larger store ÷ smaller store",
           (f"store of {size} fakes/generator", rss[1]), (f"store of {4 * size} fakes/generator", rss[4]),
           rss[4] / rss[1], "≤ 1.1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=40, help="fake images per demo generator")
    ap.add_argument("--backbone", default="demo-vit-small@random-0")
    ap.add_argument("--layer", default="layer7")
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--only", default="p4,p5,p5grid,p6")
    ap.add_argument("--repeats", type=int, default=4, help="p5grid: interleaved runs of each side (fastest kept)")
    ap.add_argument("--p6-child", nargs=3)
    args = ap.parse_args()
    if args.p6_child:
        p6_child(*args.p6_child)
        return
    torch.set_num_threads(2)
    root = workdir("train")
    wanted = set(args.only.split(","))
    from declip.features.backbones import load_backbone
    from declip.features.taps import layer_names

    layers = layer_names(load_backbone(args.backbone))[-8:]
    manifest, store, dataset = build(root / "main", args.images, args.backbone, ",".join(layers))
    if "p4" in wanted:
        p4(manifest, store, dataset, args.backbone, args.layer, args.width)
    if "p5" in wanted:
        p5(store, dataset, args.backbone, layers, None, "features in RAM")
        p5(store, dataset, args.backbone, layers, 0.0, "streaming from the store")
    if "p5grid" in wanted:
        p5_grid(store, dataset, args.backbone, layers, "all", args.repeats)
    if "p6" in wanted:
        p6(root / "p6", args.images, args.backbone, args.layer)


if __name__ == "__main__":
    main()
