"""``declip train``: train decoders on cached features (DeCLIP's recipe by default), as a Prefect flow."""
from __future__ import annotations

import argparse

from declip.cli.option_names import names, split_values
from declip.pipeline.train.recipe import RECIPE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train decoder(s) on cached features",
                       description="Train on the store only (no images, no backbone). Several --decoders, --layers or "
                       "--source values train every combination together from one read of each batch.")
    p.add_argument("--store", required=True, metavar="PATH|URL", help="feature store written by `declip extract`")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="cached dataset name, as `declip data scan` and `declip store ls` print it")
    p.add_argument("--source", action="append", metavar="BACKBONE/LAYER",
                   help="BACKBONE/LAYER, or BACKBONE/LAYER+BACKBONE/LAYER for DeCLIP's fused model; repeatable")
    p.add_argument("--backbone", metavar="KEY", help="with --layers instead of --source, e.g. ViT-L-14@openai")
    p.add_argument("--arch", help="DeCLIP name instead of --backbone: CLIP:ViT-L/14, CLIP:RN50, CLIP:ViT-L/14,RN50")
    p.add_argument(*names("--layers"), dest="layers", action="append", metavar="LAYERS",
                   help="with --backbone/--arch: layer20 etc., comma-separated or repeated (one head per layer)")
    p.add_argument(*names("--decoders"), dest="decoders", action="append", metavar="DECODERS",
                   help="linear, attention, conv-4, conv-12, conv-20 (default: conv-20); comma-separated or repeated")
    p.add_argument(*names("--train-sets"), dest="train_sets", required=True, metavar="SUBSETS",
                   help="training generator(s) (subsets of the dataset), comma-separated, or all")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run directory: best/ checkpoint, last/ for resuming, history.csv, summary.json "
                   "(one sub-directory per head when several)")
    p.add_argument("--mode", choices=["localization", "detection"], default="localization",
                   help="localization: BCE on the fake images' masks (DeCLIP's main setting); detection: real vs fake")
    p.add_argument(*names("--fully-supervised"), dest="mode", action="store_const", const="localization",
                   help="DeCLIP's spelling of --mode localization")
    p.add_argument("--faithful", action="store_true",
                   help="attention decoder as DeCLIP shipped it (causal mask, partial trainable set)")
    p.add_argument("--width", type=float, default=None, metavar="X",
                   help="decoder channel multiplier (1.0 = DeCLIP; default 1.0 on a GPU, 0.125 with --device cpu, where "
                   "a full-width conv-20 takes minutes per epoch)")
    p.add_argument("--lr", type=float, default=RECIPE.lr, metavar="LR",
                   help="AdamW learning rate (no weight decay); divided by 10 on a validation plateau, down to 1e-6")
    p.add_argument(*names("--batch-size"), dest="batch_size", type=int, default=RECIPE.batch_size, metavar="N",
                   help="training batch size")
    p.add_argument(*names("--max-epochs"), dest="max_epochs", type=int, default=RECIPE.max_epochs, metavar="N",
                   help="upper bound on epochs; early stopping usually ends training first")
    p.add_argument(*names("--patience"), dest="patience", type=int, default=RECIPE.patience, metavar="N",
                   help="epochs without validation improvement before the lr drops (and, at the floor, training stops)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seeds weight init and batch order; same seed and data, same model")
    p.add_argument("--min-steps-per-epoch", type=int, default=20, metavar="N",
                   help="re-shuffle small training sets within an epoch until this many optimizer steps ran "
                   "(0 = DeCLIP's single pass; no effect when one pass already has that many)")
    p.add_argument("--collapse-patience", type=int, default=10, metavar="N",
                   help="stop a run whose validation maps stay collapsed (near-constant) this many epochs (0 = never)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--memory-gb", type=float, default=None, metavar="GB",
                   help="RAM budget for holding features in memory; beyond it batches stream from the store "
                   "(default: half the machine's RAM)")
    p.add_argument("--train-view", action="append", default=None, metavar="VIEW",
                   help="augmentation: each epoch every training image reads one of these cached views, seeded by "
                   "(seed, epoch, image); repeatable (e.g. augment:all+copy:0 ... copy:3; see `declip extract --view`)")
    p.add_argument("--augment-copies", type=int, default=0, metavar="K",
                   help="shorthand for --train-view augment:KIND+copy:0 ... copy:K-1 (KIND from --data-aug)")
    p.add_argument(*names("--data-aug"), dest="data_aug", default="all",
                   choices=["blur", "color_jitter", "jpeg_compression", "all"],
                   help="DeCLIP's augmentation kind that --augment-copies caches copies of")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: autocast the decoders (CUDA; a separate run identity, results move slightly)")
    p.add_argument("--device-memory-gb", type=float, default=None, metavar="GB",
                   help="device memory for holding the training features on the device (default: 60%% of free "
                   "CUDA memory; off on CPU)")
    p.add_argument("--compile", action="store_true", help="torch.compile the decoders")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-flow", action="store_true", help="run in-process without Prefect (debugging)")
    p.set_defaults(func=run)


