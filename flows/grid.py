"""Prefect flow ``grid``: extract what is missing (one pass per backbone), train the cells on a bounded pool, evaluate
every trained cell on every test set, add the baselines, and publish the results table.

The store and the run directories decide what is done, not Prefect's cache: a re-run skips finished cells, and a
failing cell is recorded in its directory (``failed.json``) and in the flow's return value without stopping others.
"""
from __future__ import annotations

import json
import os
import traceback
from dataclasses import replace
from pathlib import Path

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run, task_run

from declip.flows.extract import extract_backbone
from declip.flows.runtime import run_flow, run_logger, task_runner
from declip.pipeline.extract.extraction import ExtractConfig
from declip.pipeline.grid.run_index import write_index
from declip.pipeline.grid.run_names import cell_name, grid_run_name, grid_tags, source_parts, tags


def code_version() -> str:
    import importlib.metadata as md
    import subprocess

    version = md.version("declip")
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{version}+{sha}" if sha else version


def train_cell(cfg: dict) -> dict:
    """Train one cell; a failure is recorded in its directory (``failed.json``) and returned, never raised."""
    from declip.pipeline.train.training import TrainConfig, train

    out = Path(cfg["out"])
    log = run_logger()
    try:
        summary = train(TrainConfig.from_json(cfg))
        (out / "failed.json").unlink(missing_ok=True)
        log.info("trained %s: best validation %.3f at epoch %s (runs/%s)", cfg["decoder"],
                 summary["best_val"], summary["best_epoch"], out.name)
        return {"status": "ok", "run": out.name, **summary}
    except Exception as exc:  # noqa: BLE001 - one broken cell must not stop the grid
        log.warning("cell %s (%s %s) failed: %s: %s", out.name, cfg["decoder"], cfg["source"],
                    type(exc).__name__, exc)
        out.mkdir(parents=True, exist_ok=True)
        record = {"status": "failed", "run": out.name, "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(), "config": cfg}
        (out / "failed.json").write_text(json.dumps(record, indent=2, default=str))
        return record


@task(name="train-cells", cache_policy=NONE)
def train_group(cfgs: list[dict]) -> list[dict]:
    """Train cells sharing a backbone, train set and seed as one multi-head run (each batch read once for all of
    them); if that fails, each alone (resuming from its last finished epoch), so a failure stays with its cell."""
    from declip.pipeline.train.training import TrainConfig, train_heads

    log = run_logger()
    if len(cfgs) > 1:
        try:
            summaries = train_heads([TrainConfig.from_json(c) for c in cfgs])
        except Exception as exc:  # noqa: BLE001 - retried cell by cell below
            log.warning("multi-head run of %d cells failed (%s: %s); training them one by one", len(cfgs),
                        type(exc).__name__, exc)
        else:
            records = []
            for c, summary in zip(cfgs, summaries):
                out = Path(c["out"])
                (out / "failed.json").unlink(missing_ok=True)
                log.info("trained %s on %s: best validation %.3f at epoch %s (runs/%s)", c["decoder"], c["source"],
                         summary["best_val"], summary["best_epoch"], out.name)
                records.append({"status": "ok", "run": out.name, **summary})
            return records
    return [train_cell(c) for c in cfgs]


@task(name="evaluate-cell", cache_policy=NONE)
def evaluate_cell(cfg: dict, trained: list[dict] | None, run: str) -> dict:
    from declip.flows.evaluate import eval_config_from_dict
    from declip.pipeline.evaluate.evaluation import evaluate

    mine = next((t for t in trained or [] if t.get("run") == run), None)
    if trained is not None and (mine is None or mine.get("status") != "ok"):
        return {"status": "skipped", "out": cfg["out"], "reason": "training failed"}
    try:
        table = evaluate(eval_config_from_dict(cfg))
        iou = table.loc[table["metric"] == "iou", "value"]
        if len(iou):
            run_logger().info("evaluated %s: IoU %.2f", task_run.name or Path(cfg["out"]).parent.name, float(iou.iloc[0]))
        return {"status": "ok", "out": cfg["out"]}
    except Exception as exc:  # noqa: BLE001
        run_logger().warning("evaluation %s failed: %s: %s", cfg["out"], type(exc).__name__, exc)
        return {"status": "failed", "out": cfg["out"], "error": f"{type(exc).__name__}: {exc}"}


@task(name="baselines", cache_policy=NONE)
def baselines_task(cfg: dict) -> str:
    """Baseline rows for every (train set, test set, split) of the grid that ``baselines.parquet`` lacks."""
    import pandas as pd

    from declip.pipeline.evaluate.baselines import baseline_rows

    out = Path(cfg["out"]) / "baselines.parquet"
    old = pd.read_parquet(out) if out.exists() else pd.DataFrame(columns=["train_set", "test_set", "split", "decoder"])
    have = set(zip(old["train_set"], old["test_set"], old["split"], old["decoder"]))
    frames = [old] if len(old) else []
    for split in cfg.get("eval_splits") or ("test",):
        for train_set in cfg["train_sets"]:
            missing = [t for t in cfg["test_sets"] if (train_set, t, split, "baseline:all-fake") not in have]
            if missing:
                new = baseline_rows(cfg["store"], cfg["dataset"], [train_set], missing, cfg.get("metrics"), split)
                stale = (old["train_set"] == train_set) & old["test_set"].isin(missing) & (old["split"] == split)
                frames = [f[~stale] if f is old else f for f in frames] + [new]
    if len(frames) > 1 or not out.exists():
        tmp = out.with_suffix(".partial")
        pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
        tmp.replace(out)
    return str(out)


def _extract_missing(g, jobs: dict[str, list[str]]) -> list[dict]:
    """One extraction pass per backbone for ``jobs`` ({backbone: layers}); a no-op for what is cached."""
    if not g.manifest:
        return []
    from declip.pipeline.grid.config import resolved_test_views, resolved_train_views

    base = ExtractConfig(manifest=g.manifest, store=g.store, backbone="", dataset=g.dataset,
                         batch_size=g.extract_batch_size, device=g.options.device, storage_dtype=g.storage_dtype,
                         progress=False)
    # clean: every row; a test view: the test split only; a training view: the train split only
    views = [("clean", ())] + [(v, ("test",)) for v in resolved_test_views(g)]
    views += [(v, ("train",)) for v in resolved_train_views(g) if v != "clean"]
    return [extract_backbone(replace(base, backbone=b, layers=",".join(sorted(set(layers))), view=v,
                                     splits=s).to_json())
            for v, s in views for b, layers in jobs.items()]


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


@task(name="evict-features", cache_policy=NONE)
def evict_features(store: str, dataset: str, layers: list[tuple[str, str]]) -> list[str]:
    """Delete a finished group's layers from the store (they are re-extracted if a later run needs them)."""
    from declip.store.feature_store import FeatureStore

    fs = FeatureStore(store)
    gone = []
    for backbone, layer in layers:
        if fs.has_layer(backbone, layer, dataset) or fs.layer_path(backbone, layer, dataset) in fs.root:
            fs.delete_layer(backbone, layer, dataset)
            gone.append(f"{backbone}/{layer}")
    return gone


#: Layers this grid extracted itself (``<out>/created_layers.json``); only these are evicted under ``max_store_gb``.
CREATED_LAYERS = "created_layers.json"


def _created_path(g) -> Path:
    return Path(g.out) / CREATED_LAYERS


def created_layers(g) -> set[tuple[str, str]]:
    """(backbone, layer) pairs the grid at ``g.out`` created in ``g.store`` / ``g.dataset`` (across resumed runs)."""
    path = _created_path(g)
    if not path.exists():
        return set()
    record = json.loads(path.read_text())
    return {(e["backbone"], e["layer"]) for e in record.get("layers", [])
            if e.get("store") == g.store and e.get("dataset") == g.dataset}


def record_created_layers(g, jobs: dict[str, list[str]]) -> set[tuple[str, str]]:
    """Before extracting ``jobs``: add the layers the store does not hold yet to the grid's record; returns the record.

    Why before: a run killed mid-extraction leaves a partial layer the grid made; the resumed run must still know
    it is the grid's to evict. Layers already in the store (complete or not) when the grid first needed them were put
    there by someone else and are never evicted.
    """
    from declip.store.feature_store import FeatureStore

    mine = created_layers(g)
    if not g.manifest or not jobs:
        return mine
    fs = FeatureStore(g.store)
    new = {(b, layer) for b, layers in jobs.items() for layer in layers
           if (b, layer) not in mine and fs.layer_path(b, layer, g.dataset) not in fs.root}
    if new:
        path = _created_path(g)
        old = json.loads(path.read_text()).get("layers", []) if path.exists() else []
        entries = old + [{"store": g.store, "dataset": g.dataset, "backbone": b, "layer": layer}
                         for b, layer in sorted(new)]
        tmp = path.with_suffix(".partial")
        tmp.write_text(json.dumps({"layers": entries}, indent=2))
        tmp.replace(path)
    return mine | new


def _run_cells(cells, parallel: int, show: bool = True) -> tuple[list[dict], list[dict], int, int]:
    """Train the unfinished cells (grouped into multi-head runs) and evaluate what is missing; returns
    (trained, evaluated, cells skipped, training runs)."""
    from declip.pipeline.grid.plan import cell_finished, eval_finished, training_groups

    todo = [c for c in cells if not cell_finished(c)]
    groups = training_groups(todo, parallel=parallel)
    group_futures = [train_group.with_options(**_group_options(group)).submit([c.train.to_json() for c in group])
                     for group in groups]
    train_futures = {c.run_id: f for group, f in zip(groups, group_futures) for c in group}
    eval_futures = []
    for cell in cells:
        upstream = train_futures.get(cell.run_id)
        opts = _cell_options(cell)
        for ev in cell.evals:
            if upstream is not None or not eval_finished(ev):
                name = f"{opts['task_run_name']}-on-{ev.test_subsets[0]}" + ("" if ev.split == "test" else f"-{ev.split}") \
                    + ("" if ev.view == "clean" else f"-{ev.view}")
                eval_futures.append((cell.run_id, evaluate_cell.with_options(task_run_name=name, tags=opts["tags"])
                                     .submit(ev.to_json(), upstream, cell.run_id)))
    trained, evaluated = _wait_with_progress(cells, groups, group_futures, eval_futures, show)
    return trained, evaluated, len(cells) - len(train_futures), len(groups)


def _group_finished(cells) -> bool:
    from declip.pipeline.grid.plan import cell_finished, eval_finished

    return all(cell_finished(c) and all(eval_finished(ev) for ev in c.evals) for c in cells)


@flow(name="grid", flow_run_name=lambda: grid_run_name(flow_run.parameters["cfg"]))
def grid_flow(cfg: dict) -> dict:
    """Run (or resume) one ablation grid; returns counts, failures and where the results table is.

    With ``max_store_gb`` the grid's layers run in groups that fit the disk (extract, train and evaluate the group's
    cells, evict its features); without it there is one group."""
    from declip.pipeline.grid.config import GridConfig
    from declip.pipeline.grid.plan import cell_finished, cells_of, check_subsets, layer_groups, plan_cells
    from declip.pipeline.grid.results import collect_results, write_results

    g = GridConfig.from_dict(cfg)
    Path(g.out).mkdir(parents=True, exist_ok=True)
    (Path(g.out) / "grid.json").write_text(json.dumps(g.to_json(), indent=2))
    if g.task_runner == "threads" and g.options.device == "cpu":
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, g.max_workers)))
    log = run_logger()
    cells = plan_cells(g)
    todo = [c for c in cells if not cell_finished(c)]
    log.info("grid %s: %d cells (%d to train, %d already done), %d test sets each; run index in %s",
             g.out, len(cells), len(todo), len(cells) - len(todo), len(g.test_sets), Path(g.out) / "runs" / "index.csv")
    extracted, trained, evaluated, skipped, runs, evicted = [], [], [], 0, 0, []
    groups = layer_groups(g)
    budgeted = g.max_store_gb is not None
    checked = False
    for group in groups:
        group_cells = cells_of(cells, group.sources)
        if not (budgeted and _group_finished(group_cells)):  # a finished group needs neither features nor work
            if budgeted:  # written before extraction starts, so a resumed run still knows what it made
                record_created_layers(g, group.extraction_jobs())
            extracted += _extract_missing(g, group.extraction_jobs())
            if not checked:  # after the first extraction (it registers the dataset), before any run directory
                check_subsets(g)
                write_index(g.out, cells)
                checked = True
            t, e, k, r = _run_cells(group_cells, g.max_workers, g.options.progress)
            trained, evaluated, skipped, runs = trained + t, evaluated + e, skipped + k, runs + r
        else:
            skipped += len(group_cells)
        if budgeted and not g.keep_features:
            created = created_layers(g)  # also for a finished group skipped on resume
            ours = [k for k in group.evict_after if tuple(k) in created]
            kept = [f"{b}/{layer}" for b, layer in group.evict_after if (b, layer) not in created]  # someone else's
            if kept:
                log.info("keeping %s: in the store before this grid needed them (only layers it extracted are "
                         "evicted)", ", ".join(kept))
            evicted += evict_features(g.store, g.dataset, ours)
    if g.baselines:
        baselines_task(g.to_json())
    table = collect_results(g, cells, code_version())
    path = write_results(table, Path(g.out))
    write_index(g.out, cells)
    table = pd.read_parquet(path)  # merged with rows of earlier configs in the same folder
    _publish(table)
    failed = [t for t in trained if t["status"] != "ok"] + [e for e in evaluated if e["status"] == "failed"]
    log.info("grid done: %d trained, %d evaluations, %d failed; results in %s", sum(t["status"] == "ok" for t in trained),
             sum(e["status"] == "ok" for e in evaluated), len(failed), path)
    return {
        "cells": len(cells), "trained": sum(t["status"] == "ok" for t in trained), "training_runs": runs,
        "skipped_cells": skipped, "evaluated": sum(e["status"] == "ok" for e in evaluated),
        "groups": len(groups), "evicted": evicted,
        "failed": [{k: f.get(k) for k in ("run", "out", "error")} for f in failed],
        "extracted": [{k: e[k] for k in ("backbone", "dataset", "blocks_run", "images_encoded")} for e in extracted],
        "results": str(path), "rows": len(table),
    }


