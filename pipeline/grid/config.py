"""A grid's configuration: what it varies (sources, decoders, train/test sets, seeds) and fixes, from TOML or flags.

The training options are the same :class:`~declip.pipeline.train.options.TrainOptions` that ``declip train`` uses,
embedded as ``options`` and written inline: a grid TOML keeps one flat key per option (old grid.toml files load
unchanged), every option is a ``declip grid`` flag, and ``declip grid --example-config`` prints every key of this
class with its meaning and default, generated from the fields below.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from declip.core.config_toml import annotated_toml
from declip.core.configs import JsonConfig, from_json, nested, option, rules_of, table
from declip.core.errors import DeclipError
from declip.core.keys import SourceKey
from declip.core.validation import check_config, choice, each, number, whole
from declip.pipeline.grid.cluster import ClusterConfig
from declip.pipeline.train.options import RUNS_SECTION, VIEWS_SECTION, TrainOptions
from declip.store.quantize import STORAGE_DTYPES

#: How a grid's cells are run (flows.runtime.task_runner builds them).
TASK_RUNNERS = ("threads", "dask", "slurm")

WHERE, VARIES, EVAL, DISK = ("where things are", "what the grid varies: every combination is one trained cell",
                             "evaluation", "disk: extraction and the feature budget")


@dataclass(frozen=True)
class GridConfig(JsonConfig):
    """Everything a grid varies and fixes; read from TOML (``declip grid --config``) or flags."""

    WHAT = "grid"
    #: Keys a grid file must set although the dataclass gives them a default.
    REQUIRED_KEYS = ("train_sets", "test_sets")

    store: str = option(
        section=WHERE, metavar="PATH|URL", example="feats.zarr",
        help="feature store written by `declip extract` (a path or an fsspec URL such as s3://bucket/feats.zarr)")
    dataset: str = option(
        section=WHERE, metavar="NAME", example="dolos-celebahq",
        help="dataset name inside the store, as `declip data scan` and `declip store ls` print it")
    out: str = option(
        section=WHERE, metavar="DIR", example="runs/dolos-grid",
        help="grid folder: runs/<hash>/ per cell, runs/index.csv (readable names), results.parquet/csv, report/")
    backbones: tuple[str, ...] = option(
        section=VARIES, metavar="KEYS", example=("ViT-L-14@openai",),
        help='backbone keys ARCH@WEIGHTS[~RECIPE], e.g. "ViT-L-14@openai", "ViT-L-14@/path/ViT-L-14.pt", '
             '"ViT-B-32@random-0"')
    layers: tuple[str, ...] = option(
        section=VARIES, metavar="LAYERS", example=("layer12", "layer20"),
        help='layers of each backbone: "layerK" = output of block K (0-based; ViT-L/14 has layer0..layer23)')
    options: TrainOptions = nested(TrainOptions, help="the training options every cell shares")
    decoders: tuple[str, ...] = option(
        ("linear", "attention", "conv-4"), section=VARIES, metavar="DECODERS",
        help="decoders: linear, attention, conv-4, conv-12, conv-20 (`declip train --help` describes them)")
    train_sets: tuple[str, ...] = option(
        (), section=VARIES, metavar="SUBSETS", example=("lama", "ldm"),
        help="generators (dataset subsets) to train on, one cell per entry")
    test_sets: tuple[str, ...] = option(
        (), section=VARIES, metavar="SUBSETS", example=("pluralistic", "lama", "repaint-p2-9k", "ldm"),
        help="generators to test every trained cell on (in-domain = same as the train set)")
    seeds: tuple[int, ...] = option(
        (0,), section=VARIES, metavar="SEEDS", rule=each(whole(0)), help="training seeds, one cell per seed")
    manifest: str | None = option(
        None, section=WHERE, metavar="PARQUET", example="dolos.parquet",
        help="manifest from `declip data scan`; when given, layers missing from the store are extracted first (once "
             "per backbone, all layers in one pass). Unset: everything must already be in the store")
    fused: tuple[SourceKey, ...] = option(
        (), section=VARIES, metavar="SOURCES", example=("ViT-L-14@openai/layer20+RN50@openai/layer3",),
        help='extra fused sources "VIT/LAYER+RN/LAYER" (DeCLIP\'s ViT+RN50 model)')
    extra_sources: tuple[SourceKey, ...] = option(
        (), section=VARIES, metavar="SOURCES", example=("srm@fixed/layer0",),
        help='further single sources beyond backbones × layers, e.g. the SRM positive control "srm@fixed/layer0"')
    extract_batch_size: int = option(
        32, section=DISK, metavar="N", rule=whole(1), help="batch size of the extraction pass when manifest is set")
    extract_shards: int = option(
        1, section=DISK, metavar="N", rule=whole(1),
        help="block-range tasks per extraction pass, spread over the task runner's workers (e.g. one per GPU); each "
             "encodes and writes only its own blocks, and the store ends byte-identical to one task's")
    task_runner: str = option(
        "threads", section=RUNS_SECTION, choices=TASK_RUNNERS, rule=choice(*TASK_RUNNERS),
        help="threads: a bounded pool in this process; dask: a dask.distributed cluster (a LocalCluster, or "
             "dask_address); slurm: Dask workers in SLURM jobs, as the [cluster] table says")
    max_workers: int = option(
        1, section=RUNS_SECTION, metavar="N", rule=whole(1),
        help="cells trained at once (threads), or LocalCluster workers (dask without an address); slurm: [cluster]")
    dask_address: str | None = option(
        None, section=RUNS_SECTION, metavar="ADDRESS", example="tcp://scheduler:8786",
        help="scheduler of an existing dask.distributed cluster; setting it selects task_runner = dask. Unset: "
             "threads, or a LocalCluster on this machine with task_runner = dask")
    metrics: tuple[str, ...] | None = option(
        None, section=EVAL, metavar="METRICS", example=("iou", "f1_fixed", "f1_best", "ap", "image_auc"),
        help="metric names (`declip evaluate --list-metrics`). Unset: all of them")
    baselines: bool = option(
        True, section=EVAL, help="add the feature-free baselines (all-zero, all-fake, mask prior) to the results table")
    save_maps: int = option(
        0, section=EVAL, metavar="N", rule=whole(0),
        help="predicted-map PNGs kept per evaluation, for the report's overlay panel (0 = none: it recomputes them)")
    eval_splits: tuple[str, ...] = option(
        ("valid", "test"), section=EVAL, metavar="SPLITS",
        help='splits every cell is evaluated on (the report chooses on "valid", reports "test")')
    storage_dtype: str = option(
        "float16", section=DISK, choices=STORAGE_DTYPES, rule=choice(*STORAGE_DTYPES),
        help="how the grid's extraction stores features: float16, float32 (exact, 2x the bytes), int8 or float8_e4m3 "
             "(half the bytes; per-channel scales); part of each layer's identity, never mixed")
    max_store_gb: float | None = option(
        None, section=DISK, metavar="GB", rule=number(above=0, optional=True), example=56,
        help="disk budget (GiB) for the grid's features: layers run in groups that fit, each group's features "
             "evicted after its cells are trained and evaluated; needs manifest to re-extract. Only layers this "
             "grid extracted are evicted (recorded in <out>/created_layers.json). Unset: no budget")
    keep_features: bool = option(
        False, section=DISK, help="with max_store_gb: keep each group's features instead of evicting them")
    test_views: tuple[str, ...] = option(
        (), section=VIEWS_SECTION, metavar="VIEW", flag="--test-view", split=False,
        example=("jpeg:90", "jpeg:70", "jpeg:50", "resize:0.75", "resize:0.5", "blur:1", "blur:2", "noise:0.05"),
        help="robustness: every trained cell is also evaluated on each cached view (no retraining); with manifest "
             "set, a missing view is extracted for the test split first; repeatable")

    cluster: ClusterConfig = table(
        ClusterConfig, section='cluster: SLURM worker jobs for task_runner = "slurm" (dask-jobqueue\'s SLURMCluster)',
        help="worker jobs on SLURM (task_runner = \"slurm\")")

    def __post_init__(self) -> None:
        if not isinstance(self.options, TrainOptions):
            raise TypeError(f"options must be TrainOptions, got {type(self.options).__name__}")
        if not isinstance(self.cluster, ClusterConfig):
            object.__setattr__(self, "cluster", ClusterConfig.from_json(dict(self.cluster)))
        check_config(self, rules_of(GridConfig), self.WHAT)
        for name in ("backbones", "layers", "decoders", "train_sets", "test_sets", "seeds", "eval_splits",
                     "test_views"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "fused", tuple(SourceKey.parse(f) for f in self.fused))
        object.__setattr__(self, "extra_sources", tuple(SourceKey.parse(f) for f in self.extra_sources))
        # auto device and width resolved once, here: for the machines that run the cells (SLURM jobs with GPUs
        # count as CUDA even when this login node has none; each task then gets one GPU of its worker)
        cuda = self.cluster.gpus > 0 if self.task_runner == "slurm" else None
        object.__setattr__(self, "options", self.options.on_device(cuda))

    @classmethod
    def from_toml(cls, path: str, **overrides) -> "GridConfig":
        raw = read_grid_file(path)
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(raw, source=path)

    @classmethod
    def from_dict(cls, raw: dict, source: str = "grid config") -> "GridConfig":
        """A grid file's keys (flat; ``[options]`` as a table works too), or :meth:`to_json`'s output."""
        values = dict(raw)
        if values.get("dask_address"):  # an address only means something to the dask runner
            values["task_runner"] = "dask"
        for key in ("store", "out", "manifest"):  # workers in other processes need absolute paths
            if values.get(key) and "://" not in str(values[key]):
                values[key] = str(Path(values[key]).expanduser().resolve())
        try:
            cfg = from_json(cls, values)
        except TypeError as exc:
            raise DeclipError(f"{source}: {exc}") from exc
        except DeclipError as exc:
            raise DeclipError(f"{source}: {exc}") from None
        if not cfg.train_sets or not cfg.test_sets:
            raise DeclipError(f"{source}: train_sets and test_sets must each name at least one generator")
        if bool(cfg.backbones) != bool(cfg.layers):
            given, empty = ("backbones", "layers") if cfg.backbones else ("layers", "backbones")
            raise DeclipError(f"{source}: {given} = {list(getattr(cfg, given))} but {empty} is empty; every backbone "
                              f"is cached at every layer, so set both (e.g. backbones = [\"ViT-L-14@openai\"], "
                              f"layers = [\"layer12\", \"layer20\"]) or neither")
        if not (cfg.backbones or cfg.fused or cfg.extra_sources):
            raise DeclipError(f"{source}: the grid has no features to train on: set backbones and layers, fused or "
                              "extra_sources")
        if cfg.max_store_gb is not None and not cfg.manifest:
            raise DeclipError(f"{source}: max_store_gb evicts features and re-extracts them when needed, so it needs "
                              "manifest = \"...\" (the manifest the store's dataset was extracted from)")
        resolved_test_views(cfg), resolved_train_views(cfg)  # a bad view is reported now, not in a cell
        return cfg

    @classmethod
    def from_json(cls, data: dict) -> "GridConfig":
        return cls.from_dict(data, source="grid config")


def worker_paths(cfg: GridConfig) -> dict[str, str]:
    """The paths the grid's workers read or write, by what they are: checked on a worker before any work (a compute
    node that lacks a mount fails with one line naming it). URLs (s3://...) are not paths and are left out."""
    store = cfg.store if "://" in cfg.store or Path(cfg.store).exists() else str(Path(cfg.store).parent)
    paths = {"grid folder (out)": cfg.out, "feature store" + ("" if store == cfg.store else "'s folder"): store}
    if cfg.manifest:
        from declip.pipeline.data.manifest import read_manifest

        paths["manifest"] = cfg.manifest
        paths["image folder (the manifest's root)"] = str(read_manifest(cfg.manifest).root)
    return {what: p for what, p in paths.items() if "://" not in p}


def read_grid_file(path: str) -> dict:
    """A grid TOML's keys, unchecked (:meth:`GridConfig.from_dict` checks them)."""
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeclipError(f"cannot read grid config {path}: {exc}") from exc


HEADER = """\
An annotated ablation grid for `declip grid --config grid.toml` (print it with `declip grid --example-config`).
Every key of declip.pipeline.grid.config.GridConfig is listed (generated from its fields); keys you delete take the
default stated in their comment. Command-line flags override the file (e.g. `--layers layer12,layer20`; every key is
a flag). Paths are relative to where you run declip. Re-running the same file resumes: finished cells are skipped,
and adding a layer or a test set runs only what is new. Lines starting with "# key =" are suggestions: remove the #.
"""


def example_config() -> str:
    """The annotated grid TOML: every :class:`GridConfig` key with its meaning and default, from the fields."""
    return annotated_toml(GridConfig, HEADER)


def resolved_test_views(cfg: GridConfig) -> list[str]:
    """Canonical non-clean test views (clean is always evaluated, in the place it always was)."""
    from declip.features.views import parse_views

    return [v.name for v in parse_views(list(cfg.test_views)) if not v.is_clean]


def resolved_train_views(cfg: GridConfig) -> tuple[str, ...]:
    """Canonical training views: ``train_views`` then the ``augment_copies`` copies; () = train on clean."""
    return cfg.options.training_views()
