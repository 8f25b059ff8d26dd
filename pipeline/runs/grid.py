"""Ablation grids: backbone × layer × decoder × train set × seed cells, each evaluated on every test set.

A cell's directory name is a hash of its training config, so re-running a grid finds finished cells (their
``summary.json``) and adding a layer or a test set creates only the new cells and evaluations. The results table
is rebuilt from the per-evaluation summaries on disk, so it never disagrees with what was computed, and merged
with the table already in ``out`` by (run id, train set, test set, split, metric): re-running a narrower config into
the same folder replaces the rows it recomputed and keeps every other row, so results never shrink.

Every cell is evaluated on the validation split too (``eval-valid/``): the report picks its best cell there, never
on test.
"""
from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import pandas as pd

from core.errors import DeclipError
from core.keys import SourceKey
from core.validation import check_config, choice, each, number, whole
from features.views import AUGMENT_KINDS
from pipeline.runs.evaluation import EVAL_RECORD, EvalConfig
from pipeline.runs.recipe import RECIPE
from pipeline.runs.store_budget import LayerGroup, layer_nbytes, plan_groups, source_layers
from pipeline.runs.training import TRAIN_RULES, TrainConfig
from store.quantize import STORAGE_DTYPES

RESULT_COLUMNS = [
    "backbone", "layer", "source", "decoder", "faithful", "width", "train_set", "train_views", "test_set", "view",
    "dataset", "split",
    "seed", "metric", "value", "level", "threshold_rule", "aggregation", "scale", "n_images", "n_undefined",
    "image_score_rule", "random_weights", "run_id", "checkpoint", "code_version", "collapsed", "collapse_reason",
]
MERGE_KEY = ["run_id", "train_set", "test_set", "split", "view", "metric"]


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


@dataclass(frozen=True)
class Cell:
    train: TrainConfig
    evals: tuple[EvalConfig, ...] = field(default=())

    @property
    def run_id(self) -> str:
        return self.train.identity()


def resolved_test_views(cfg: GridConfig) -> list[str]:
    """Canonical non-clean test views (clean is always evaluated, in the place it always was)."""
    from features.views import parse_views

    return [v.name for v in parse_views(list(cfg.test_views)) if not v.is_clean]


def resolved_train_views(cfg: GridConfig) -> tuple[str, ...]:
    """Canonical training views: ``train_views`` then the ``augment_copies`` copies; () = train on clean."""
    from features.views import augment_copies, parse_views

    views = [v.name for v in parse_views(list(cfg.train_views))]
    if cfg.augment_copies:
        views += [v.name for v in augment_copies(cfg.augment, cfg.augment_copies) if v.name not in views]
    return tuple(views)


def view_eval_dir(run_dir: Path, view: str, split: str = "test") -> Path:
    """Where a cell's evaluations on ``view`` and ``split`` go: clean test ones stay in ``eval/`` as before views
    and validation evaluations existed, clean validation ones in ``eval-valid/``, views in ``eval-views/<view>/``."""
    if view == "clean":
        return run_dir / ("eval" if split == "test" else f"eval-{split}")
    return run_dir / "eval-views" / (view if split == "test" else f"{view}@{split}")


def sources(cfg: GridConfig) -> list[SourceKey]:
    return ([SourceKey.single(b, layer) for b in cfg.backbones for layer in cfg.layers] + list(cfg.fused)
            + list(cfg.extra_sources))


