"""``declip extract``: cache frozen CLIP layer features of a manifest into the zarr store (a Prefect flow)."""
from __future__ import annotations

import argparse

from declip.cli.devices import add_device_flag, resolved
from declip.cli.option_names import names


def register(sub: argparse._SubParsersAction) -> None:
    from declip.features.view_ops import view_syntax
    from declip.store.quantize import DEFAULT_STORAGE_DTYPE, STORAGE_DTYPES

    p = sub.add_parser("extract", help="encode a manifest once and cache layer features in the store",
                       description="Run the extraction flow: one forward pass per block yields every requested "
                       "layer; re-running skips what is cached. Unreadable images are skipped and recorded.")
    p.add_argument(*names("--manifest", "extract"), dest="manifest", required=True, metavar="PARQUET", help="manifest written by `declip data scan`")
    p.add_argument("--store", required=True, metavar="PATH|URL", help="feature store path or fsspec URL (created if missing)")
    p.add_argument("--backbone", metavar="KEY", help="ARCH@WEIGHTS[~RECIPE]: ViT-L-14@openai, ViT-B-32@random-0, "
                   "ViT-L-14@/path/weights.pt; ~openclip selects open_clip's bicubic+crop preprocessing")
    p.add_argument("--arch", help="DeCLIP name instead of --backbone: CLIP:ViT-L/14, CLIP:RN50, CLIP:ViT-L/14,RN50")
    p.add_argument(*names("--layers"), dest="layers", default=None, metavar="SPEC",
                   help="0-23 | 20 | layer20 | layer3,layer4 | all (default: all; DeCLIP's fused --arch: layer20)")
    p.add_argument("--dataset", metavar="NAME",
                   help="name of the cached dataset (default: the manifest's dataset column, as `declip data scan` printed it)")
    p.add_argument(*names("--batch-size"), dest="batch_size", type=int, default=32, metavar="N",
                   help="images per forward pass (and per store block)")
    add_device_flag(p)
    p.add_argument("--half", action="store_true", help="fp16 forward (CUDA only; recorded in the recipe)")
    p.add_argument("--storage-dtype", default=DEFAULT_STORAGE_DTYPE, choices=STORAGE_DTYPES.names(),
                   help="how features are stored: " + "; ".join(f"{d.name} ({d.help})" for d in STORAGE_DTYPES.values())
                   + ". Recorded in the store identity: a layer cached in one dtype is never mixed with another")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="image decoding threads")
    p.add_argument("--zarr-shards", action="store_true", help="store each block's rows as one zarr shard (one "
                   "object per block instead of one per image: for network file systems and object storage)")
    p.add_argument("--shards", type=int, default=1, metavar="N",
                   help="spread the blocks over N tasks on the task runner (one per GPU, say); a setup task writes "
                   "the store's metadata first and each task writes only its own blocks (default: 1)")
    p.add_argument("--task-runner", choices=("threads", "dask", "slurm"), default="threads",
                   help="where the block-range tasks run: threads here (one per shard), a Dask LocalCluster or "
                   "--dask-address, or Dask workers in SLURM jobs (--cluster-config) (default: threads)")
    p.add_argument("--dask-address", metavar="ADDRESS", help="scheduler of an existing dask.distributed cluster "
                   "(selects --task-runner dask)")
    p.add_argument("--cluster-config", metavar="TOML", help="with --task-runner slurm: a file whose [cluster] table "
                   "describes the worker jobs (a grid file works; `declip grid --example-config` lists the keys)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image")
    p.add_argument("--view", action="append", default=None, metavar="VIEW",
                   help=f"cache a perturbed copy: {view_syntax()}, composed with + (jpeg:75+resize:0.5); repeat the "
                   "flag (or separate with ;) for several; cached as DATASET@VIEW (default: clean)")
    p.add_argument("--split", action="append", default=None, metavar="SPLIT",
                   help="encode only the blocks holding this split's rows, comma-separated or repeated (e.g. "
                   "--split test for a robustness view); default: every row")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-flow", action="store_true", help="run in-process without Prefect (debugging)")
    p.set_defaults(func=run)


def backbone_jobs(backbone: str | None, arch: str | None, layers: str | None) -> list[dict]:
    """One job per backbone; DeCLIP's fused arch caches the ViT layer and RN50 layer3."""
    from declip.core.errors import DeclipError
    from declip.core.keys import DECLIP_FUSION_PARTNER, parse_declip_arch

    if bool(backbone) == bool(arch):
        raise DeclipError("give exactly one of --backbone (e.g. ViT-L-14@openai) or --arch (e.g. CLIP:ViT-L/14)")
    if backbone:
        return [{"backbone": backbone, "layers": layers or "all"}]
    keys = parse_declip_arch(arch)
    if len(keys) == 1:
        return [{"backbone": str(keys[0]), "layers": layers or "all"}]
    return [{"backbone": str(keys[0]), "layers": layers or "layer20"},
            {"backbone": str(DECLIP_FUSION_PARTNER.backbone), "layers": DECLIP_FUSION_PARTNER.layer}]


def cluster_table(path: str | None):
    """The ``[cluster]`` table of a TOML file (defaults where a key or the file is not given)."""
    from declip.pipeline.grid.cluster import ClusterConfig

    if not path:
        return ClusterConfig()
    import tomllib
    from pathlib import Path

    from declip.core.errors import DeclipError

    try:
        table = tomllib.loads(Path(path).read_text()).get("cluster", {})
        return ClusterConfig.from_json(table)
    except (OSError, tomllib.TOMLDecodeError, DeclipError) as exc:
        raise DeclipError(f"--cluster-config {path}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from declip.features.views import parse_views
    from declip.cli.option_names import split_values
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction

    views = [v.name for v in parse_views(args.view)] or ["clean"]
    jobs = [dict(job, view=view) for view in views for job in backbone_jobs(args.backbone, args.arch, args.layers)]
    cfg = ExtractConfig(manifest=args.manifest, store=args.store, backbone=jobs[0]["backbone"],
                        layers=jobs[0]["layers"], dataset=args.dataset, batch_size=args.batch_size,
                        device=resolved(args.device), half=args.half, strict=args.strict, workers=args.workers,
                        zarr_shards=args.zarr_shards, shards=args.shards, storage_dtype=args.storage_dtype,
                        progress=not args.no_progress, splits=tuple(split_values(args.split)))
    if args.no_flow:
        results = [run_extraction(replace(cfg, **job)).to_dict() for job in jobs]
    else:
        from declip.flows.runtime import prefect_defaults

        runner = "dask" if args.dask_address else args.task_runner
        cluster = cluster_table(args.cluster_config) if runner == "slurm" else None
        prefect_defaults(announce=True)
        from declip.flows.extract import run_extract

        results = run_extract(cfg.to_json(), jobs, runner, args.dask_address, cluster)
    for r in results:
        secs = ", ".join(f"{k} {v:.1f}s" for k, v in r["seconds"].items())
        print(f"{r['backbone']} → {r['dataset']}: {len(r['layers'])} layers, {r['rows']} rows, "
              f"{r['blocks_run']}/{r['blocks_total']} blocks run, {r['images_encoded']} images encoded "
              f"({r['images_per_s']:.1f} img/s; {secs}), {r['bad_images']} unreadable")
    if any(r["bad_images"] for r in results):
        print("unreadable images were skipped; `declip store info` lists them")
    return 0
