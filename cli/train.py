"""``declip train``: train decoders on cached features (DeCLIP's recipe by default), as a Prefect flow."""
from __future__ import annotations

import argparse

from declip.cli.config_flags import add_config_flags, given_values
from declip.cli.option_names import names, split_values


def register(sub: argparse._SubParsersAction) -> None:
    from declip.pipeline.train.options import TrainOptions

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
    p.add_argument(*names("--out", "train"), dest="out", required=True, metavar="DIR",
                   help="run directory: best/ checkpoint, state.pt for resuming, epochs.csv, summary.json "
                   "(one sub-directory per head when several)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seeds weight init and batch order; same seed and data, same model")
    add_config_flags(p, TrainOptions, "train",
                     title="training options (one per TrainOptions field; `declip grid` has the same flags)")
    p.add_argument("--no-flow", action="store_true", help="run in-process without Prefect (debugging)")
    p.set_defaults(func=run)


def given_options(args: argparse.Namespace):
    """The TrainOptions the flags say (unset device and width still unresolved: see :func:`device_note`)."""
    from declip.core.configs import walk
    from declip.pipeline.train.options import TrainOptions

    return TrainOptions.from_json(given_values(args, list(walk(TrainOptions))))


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


def build_configs(args: argparse.Namespace) -> list:
    """One TrainConfig per (source, decoder) the flags name, all with the same options (resolved here)."""
    from pathlib import Path

    from declip.pipeline.train.config import TrainConfig

    sources = resolve_sources(args)
    decoders = split_values(args.decoders) or ["conv-20"]
    options = given_options(args).resolved()
    combos = [(s, d) for s in sources for d in decoders]

    def out(source, decoder) -> str:
        return args.out if len(combos) == 1 else str(Path(args.out) / f"{str(source).replace('/', '_')}__{decoder}")

    return [TrainConfig(store=args.store, source=source, dataset=args.dataset,
                        train_sets=tuple(split_values(args.train_sets)), out=out(source, decoder), decoder=decoder,
                        seed=args.seed, options=options)
            for source, decoder in combos]


def run(args: argparse.Namespace) -> int:
    from declip.pipeline.train.options import device_note

    note = device_note(given_options(args))
    cfgs = build_configs(args)
    if note:  # before training: an unset width on the CPU is a DeCLIP deviation
        print(f"NOTE: {note}", flush=True)
    if args.no_flow:
        from declip.pipeline.train.training import train_heads

        results = train_heads(cfgs)
    else:
        from declip.flows.runtime import prefect_defaults

        prefect_defaults(announce=True)
        from declip.flows.train import run_train

        results = run_train([c.to_json() for c in cfgs])
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
