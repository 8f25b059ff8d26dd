"""Prefect flow ``extract``: per backbone, a setup task (the only writer of store metadata) and then one task per
block range, on any task runner (a thread pool, a Dask cluster, Dask workers in SLURM jobs).

Tasks pass configs and store keys, never tensors; the zarr store (not Prefect's result cache) decides what is done.
A block-range task owns its blocks (no lock, no metadata writes), asks for one GPU where workers advertise them,
and is retried on failure: the retry re-reads the done flags and resumes where the failed attempt stopped.
"""
from __future__ import annotations

import time
from dataclasses import replace

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from declip.flows.placement import gpu_request, task_device, where, workers_advertise_gpus
from declip.flows.runtime import run_flow, run_logger, task_runner
from declip.pipeline.extract.extraction import ExtractConfig, ExtractionSetup, extract_blocks, prepare_extraction
from declip.pipeline.extract.shards import merge_stats, shard_ranges
from declip.pipeline.grid.run_names import extract_run_name, extract_tags

#: Attempts after the first for a block-range task (a retry resumes from the done flags).
SHARD_RETRIES = 2


@task(name="extract-setup", task_run_name="setup-{cfg.backbone}", cache_policy=NONE)
def extract_setup(cfg: ExtractConfig) -> dict:
    """Register the dataset, cache its masks, create every layer's arrays; the blocks left and where it ran."""
    setup, _ = prepare_extraction(cfg)
    return {"setup": setup.to_json(), "where": where()}


@task(name="extract-blocks", cache_policy=NONE, retries=SHARD_RETRIES, retry_delay_seconds=1)
def extract_shard(cfg: ExtractConfig, setup: dict, blocks: list[int]) -> dict:
    """Encode and write ``blocks`` (those not done yet) on one device of the worker; statistics and where it ran."""
    log = run_logger()
    with task_device(cfg.device) as device:
        log.info("encoding blocks %d-%d of %s %s on %s", blocks[0], blocks[-1], cfg.backbone, cfg.layers, device)
        stats = extract_blocks(replace(cfg, device=device), ExtractionSetup.from_json(setup), blocks).to_dict()
        return dict(stats, blocks=[blocks[0], blocks[-1]], where=where(device))


def extract_sharded(cfg: ExtractConfig) -> dict:
    """One backbone's extraction inside a running flow: the setup, then ``cfg.shards`` block-range tasks on the
    flow's task runner; their statistics merged (``shards``: each task's block range and where it ran)."""
    log = run_logger()
    start = time.perf_counter()
    made = extract_setup.with_options(task_run_name=f"setup-{cfg.backbone}-{cfg.view}").submit(cfg).result()
    setup = ExtractionSetup.from_json(made["setup"])
    ranges = shard_ranges(setup.blocks, cfg.shards)
    log.info("%s -> %s: %d of %d blocks to encode, in %d task(s)", cfg.backbone, setup.dataset, len(setup.blocks),
             setup.blocks_total, len(ranges))
    with gpu_request(workers_advertise_gpus()):
        futures = [extract_shard.with_options(task_run_name=f"extract-{cfg.backbone}-blocks-{r[0]}-{r[-1]}")
                   .submit(cfg, made["setup"], r) for r in ranges]
    shards = [f.result() for f in futures]
    record = dict(setup.to_json(), backbone=cfg.backbone, blocks_total=setup.blocks_total)
    stats = merge_stats(record, shards, time.perf_counter() - start)
    stats["setup_where"] = made["where"]
    log.info("%s -> %s: %d/%d blocks run, %d images encoded (%.1f img/s), %d unreadable", stats["backbone"],
             stats["dataset"], stats["blocks_run"], stats["blocks_total"], stats["images_encoded"],
             stats["images_per_s"], stats["bad_images"])
    return stats


def _name() -> str:
    params = flow_run.parameters
    return extract_run_name(params["cfg"], params.get("backbones"))


@flow(name="extract", flow_run_name=_name, log_prints=False)
def extract_flow(cfg: dict, backbones: list[dict] | None = None) -> list[dict]:
    """``backbones``: optional list of ``{"backbone": KEY, "layers": SPEC}`` (DeCLIP's fused model needs two)."""
    base = ExtractConfig.from_json(cfg)
    jobs = backbones or [{"backbone": base.backbone, "layers": base.layers}]
    return [extract_sharded(replace(base, **job)) for job in jobs]


def run_extract(cfg: dict, backbones: list[dict] | None = None, runner: str = "threads",
                dask_address: str | None = None, cluster=None, out: str = ".") -> list[dict]:
    """The extraction flow, tagged with its backbones, layers and dataset, on the task runner asked for (threads:
    one thread per shard)."""
    shards = int(cfg.get("shards", 1))
    return run_flow(extract_flow, cfg, backbones, name=extract_run_name(cfg, backbones),
                    tags=extract_tags(cfg, backbones),
                    task_runner=task_runner(runner, shards, dask_address, cluster, out))
