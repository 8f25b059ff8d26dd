"""A grid's configuration: what it varies (sources, decoders, train/test sets, seeds) and fixes, read from TOML or flags.

``declip grid --example-config`` prints every key with its meaning and default (``grid.example.toml``, kept in sync
with :class:`GridConfig` by a test).
"""
from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from declip.core.errors import DeclipError
from declip.core.keys import SourceKey
from declip.core.validation import check_config, choice, each, number, whole
from declip.features.views import AUGMENT_KINDS
from declip.pipeline.train.recipe import RECIPE
from declip.pipeline.train.training import TRAIN_RULES
from declip.store.quantize import STORAGE_DTYPES


@dataclass(frozen=True)
class GridConfig:
    """Everything a grid varies and fixes; read from TOML (``declip grid --config``) or flags."""

    store: str
    dataset: str
    out: str
    backbones: tuple[str, ...]
    layers: tuple[str, ...]
    decoders: tuple[str, ...] = ("linear", "attention", "conv-4")
    train_sets: tuple[str, ...] = ()
    test_sets: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    manifest: str | None = None  # when given, missing layers are extracted first
    fused: tuple[SourceKey, ...] = ()  # extra sources "VIT/LAYER+RN/LAYER", parsed on construction
    extra_sources: tuple[SourceKey, ...] = ()  # BACKBONE/LAYER beyond backbones × layers, e.g. "srm@fixed/layer0"
    width: float = 1.0
    faithful: bool = False
    mode: str = "localization"
    batch_size: int = RECIPE.batch_size
    max_epochs: int = RECIPE.max_epochs
    patience: int = RECIPE.patience
    lr: float = RECIPE.lr
    extract_batch_size: int = 32
    device: str = "cpu"
    task_runner: str = "threads"
    max_workers: int = 1
    dask_address: str | None = None
    metrics: tuple[str, ...] | None = None
    baselines: bool = True
    save_maps: int = 0  # predicted-map PNGs kept per evaluation (for the report's overlay panel)
    min_steps_per_epoch: int = 0  # tiny data: optimizer steps per epoch at least (0 = DeCLIP's one pass)
    collapse_patience: int = 0  # stop a cell whose validation maps stay collapsed this many epochs (0 = never)
    eval_splits: tuple[str, ...] = ("valid", "test")  # valid: model selection in the report; test: the numbers
    storage_dtype: str = "float16"  # how extracted features are stored: float16 | float32 | int8 | float8_e4m3
    max_store_gb: float | None = None  # disk budget for the grid's features: layers run in groups that fit
    keep_features: bool = False  # with max_store_gb: keep each group's features instead of evicting them
    precision: str = "fp32"  # decoder training precision: fp32 | bf16 (autocast)
    device_memory_gb: float | None = None  # device memory for device-resident training features
    compile: bool = False  # torch.compile the decoders
    progress: bool = True  # a bar over the cells
    test_views: tuple[str, ...] = ()  # every trained cell is also evaluated on these cached views (no retraining)
    train_views: tuple[str, ...] = ()  # augmentation: training rows sample among these cached views each epoch
    augment_copies: int = 0  # shorthand: train_views += augment:<augment>+copy:0 ... copy:K-1
    augment: str = "all"  # DeCLIP's --data_aug kind used by augment_copies (blur | color_jitter | jpeg_compression)

    @classmethod
    def from_toml(cls, path: str, **overrides) -> "GridConfig":
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DeclipError(f"cannot read grid config {path}: {exc}") from exc
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(raw, source=path)

    @classmethod
    def from_dict(cls, raw: dict, source: str = "grid config") -> "GridConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise DeclipError(f"{source}: unknown keys {unknown}; known keys are {sorted(known)}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        if values.get("dask_address"):  # an address only means something to the dask runner
            values["task_runner"] = "dask"
        for key in ("store", "out", "manifest"):  # workers in other processes need absolute paths
            if values.get(key) and "://" not in str(values[key]):
                values[key] = str(Path(values[key]).expanduser().resolve())
        try:
            cfg = cls(**values)
        except TypeError as exc:
            raise DeclipError(f"{source}: {exc}") from exc
        except DeclipError as exc:
            raise DeclipError(f"{source}: {exc}") from None
        if not cfg.train_sets or not cfg.test_sets:
            raise DeclipError(f"{source}: train_sets and test_sets must each name at least one generator")
        if cfg.max_store_gb is not None and not cfg.manifest:
            raise DeclipError(f"{source}: max_store_gb evicts features and re-extracts them when needed, so it needs "
                              "manifest = \"...\" (the manifest the store's dataset was extracted from)")
        resolved_test_views(cfg), resolved_train_views(cfg)  # a bad view is reported now, not in a cell
        return cfg

    def __post_init__(self) -> None:
        rules = {k: TRAIN_RULES[k] for k in ("batch_size", "max_epochs", "patience", "lr", "width", "mode",
                                             "precision", "device_memory_gb")}
        rules.update(seeds=each(whole(0)), extract_batch_size=whole(1), max_workers=whole(1), save_maps=whole(0),
                     task_runner=choice("threads", "dask"), storage_dtype=choice(*STORAGE_DTYPES),
                     max_store_gb=number(above=0, optional=True), augment_copies=whole(0),
                     augment=choice(*AUGMENT_KINDS))
        check_config(self, rules, "grid")
        object.__setattr__(self, "fused", tuple(SourceKey.parse(f) for f in self.fused))
        object.__setattr__(self, "extra_sources", tuple(SourceKey.parse(f) for f in self.extra_sources))

    def to_json(self) -> dict:
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.loads(json.dumps(dict(raw, fused=[str(f) for f in self.fused],
                                          extra_sources=[str(f) for f in self.extra_sources])))


EXAMPLE_CONFIG = Path(__file__).with_name("grid.example.toml")


def example_config() -> str:
    """The annotated grid TOML (every :class:`GridConfig` key with its meaning and default; kept in sync by a test)."""
    return EXAMPLE_CONFIG.read_text()


def resolved_test_views(cfg: GridConfig) -> list[str]:
    """Canonical non-clean test views (clean is always evaluated, in the place it always was)."""
    from declip.features.views import parse_views

    return [v.name for v in parse_views(list(cfg.test_views)) if not v.is_clean]


def resolved_train_views(cfg: GridConfig) -> tuple[str, ...]:
    """Canonical training views: ``train_views`` then the ``augment_copies`` copies; () = train on clean."""
    from declip.features.views import augment_copies, parse_views

    views = [v.name for v in parse_views(list(cfg.train_views))]
    if cfg.augment_copies:
        views += [v.name for v in augment_copies(cfg.augment, cfg.augment_copies) if v.name not in views]
    return tuple(views)
