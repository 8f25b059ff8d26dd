"""How far the storage dtype moves results: float32 (exact) vs float16 (default) vs int8 / float8_e4m3.

On the demo dataset: one layer is extracted into one store per dtype; conv-20 and linear decoders are trained on the
float32 store; the *same* checkpoints (and, as a second view, the same seeded untrained decoders, whose maps are not
constant: BatchNorm on batch statistics) are then run on every store's features. Reported per dtype: feature bytes
(ratio to float16), max and mean |Δ logit| against float32, the fraction of 256×256 pixels whose prediction flips
at 0.5, and IoU (DeCLIP's protocol) with its change. With random backbone weights these figures show the size of
the rounding, not what CLIP features do with it.

Usage: python bench/storage_dtype.py [--size 40] [--layer layer7] [--epochs 4] [--width 0.125]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from common import workdir

DTYPES = ("float32", "float16", "int8", "float8_e4m3")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=40, help="fake images per demo generator")
    ap.add_argument("--backbone", default="demo-vit-small@random-0")
    ap.add_argument("--layer", default="layer7")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--width", type=float, default=0.125, help="conv decoder width (1.0 = DeCLIP's, slow on CPU)")
    ap.add_argument("--out", help="where to write storage_dtype.json (default: the work dir)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    from declip.core.keys import SourceKey
    from declip.decoders import build_decoder, load_decoder
    from declip.pipeline.grid.demo_data import build_demo_dataset
    from declip.pipeline.data.manifest import scan_dataset, write_manifest
    from declip.pipeline.data.cached_splits import CachedSplits
    from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate, test_rows
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
    from declip.pipeline.train.training import TrainConfig, TrainOptions, train
    from declip.store.listing import list_entries
    from declip.store.feature_store import FeatureStore

    root = workdir("dtype")
    data = build_demo_dataset(root / "data", seed=0, size=args.size)
    scanned = scan_dataset(data, "dolos", progress=False)
    manifest = root / "manifest.parquet"
    write_manifest(scanned.manifest, manifest, data, "dolos")
    dataset = str(scanned.manifest["dataset"].iloc[0])
    generators = sorted(scanned.manifest.loc[scanned.manifest["kind"] == "partial", "subset"].unique())
    source = f"{args.backbone}/{args.layer}"
    stores = {}
    for dtype in DTYPES:
        stores[dtype] = root / f"{dtype}.zarr"
        run_extraction(ExtractConfig(manifest=str(manifest), store=str(stores[dtype]), backbone=args.backbone,
                                     layers=args.layer, batch_size=32, storage_dtype=dtype, progress=False))
    sizes = {d: int(list_entries(FeatureStore(str(s), mode="r"))["bytes"].sum()) for d, s in stores.items()}

    results = {"rows": len(scanned.manifest), "source": source, "sizes": sizes, "decoders": {}}
    for decoder in ("conv-20", "linear"):
        run = root / f"run-{decoder}"
        train(TrainConfig(store=str(stores["float32"]), source=source, dataset=dataset, train_sets=("all",),
                          out=str(run), decoder=decoder,
                          options=TrainOptions(width=args.width, max_epochs=args.epochs, batch_size=16,
                                               min_steps_per_epoch=0, collapse_patience=0, progress=False)))
        model, _ = load_decoder(run / "best")
        model.eval()
        channels, grid = source_shape(stores["float32"], dataset, source)
        # untrained, with BatchNorm on batch statistics: at DeCLIP's init, eval-mode BN passes activations that
        # shrink ~10x per block, so conv-20's eval output is its bias alone (no input dependence to measure)
        fresh = build_decoder(decoder, in_channels=channels, grid=grid, family="vit", layer=args.layer,
                              width=args.width, seed=0).train()
        logits, ious, init_logits = {}, {}, {}
        for dtype, store in stores.items():
            split = CachedSplits.open(str(store), dataset, [source], None)
            rows = np.sort(np.concatenate([test_rows(split.samples, split.valid, g, "test", include_reals=False)
                                           for g in generators]))
            with torch.no_grad():
                feats, cls = split.sources[SourceKey.parse(source)].get(rows)
                logits[dtype] = model(feats.float(), None if cls is None else cls.float())[:, 0].numpy()
                init_logits[dtype] = fresh(feats.float(), None if cls is None else cls.float())[:, 0].numpy()
            table = evaluate(EvalConfig(store=str(store), checkpoint=str(run / "best"), dataset=dataset,
                                        test_subsets=tuple(generators), out=str(root / f"eval-{decoder}-{dtype}"),
                                        metrics=("iou",), include_reals=False))
            iou = table[table["metric"] == "iou"]
            ious[dtype] = float((iou["value"] * iou["n_images"]).sum() / iou["n_images"].sum())  # over all images
        per = {}
        for dtype in DTYPES:
            per[dtype] = dict(_moves(logits[dtype], logits["float32"]), iou=ious[dtype],
                              delta_iou=ious[dtype] - ious["float32"],
                              untrained=_moves(init_logits[dtype], init_logits["float32"]))
        results["decoders"][decoder] = per

    print(f"{results['rows']} demo images, {source}, decoders trained on float32 features (conv width {args.width})")
    print(f"{'dtype':<12s} {'bytes':>10s} {'÷fp16':>6s} " + " ".join(
        f"{d + ' ' + k:>22s}" for d in results["decoders"] for k in ("max|Δlogit|", "flips", "IoU (Δ)")))
    print("trained checkpoints:")
    for dtype in DTYPES:
        cells = []
        for d, per in results["decoders"].items():
            r = per[dtype]
            cells += [f"{r['max_abs_logit']:>22.4g}", f"{100 * r['pixel_flip_fraction']:>21.4f}%",
                      f"{r['iou']:>13.2f} ({r['delta_iou']:+.2f})"]
        print(f"{dtype:<12s} {sizes[dtype]:>10d} {sizes[dtype] / sizes['float16']:>6.2f} " + " ".join(cells))
    print("same decoders, seeded and untrained, BatchNorm on batch statistics (max|Δlogit|, flips, logit std):")
    for dtype in DTYPES:
        print(f"{dtype:<12s} " + "   ".join(
            f"{d}: {per[dtype]['untrained']['max_abs_logit']:.4g}, {100 * per[dtype]['untrained']['pixel_flip_fraction']:.4f}%"
            f", {per[dtype]['untrained']['logit_std']:.3g}"
            for d, per in results["decoders"].items()))
    out = Path(args.out) if args.out else root
    out.mkdir(parents=True, exist_ok=True)
    (out / "storage_dtype.json").write_text(json.dumps(results, indent=2))
    print(f"written: {out / 'storage_dtype.json'}")


def _moves(logits: np.ndarray, ref: np.ndarray) -> dict:
    diff = np.abs(logits - ref)
    return {"max_abs_logit": float(diff.max()), "mean_abs_logit": float(diff.mean()),
            "pixel_flip_fraction": float(((logits > 0) != (ref > 0)).mean()),
            "logit_std": float(ref.std())}


def source_shape(store: Path, dataset: str, source: str) -> tuple[int, tuple[int, int]]:
    from declip.store.feature_store import FeatureStore
    from declip.store.readers import FeatureSource

    src = FeatureSource(FeatureStore(str(store), mode="r"), source, dataset)
    return src.channels, src.grid


if __name__ == "__main__":
    main()
