"""Ablation grids: backbone × layer × decoder × train set × seed cells, each evaluated on every test set.

A cell's directory name is a hash of its training config, so re-running a grid finds finished cells (their
``summary.json``) and adding a layer or a test set creates only the new cells and evaluations. Every cell is
evaluated on the validation split too (``eval-valid/``): the report picks its best cell there, never on test.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from declip.core.errors import DeclipError
from declip.core.keys import SourceKey
from declip.pipeline.evaluate.evaluation import EVAL_RECORD, EvalConfig
from declip.pipeline.grid.budget import LayerGroup, layer_nbytes, plan_groups, source_layers
from declip.pipeline.grid.config import GridConfig, resolved_test_views
from declip.pipeline.report.grid_files import run_eval_dir
from declip.pipeline.train.config import TrainConfig


@dataclass(frozen=True)
class Cell:
    train: TrainConfig
    evals: tuple[EvalConfig, ...] = field(default=())

    @property
    def run_id(self) -> str:
        return self.train.identity()


#: Where a cell's evaluations on a view and split go (the report reads them from the same place).
view_eval_dir = run_eval_dir


def sources(cfg: GridConfig) -> list[SourceKey]:
    return ([SourceKey.single(b, layer) for b in cfg.backbones for layer in cfg.layers] + list(cfg.fused)
            + list(cfg.extra_sources))


def plan_cells(cfg: GridConfig) -> list[Cell]:
    """Every training cell of the grid and its evaluations (deterministic order)."""
    runs = Path(cfg.out) / "runs"
    cells = []
    options = replace(cfg.options, progress=False)  # one bar over the grid's cells, none per cell
    # clean on every evaluation split; each test view on the test split (the split its copy is extracted for; model
    # selection on the valid split stays clean)
    eval_plan = [("clean", split) for split in cfg.eval_splits]
    if "test" in cfg.eval_splits:
        eval_plan += [(view, "test") for view in resolved_test_views(cfg)]
    for source, decoder, train_set, seed in itertools.product(sources(cfg), cfg.decoders, cfg.train_sets, cfg.seeds):
        train = TrainConfig(store=cfg.store, source=source, dataset=cfg.dataset, train_sets=(train_set,), out="",
                            decoder=decoder, seed=seed, options=options)
        out = runs / train.identity()
        train = replace(train, out=str(out))
        evals = tuple(
            EvalConfig(store=cfg.store, checkpoint=str(out / "best"), dataset=cfg.dataset, test_subsets=(test,),
                       out=str(view_eval_dir(out, view, split)), split=split, metrics=cfg.metrics,
                       device=cfg.options.device, save_maps=cfg.save_maps > 0 and split == "test" and view == "clean",
                       view=view)
            for view, split in eval_plan for test in cfg.test_sets
        )
        cells.append(Cell(train, evals))
    return cells


def dataset_rows(cfg: GridConfig) -> int:
    """Rows of the grid's dataset: the manifest's (what extraction will register), else the store's."""
    if cfg.manifest:
        from declip.pipeline.data.manifest import read_manifest

        return len(read_manifest(cfg.manifest).df)
    from declip.store.feature_store import FeatureStore

    return len(FeatureStore(cfg.store, mode="r").samples(cfg.dataset))


def layer_groups(cfg: GridConfig) -> list[LayerGroup]:
    """The grid's sources in groups whose features fit ``max_store_gb`` (one group without a budget)."""
    srcs = sources(cfg)
    if cfg.max_store_gb is None:
        return plan_groups(srcs, {k: 0 for s in srcs for k in source_layers(s)}, None)
    n = dataset_rows(cfg)
    nbytes = {k: layer_nbytes(k, n, cfg.storage_dtype) for s in srcs for k in source_layers(s)}
    return plan_groups(srcs, nbytes, int(cfg.max_store_gb * 2**30))


def cells_of(cells: list[Cell], sources: list) -> list[Cell]:
    wanted = {str(s) for s in sources}
    return [c for c in cells if str(c.train.source) in wanted]


