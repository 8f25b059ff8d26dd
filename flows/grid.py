"""Prefect flow ``grid``: extract what is missing (one pass per backbone and view), train the cells on a bounded pool,
evaluate every trained cell on every test set, add the baselines, and publish the results table.

Wiring only: each task calls one function of :mod:`declip.pipeline.grid` (the cell policy in ``cells``, the
eviction ledger in ``ledger``, the extraction plan, the baselines table, progress and the run's bookkeeping). The
store and the run directories decide what is done, not Prefect's cache: a re-run skips finished cells, and a failing
cell is recorded in its directory (``failed.json``) and in the flow's return value without stopping others.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import flow, task
from prefect import tags as prefect_tags
from prefect.cache_policies import NONE
from prefect.runtime import flow_run, task_run

from declip.flows.extract import extract_sharded
from declip.flows.placement import gpu_request, task_device, where, workers_advertise_gpus
from declip.flows.runtime import loopback_api_warning, own_tags, run_flow, run_logger, task_runner
from declip.core.keys import LayerKey
from declip.core.stop import waiting
from declip.pipeline.evaluate.evaluation import EvalConfig
from declip.pipeline.grid import cells as grid_cells
from declip.pipeline.grid.baseline_table import update_baselines
from declip.pipeline.grid.cluster import check_paths_here
from declip.pipeline.grid.config import GridConfig, worker_paths
from declip.pipeline.grid.extraction_plan import extraction_configs
from declip.pipeline.grid.grid_run import GridOutcome, iou_markdown, start_grid, write_grid_results
from declip.pipeline.grid.ledger import evict_group, record_created_layers
from declip.pipeline.grid.plan import (
    cell_finished, cells_of, check_subsets, evaluation_groups, layer_groups, training_groups,
)
from declip.pipeline.grid.progress import CellProgress
from declip.pipeline.grid.run_index import write_index
from declip.pipeline.grid.run_names import (
    cell_name, extract_tags, grid_artifact_key, grid_run_name, grid_tags, source_parts, tags,
)
from declip.pipeline.train.training import TrainConfig


@task(name="train-cells", cache_policy=NONE)
def train_group(cfgs: list[TrainConfig]) -> list[dict]:
    """Cells sharing a backbone, train set and seed as one multi-head run (then one by one if it fails), on one
    device of the worker; each record says where it ran."""
    with task_device(cfgs[0].options.device) as device:
        records = grid_cells.train_cells(grid_cells.on_device(cfgs, device), run_logger())
        return [dict(r, where=where(device)) for r in records]


@task(name="evaluate-cells", cache_policy=NONE)
def evaluate_cells(work: list[tuple[str, list[EvalConfig]]], trained: list[dict] | None) -> list[dict]:
    """The evaluations some cells still need (the cells of one training run, or one cell trained before), on one
    device; a cell's are skipped when its training (``trained``, its run's records) failed. One record per
    evaluation, each naming its cell and where it ran."""
    with task_device(work[0][1][0].device) as device:
        work = [(run, [replace(cfg, device=device) for cfg in cfgs]) for run, cfgs in work]
        records = grid_cells.evaluate_cells(work, trained, task_run.name, run_logger())
        return [dict(record, where=where(device)) for record in records]


@task(name="check-worker-paths", cache_policy=NONE)
def check_worker_paths(paths: dict[str, str]) -> dict:
    """On a worker, before any work: every path the grid ships is visible there (one line naming a missing one)."""
    return check_paths_here(paths)


@task(name="baselines", cache_policy=NONE)
def baselines_task(g: GridConfig) -> str:
    """Baseline rows for every (train set, test set, split) of the grid that ``baselines.parquet`` lacks."""
    return str(update_baselines(g))


@task(name="evict-features", cache_policy=NONE)
def evict_features(g: GridConfig, layers: list[LayerKey]) -> list[str]:
    """Delete a finished group's layers that this grid extracted (re-extracted if a later run needs them)."""
    return evict_group(g, layers, run_logger())


def _cell_options(cell) -> dict:
    """Task-run name and tags of one cell, so the UI's task list reads as the grid does."""
    t = cell.train
    parts = source_parts(t.source)
    return {"task_run_name": cell_name(t.source, t.decoder, t.train_sets, t.seed, cell.run_id),
            "tags": tags(backbones=[b for b, _ in parts], layers=[layer for _, layer in parts],
                         decoders=[t.decoder], datasets=[t.dataset])}


def _group_options(group) -> dict:
    """Task-run name and tags of one training run: its first cell's name (+ how many more), every cell's tags."""
    first = _cell_options(group[0])
    name = first["task_run_name"] + (f"+{len(group) - 1}-more" if len(group) > 1 else "")
    return {"task_run_name": name, "tags": list(dict.fromkeys(t for c in group for t in _cell_options(c)["tags"]))}


def _eval_options(task) -> dict:
    """The cells' name (as their training run's) + ``-on-<test sets>``, then the splits unless only test and the
    views other than clean; every cell's tags."""
    opts = _group_options([cell for cell, _ in task])
    evals = [ev for _, cell_evals in task for ev in cell_evals]
    splits = list(dict.fromkeys(ev.split for ev in evals))
    splits = [] if splits == ["test"] else splits
    views = [v for v in dict.fromkeys(ev.view for ev in evals) if v != "clean"]
    name = "-".join([f"{opts['task_run_name']}-on-" + "+".join(dict.fromkeys(ev.test_subsets[0] for ev in evals)),
                     *(["+".join(splits)] if splits else []), *(["+".join(views)] if views else [])])
    return {"task_run_name": name, "tags": opts["tags"]}