def plan_cells(cfg: GridConfig) -> list[Cell]:
    """Every training cell of the grid and its evaluations (deterministic order)."""
    runs = Path(cfg.out) / "runs"
    cells = []
    train_views = resolved_train_views(cfg)
    # clean on every evaluation split; each test view on the test split (the split its copy is extracted for; model
    # selection on the valid split stays clean)
    eval_plan = [("clean", split) for split in cfg.eval_splits]
    if "test" in cfg.eval_splits:
        eval_plan += [(view, "test") for view in resolved_test_views(cfg)]
    for source, decoder, train_set, seed in itertools.product(sources(cfg), cfg.decoders, cfg.train_sets, cfg.seeds):
        train = TrainConfig(store=cfg.store, source=source, dataset=cfg.dataset, train_subsets=(train_set,),
                            out="", decoder=decoder, width=cfg.width, faithful=cfg.faithful, mode=cfg.mode,
                            lr=cfg.lr, batch_size=cfg.batch_size, max_epochs=cfg.max_epochs, patience=cfg.patience,
                            seed=seed, device=cfg.device, progress=False, min_steps_per_epoch=cfg.min_steps_per_epoch,
                            collapse_patience=cfg.collapse_patience, precision=cfg.precision,
                            device_memory_gb=cfg.device_memory_gb, compile=cfg.compile, train_views=train_views)
        out = runs / train.identity()
        train = replace(train, out=str(out))
        evals = tuple(
            EvalConfig(store=cfg.store, checkpoint=str(out / "best"), dataset=cfg.dataset, test_subsets=(test,),
                       out=str(view_eval_dir(out, view, split)), split=split, metrics=cfg.metrics,
                       device=cfg.device, save_maps=cfg.save_maps > 0 and split == "test" and view == "clean",
                       view=view)
            for view, split in eval_plan for test in cfg.test_sets
        )
        cells.append(Cell(train, evals))
    return cells


def dataset_rows(cfg: GridConfig) -> int:
    """Rows of the grid's dataset: the manifest's (what extraction will register), else the store's."""
    if cfg.manifest:
        from pipeline.data.manifest import read_manifest

        return len(read_manifest(cfg.manifest).df)
    from store.feature_store import FeatureStore

    return len(FeatureStore(cfg.store, mode="r").samples(cfg.dataset))


def layer_groups(cfg: GridConfig) -> list[LayerGroup]:
    """The grid's sources in groups whose features fit ``max_store_gb`` (one group without a budget)."""
    srcs = sources(cfg)
    if cfg.max_store_gb is None:
        return plan_groups(srcs, {k: 0 for s in srcs for k in source_layers(s)}, None)
    n = dataset_rows(cfg)
    nbytes = {k: layer_nbytes(*k, n, cfg.storage_dtype) for s in srcs for k in source_layers(s)}
    return plan_groups(srcs, nbytes, int(cfg.max_store_gb * 2**30))


def cells_of(cells: list[Cell], sources: list) -> list[Cell]:
    wanted = {str(s) for s in sources}
    return [c for c in cells if str(c.train.source) in wanted]


def check_subsets(cfg: GridConfig) -> None:
    """Every train set has training rows and every test set has test rows in the store, checked before any training.

    Why here: a misspelt or unextracted test set used to surface only after every cell had trained.
    """
    from store.feature_store import FeatureStore

    samples = FeatureStore(cfg.store, mode="r").samples(cfg.dataset)
    problems = []
    for names, split in ((cfg.train_sets, "train"), (cfg.test_sets, "test")):
        present = set(samples.loc[(samples["split"] == split) & (samples["label"] == 1), "subset"])
        missing = [n for n in names if n != "all" and n not in present]
        if missing:
            problems.append(f"{split} sets {missing} have no {split} rows (known: {sorted(present) or 'none'})")
    if problems:
        raise DeclipError(f"grid on {cfg.store} / {cfg.dataset}: " + "; ".join(problems)
                          + "; fix train_sets/test_sets, or scan and extract those generators first. Nothing was trained")


def cell_finished(cell: Cell) -> bool:
    return (Path(cell.train.out) / "summary.json").exists()