def check_subsets(cfg: GridConfig, samples=None) -> None:
    """Every train set has training rows and every test set has test rows (in ``samples``, else the store's),
    checked before any training.

    Why here: a misspelt or unextracted test set used to surface only after every cell had trained.
    """
    if samples is None:
        from declip.store.feature_store import FeatureStore

        samples = FeatureStore(cfg.store, mode="r").samples(cfg.dataset)
    problems = subset_problems(cfg, samples)
    if problems:
        raise DeclipError(f"grid on {cfg.store} / {cfg.dataset}: " + "; ".join(problems)
                          + "; fix train_sets/test_sets, or scan and extract those generators first. Nothing was trained")


def subset_problems(cfg: GridConfig, samples) -> list[str]:
    """One line per train/test set with no fake rows of its split in ``samples`` (a manifest's or a store's rows):
    what :func:`check_subsets` refuses and ``grid --dry-run`` reports before planning."""
    problems = []
    for names, split in ((cfg.train_sets, cfg.options.train_split), (cfg.test_sets, "test")):
        present = set(samples.loc[(samples["split"] == split) & (samples["label"] == 1), "subset"])
        missing = [n for n in names if n != "all" and n not in present]
        if missing:
            problems.append(f"{split} sets {missing} have no {split} rows (known: {sorted(present) or 'none'})")
    return problems


def check_grid_data(cfg: GridConfig) -> None:
    """Before any extraction: the grid's rows (its manifest's, else the store's if it holds the dataset) have the
    splits and generators its cells need; a dataset without splits is refused with the scan that gives it some."""
    from declip.pipeline.data.splits import require_split

    if cfg.manifest:
        from declip.pipeline.data.manifest import read_manifest

        samples = read_manifest(cfg.manifest).df
    else:
        from declip.store.feature_store import FeatureStore

        try:
            samples = FeatureStore(cfg.store, mode="r").samples(cfg.dataset)
        except DeclipError:
            return  # no store or dataset yet: the first extraction's check (check_subsets) names what is missing
    needed = {cfg.options.train_split: "to train the grid's cells on",
              cfg.options.valid_split: "to choose each cell's best epoch on",
              **{split: "to evaluate the grid's cells on" for split in cfg.eval_splits}}
    for split, purpose in needed.items():
        require_split(samples, split, cfg.dataset, purpose)
    check_subsets(cfg, samples)


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
            key = ("fresh", backbones, t.source.view, t.train_sets, t.seed)
        groups.setdefault(key, []).append(cell)
    runs = list(groups.values())
    while len(runs) < parallel and max(map(len, runs), default=0) > 1:
        largest = max(runs, key=len)
        ordered = sorted(largest, key=lambda c: str(c.train.source))
        runs.remove(largest)
        runs += [ordered[:len(ordered) // 2], ordered[len(ordered) // 2:]]
    return runs


def evaluation_groups(cells: list[Cell], groups: list[list[Cell]]) -> list[list[tuple[Cell, list[EvalConfig]]]]:
    """The evaluations still needed, as tasks: one per training run of ``groups`` (every evaluation of its cells,
    which train anew) and one per other cell that lacks some (trained before; a test set added since). Each entry is
    (cell, its evaluations to run).

    Why grouped: a Prefect task costs ~0.1-0.3 s of orchestration on a Dask worker (bench/grid_cost.py), more than
    a small evaluation; one task per evaluation made that cost grow with test sets × splits × views."""
    training = {c.run_id for group in groups for c in group}
    needed = {c.run_id: [ev for ev in c.evals if c.run_id in training or not eval_finished(ev)] for c in cells}
    tasks = [[(c, needed[c.run_id]) for c in group if needed[c.run_id]] for group in groups]
    tasks += [[(c, needed[c.run_id])] for c in cells if c.run_id not in training and needed[c.run_id]]
    return [task for task in tasks if task]


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