def _run_cells(cells, parallel: int, show: bool = True) -> tuple[list[dict], list[dict], int, int]:
    """Train the unfinished cells (grouped into multi-head runs) and evaluate what is missing (one task per training
    run, after it); returns (trained, evaluated, cells skipped, training runs)."""
    from prefect.futures import as_completed

    groups = training_groups([c for c in cells if not cell_finished(c)], parallel=parallel)
    with gpu_request(workers_advertise_gpus()):  # one GPU each, where the workers have them
        group_futures = [train_group.with_options(**_group_options(group)).submit([c.train for c in group])
                         for group in groups]
        train_futures = {c.run_id: f for group, f in zip(groups, group_futures) for c in group}
        eval_tasks = evaluation_groups(cells, groups)
        eval_futures = [evaluate_cells.with_options(**_eval_options(task)).submit(
            [(c.run_id, evals) for c, evals in task], train_futures.get(task[0][0].run_id)) for task in eval_tasks]
    progress = CellProgress(cells, groups, [c.run_id for task in eval_tasks for c, evals in task for _ in evals], show)
    is_eval = {id(f) for f in eval_futures}
    results: dict[int, object] = {}
    try:
        with waiting():  # only waits for the tasks: Ctrl-C / SIGTERM ends the wait at once, the tasks at a batch
            for fut in as_completed([*group_futures, *eval_futures]):
                results[id(fut)] = fut.result()
                if id(fut) in is_eval:
                    for record in results[id(fut)]:
                        progress.evaluated(record["run"], record)
                else:
                    progress.trained(results[id(fut)])
    finally:
        progress.close()
    trained = [record for f in group_futures for record in results[id(f)]]
    evaluated = [record for f in eval_futures for record in results[id(f)]]
    return trained, evaluated, len(cells) - len(train_futures), len(groups)


@flow(name="grid", flow_run_name=lambda: grid_run_name(flow_run.parameters["cfg"]))
def grid_flow(cfg: dict) -> dict:
    """Run (or resume) one ablation grid; returns counts, failures and where the results table is.

    With ``max_store_gb`` the grid's layers run in groups that fit the disk (extract, train and evaluate the group's
    cells, evict its features); without it there is one group."""
    with own_tags():  # the flow run has the grid's tags; each task run only its own
        return _grid(GridConfig.from_dict(cfg))


def _extract_tagged(cfg) -> dict:
    """One backbone's (sharded) extraction whose task runs carry that extraction's tags, not the grid's."""
    with prefect_tags(*extract_tags(cfg.to_json())):
        return extract_sharded(cfg)


def _grid(g: GridConfig) -> dict:
    log = run_logger()
    cells = start_grid(g, log)
    if g.task_runner != "threads":  # a compute node that lacks a mount fails here, in one line, before any work
        warning = loopback_api_warning(g.task_runner)
        if warning:
            log.warning(warning)
        check_worker_paths.submit(worker_paths(g)).result()
    groups = layer_groups(g)
    outcome = GridOutcome(cells=len(cells), groups=len(groups))
    budgeted, checked = g.max_store_gb is not None, False
    for group in groups:
        group_cells = cells_of(cells, group.sources)
        if budgeted and grid_cells.all_finished(group_cells):  # a finished group needs neither features nor work
            outcome.skipped += len(group_cells)
        else:
            if budgeted:  # written before extraction starts, so a resumed run still knows what it made
                record_created_layers(g, group.extraction_jobs())
            outcome.extracted += [_extract_tagged(c) for c in extraction_configs(g, group.extraction_jobs())]
            if not checked:  # after the first extraction (it registers the dataset), before any run directory
                check_subsets(g)
                write_index(g.out, [c.train for c in cells])
                checked = True
            outcome.add_cells(*_run_cells(group_cells, g.max_workers, g.options.progress))
        if budgeted and not g.keep_features:
            outcome.evicted += evict_features(g, group.evict_after)
    if g.baselines:
        baselines_task(g)
    path, table = write_grid_results(g, cells)
    _publish(table, grid_artifact_key(g.to_json()))
    log.info(outcome.done_line(path))
    return outcome.as_dict(path, len(table))


def _publish(table, key: str) -> None:
    """The IoU summary as a Prefect artifact (visible in the UI when a server is configured), keyed by grid."""
    from prefect.artifacts import create_markdown_artifact

    markdown = iou_markdown(table)
    if markdown is not None:
        create_markdown_artifact(key=key, markdown=markdown,
                                 description="mean IoU (%) per decoder × layer × test set, averaged over train sets")


def run_grid(cfg: dict) -> dict:
    """Entry point used by the CLI and the demo: picks the task runner the config asks for."""
    g = GridConfig.from_dict(cfg)
    runner = task_runner(g.task_runner, g.max_workers, g.dask_address, g.cluster, g.out)
    return run_flow(grid_flow, cfg, name=grid_run_name(cfg), tags=grid_tags(cfg), task_runner=runner)


@flow(name="grid-from-config", flow_run_name=lambda: f"grid-from-{Path(flow_run.parameters['config']).stem}")
def grid_from_config(config: str, overrides: dict | None = None) -> dict:
    """The deployable grid: reads the TOML at run time (edit the file, the next scheduled run follows it) and runs
    the grid as a named, tagged subflow on the task runner the file asks for. Entry point of ``prefect.yaml`` and
    ``examples/serve_grid.py``."""
    cfg = GridConfig.from_toml(config, **(overrides or {})).to_json()
    run_logger().info("grid config %s: %s", config, grid_run_name(cfg))
    return run_grid(cfg)