def resolve_sources(args: argparse.Namespace) -> list:
    """The typed feature sources the flags name (``--source``, or a backbone/DeCLIP arch with layers)."""
    from declip.core.errors import DeclipError
    from declip.core.keys import SourceKey, parse_declip_arch

    if args.source:
        return [SourceKey.parse(s) for s in args.source]
    layers = split_values(args.layers)
    if not layers or bool(args.backbone) == bool(args.arch):
        raise DeclipError("give --source BACKBONE/LAYER, or --backbone/--arch with --layers")
    if args.backbone:
        return [SourceKey.single(args.backbone, layer) for layer in layers]
    keys = parse_declip_arch(args.arch)
    if len(keys) == 1:
        return [SourceKey.single(keys[0], layer) for layer in layers]
    return [SourceKey.declip_fused(keys[0], layer) for layer in layers]


def build_configs(args: argparse.Namespace) -> list[dict]:
    from pathlib import Path

    from declip.pipeline.train.training import TrainConfig

    sources = resolve_sources(args)
    decoders = split_values(args.decoders) or ["conv-20"]
    mode = args.mode
    combos = [(s, d) for s in sources for d in decoders]
    train_views = training_views(args.train_view, args.augment_copies, args.data_aug)
    cfgs = []
    for source, decoder in combos:
        out = args.out if len(combos) == 1 else str(Path(args.out) / f"{str(source).replace('/', '_')}__{decoder}")
        cfgs.append(TrainConfig(
            store=args.store, source=source, dataset=args.dataset, train_subsets=tuple(split_values(args.train_sets)),
            out=out, decoder=decoder, width=default_width(args), faithful=args.faithful, mode=mode, lr=args.lr,
            batch_size=args.batch_size, max_epochs=args.max_epochs, patience=args.patience, seed=args.seed,
            device=args.device, memory_gb=args.memory_gb, progress=not args.no_progress,
            min_steps_per_epoch=args.min_steps_per_epoch, collapse_patience=args.collapse_patience,
            precision=args.precision, device_memory_gb=args.device_memory_gb, compile=args.compile,
            train_views=train_views).to_json())
    return cfgs


def default_width(args: argparse.Namespace) -> float:
    if args.width is not None:
        return args.width
    return 0.125 if args.device == "cpu" else 1.0


def training_views(views: list[str] | None, copies: int, kind: str) -> tuple[str, ...]:
    """Canonical training views: the listed ones plus K augmented copies (both may be given)."""
    from declip.features.views import augment_copies, parse_views

    out = [v.name for v in parse_views(views)]
    if copies:
        out += [v.name for v in augment_copies(kind, copies) if v.name not in out]
    return tuple(out)


def run(args: argparse.Namespace) -> int:
    cfgs = build_configs(args)
    if args.no_flow:
        from declip.flows.train import train_task
        from declip.pipeline.train.training import TrainConfig

        results = train_task.fn([TrainConfig.from_json(c) for c in cfgs])
    else:
        from declip.flows.runtime import prefect_defaults

        prefect_defaults(announce=True)
        from declip.flows.train import run_train

        results = run_train(cfgs)
    if args.width is None and args.device == "cpu":
        print("NOTE: --device cpu: decoders at width 0.125 (DeCLIP's is 1.0; pass --width 1 for it)")
    for r in results:
        metric = "IoU %" if r["mode"] == "localization" else "AP"
        print(f"{r['decoder']} on {r['source']}: best val {metric} {r['best_val']:.3f} at epoch {r['best_epoch']} "
              f"({r['epochs']} epochs run) → {r['out']}/best")
    for text in dict.fromkeys(w for r in results for w in r.get("warnings", [])):
        print(f"WARNING: {text}")
    for r in results:
        if r.get("stop_reason"):
            print(f"WARNING: {r['decoder']} on {r['source']}: {r['stop_reason']}")
        if r.get("collapsed"):
            print(f"WARNING: {r['decoder']} on {r['source']} COLLAPSED: its kept epoch's validation maps are "
                  f"near-constant ({r.get('collapse_reason')}); it has not learned to localize")
    return 0
