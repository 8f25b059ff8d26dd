"""scan -> extract -> train -> evaluate through declip's Python API (no CLI, no Prefect).

    python examples/api_quickstart.py OUT                       # generated demo data, SRM control, ~3 min on CPU
    python examples/api_quickstart.py OUT --data /data/dolos_data/celebahq --layout dolos \
        --backbone ViT-L-14@openai --layer layer20 --decoder conv-20 --epochs 400 --device cuda

Each step is one library call; what it returns is printed. The same functions back ``declip data scan``,
``declip extract``, ``declip train`` and ``declip evaluate``, and the Prefect flows in ``flows/`` only wire them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from declip.pipeline.grid.demo_data import build_demo_dataset  # noqa: E402
from declip.pipeline.data.manifest import counts_table, scan_dataset, write_manifest  # noqa: E402
from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate  # noqa: E402
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction  # noqa: E402
from declip.pipeline.train.training import TrainConfig, TrainOptions, train  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="working folder (manifest, store, run, results)")
    p.add_argument("--data", type=Path, help="your dataset folder (default: generate the small demo dataset)")
    p.add_argument("--layout", default="auto", help="dolos | autosplice | pairs | list | auto")
    p.add_argument("--backbone", default="srm@fixed", help="backbone key (default: the fixed SRM noise filters, the "
                   "positive control that learns on the demo data; a random-weight ViT such as "
                   "demo-vit-small@random-0 collapses there)")
    p.add_argument("--layer", default="layer0", help="layer to cache and train on")
    p.add_argument("--decoder", default="conv-4", help="linear | attention | conv-4 | conv-12 | conv-20")
    p.add_argument("--width", type=float, default=0.25, help="decoder channel multiplier (1.0 = DeCLIP)")
    p.add_argument("--train-set", help="generator to train on (default: the first one)")
    p.add_argument("--epochs", type=int, default=5, help="upper bound on training epochs")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    out = args.out

    # 1. Scan: one manifest row per image (problem files are listed and left out).
    root = args.data or build_demo_dataset(out / "data", seed=0, size=8)
    scanned = scan_dataset(root, args.layout, progress=False)
    manifest = write_manifest(scanned.manifest, out / "manifest.parquet", root, scanned.layout)
    dataset = str(scanned.manifest["dataset"].iloc[0])
    generators = sorted(scanned.manifest.loc[scanned.manifest["label"] == 1, "subset"].unique())
    print(f"dataset {dataset}: {len(scanned.manifest)} images, {len(scanned.problems)} problems\n"
          f"{counts_table(scanned.manifest).to_string()}")

    # 2. Extract once: the layer's features (and masks) go into the zarr store; re-running skips what is there.
    store = str(out / "feats.zarr")
    stats = run_extraction(ExtractConfig(manifest=str(manifest), store=store, backbone=args.backbone,
                                         layers=args.layer, device=args.device, progress=False))
    print(f"extracted {stats.images_encoded} images of {args.backbone}/{args.layer} ({stats.images_per_s:.1f} img/s)")

    # 3. Train a decoder on the cached features only (DeCLIP's recipe; seeded, resumable).
    train_set = args.train_set or generators[0]
    options = TrainOptions(width=args.width, max_epochs=args.epochs, batch_size=16, device=args.device, progress=False)
    summary = train(TrainConfig(store=store, source=f"{args.backbone}/{args.layer}", dataset=dataset,
                                train_sets=(train_set,), out=str(out / "run"), decoder=args.decoder, options=options))
    print(f"trained {args.decoder} on {train_set}: best validation IoU {summary['best_val']:.2f} "
          f"at epoch {summary['best_epoch']}")

    # 4. Evaluate on every generator with DeCLIP's protocol (native-resolution masks, per-image IoU).
    table = evaluate(EvalConfig(store=store, checkpoint=str(out / "run" / "best"), dataset=dataset,
                                test_subsets=tuple(generators), out=str(out / "results"), device=args.device))
    iou = table[table["metric"] == "iou"].set_index("test_set")["value"]
    print("test IoU (%) by generator:\n" + iou.round(2).to_string())
    # 5. Did it learn? A decoder whose maps collapsed (one value everywhere) is flagged per row; say it plainly.
    rows = table[table["metric"] == "iou"].set_index("test_set")
    collapsed = rows["collapsed"].fillna(False).astype(bool) if "collapsed" in rows else iou * 0 > 0
    for test_set in rows.index[collapsed]:
        print(f"COLLAPSED on {test_set}: {rows.loc[test_set, 'collapse_reason']}")
    if len(collapsed) and collapsed.all():
        print("COLLAPSED everywhere: this decoder learned nothing (every map is one value); train longer (--epochs) "
              "or try the fixed-kernel control (--backbone srm@fixed --layer layer0)")
    if "random" in args.backbone:
        print("NOTE: random backbone weights: the numbers show the pipeline works, not what CLIP features can do.")
    return {"dataset": dataset, "train_set": train_set, "iou": iou.to_dict(), "summary": summary,
            "collapsed": collapsed.to_dict()}


if __name__ == "__main__":
    main()