def _wait_with_progress(cells, groups: list, group_futures: list, eval_futures: list[tuple[str, object]],
                        show: bool) -> tuple[list[dict], list[dict]]:
    """Collect every task's result as it finishes, with a bar over the cells: a cell counts once its training run
    finished (or, already trained, once its evaluations did), so the ETA follows training, the long part; the
    postfix counts trained / evaluated / skipped / failed."""
    from prefect.futures import as_completed
    from tqdm.auto import tqdm

    group_of = {id(f): group for group, f in zip(groups, group_futures)}
    in_training = {c.run_id for group in groups for c in group}
    eval_owner = {id(f): run for run, f in eval_futures}
    pending: dict[str, int] = {}
    for run, _ in eval_futures:
        if run not in in_training:
            pending[run] = pending.get(run, 0) + 1
    counts = {"trained": 0, "evaluated": 0, "skipped": len(cells) - len(in_training), "failed": 0}
    bar = tqdm(total=len(cells), initial=len(cells) - len(in_training) - len(pending), desc="grid cells",
               unit="cell", disable=not show)
    bar.set_postfix(counts)
    results: dict[int, object] = {}
    for fut in as_completed([*group_futures, *(f for _, f in eval_futures)]):
        result = fut.result()
        results[id(fut)] = result
        if id(fut) in group_of:
            for record in result:
                counts["trained" if record.get("status") == "ok" else "failed"] += 1
            bar.update(len(group_of[id(fut)]))
        else:
            if result.get("status") == "ok":
                counts["evaluated"] += 1
            elif result.get("status") == "failed":
                counts["failed"] += 1
            run = eval_owner[id(fut)]
            if run in pending:
                pending[run] -= 1
                if pending[run] == 0:
                    bar.update(1)
        bar.set_postfix(counts)
    bar.close()
    trained = [record for f in group_futures for record in results[id(f)]]
    return trained, [results[id(f)] for _, f in eval_futures]