def training_groups(cells: list[Cell], parallel: int = 1) -> list[list[Cell]]:
    """The unfinished cells, grouped into multi-head training runs (one read of each batch for every head).

    Cells sharing their backbone(s), train set and seed train together: every decoder of one source, and the
    sources (layers) of one cached backbone, so a grid's linear heads on 8 layers are one run. Results equal
    separate runs because each head has its own seeded init, optimizer and schedule, and the batch order depends
    only on the seed and the epoch. A cell resuming an interrupted run (``state.pt`` present) trains alone: heads of
    one run must start at the same epoch. With ``parallel`` workers, the largest groups are halved (cells of one
    source kept together where possible) until there are at least that many runs to share among them.
    """
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        if cell_finished(cell):
            continue
        t = cell.train
        if (Path(t.out) / "state.pt").exists():
            key: tuple = ("resume", cell.run_id)
        else:
            backbones = tuple(str(part.backbone) for part in t.source.parts)
            key = ("fresh", backbones, t.source.view, t.train_subsets, t.seed)
        groups.setdefault(key, []).append(cell)
    runs = list(groups.values())
    while len(runs) < parallel and max(map(len, runs), default=0) > 1:
        largest = max(runs, key=len)
        ordered = sorted(largest, key=lambda c: str(c.train.source))
        runs.remove(largest)
        runs += [ordered[:len(ordered) // 2], ordered[len(ordered) // 2:]]
    return runs


def eval_summary_path(ev: EvalConfig) -> Path:
    return Path(ev.out) / ev.test_subsets[0] / "summary.parquet"


def eval_finished(ev: EvalConfig) -> bool:
    """Finished only when its summary exists and was written by an evaluation with the same identity."""
    record = Path(ev.out) / ev.test_subsets[0] / EVAL_RECORD
    if not eval_summary_path(ev).exists() or not record.exists():
        return False
    try:
        return json.loads(record.read_text()).get("identity") == ev.subset_identity(ev.test_subsets[0])
    except (OSError, ValueError):
        return False


def collect_results(cfg: GridConfig, cells: list[Cell], code_version: str) -> pd.DataFrame:
    """The one results table: a row per (cell, test set, metric), plus the baseline rows."""
    frames = []
    for cell in cells:
        for ev in cell.evals:
            path = eval_summary_path(ev)
            if not path.exists():
                continue
            df = pd.read_parquet(path)
            df["train_set"] = ",".join(cell.train.train_subsets)
            df["train_views"] = "+".join(cell.train.train_views) if cell.train.train_views else "clean"
            df["run_id"] = cell.run_id
            df["seed"] = cell.train.seed
            frames.append(df)
    baseline = Path(cfg.out) / "baselines.parquet"
    if baseline.exists():
        frames.append(pd.read_parquet(baseline))
    if not frames:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    table["code_version"] = code_version
    return _conform(table)


def _conform(table: pd.DataFrame) -> pd.DataFrame:
    """RESULT_COLUMNS in order (tables written before a column existed get its neutral value), sorted."""
    table = table.copy()
    for col in RESULT_COLUMNS:
        if col not in table.columns:
            table[col] = None
    table["view"] = table["view"].fillna("clean")  # summaries written before views existed, baselines
    table["train_views"] = table["train_views"].fillna("clean")
    table["collapsed"] = table["collapsed"].fillna(False).astype(bool)
    table["collapse_reason"] = table["collapse_reason"].fillna("").astype(str)
    table["split"] = table["split"].fillna("test")
    return table[RESULT_COLUMNS].sort_values(
        ["decoder", "layer", "train_set", "test_set", "split", "view", "seed", "metric"],
        kind="stable").reset_index(drop=True)


def merge_results(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``new`` plus every row of ``old`` whose (run id, train set, test set, split, view, metric) ``new`` lacks."""
    if old.empty:
        return _conform(new)
    old = _conform(old)
    new = _conform(new)
    key = lambda df: pd.MultiIndex.from_frame(df[MERGE_KEY].astype(str))  # noqa: E731
    kept = old[~key(old).isin(key(new))]
    return _conform(pd.concat([new, kept], ignore_index=True)) if len(kept) else new


def write_results(table: pd.DataFrame, out: Path) -> Path:
    """Write ``out/results.{parquet,csv}``, merged with the table already there (see :func:`merge_results`)."""
    out.mkdir(parents=True, exist_ok=True)
    existing = out / "results.parquet"
    if existing.exists():
        table = merge_results(pd.read_parquet(existing), table)
    for suffix, writer in ((".parquet", lambda p: table.to_parquet(p, index=False)),
                           (".csv", lambda p: table.to_csv(p, index=False))):
        tmp = out / f"results{suffix}.partial"
        writer(tmp)
        tmp.replace(out / f"results{suffix}")
    return out / "results.parquet"