def _publish(table) -> None:
    """The IoU summary as a Prefect artifact (visible in the UI when a server is configured)."""
    from prefect.artifacts import create_markdown_artifact

    iou = table[(table["metric"] == "iou") & (table["split"] == "test") & (table["view"] == "clean")]
    if iou.empty:
        return
    pivot = iou.pivot_table(index=["decoder", "layer"], columns="test_set", values="value", aggfunc="mean")
    note = "**backbone weights are random**\n\n" if bool(iou["random_weights"].fillna(False).any()) else ""
    create_markdown_artifact(key="grid-iou", markdown=note + pivot.round(2).to_markdown(),
                             description="mean IoU (%) per decoder × layer × test set, averaged over train sets")


def run_grid(cfg: dict) -> dict:
    """Entry point used by the CLI and the demo: picks the task runner the config asks for."""
    runner = task_runner(cfg.get("task_runner", "threads"), cfg.get("max_workers", 1), cfg.get("dask_address"))
    return run_flow(grid_flow, cfg, name=grid_run_name(cfg), tags=grid_tags(cfg), task_runner=runner)


@flow(name="grid-from-config", flow_run_name=lambda: f"grid-from-{Path(flow_run.parameters['config']).stem}")
def grid_from_config(config: str, overrides: dict | None = None) -> dict:
    """The deployable grid: reads the TOML at run time (edit the file, the next scheduled run follows it) and runs
    the grid as a named, tagged subflow on the task runner the file asks for. Entry point of ``prefect.yaml`` and
    ``examples/serve_grid.py``."""
    from declip.pipeline.grid.config import GridConfig

    cfg = GridConfig.from_toml(config, **(overrides or {})).to_json()
    run_logger().info("grid config %s: %s", config, grid_run_name(cfg))
    return run_grid(cfg)
