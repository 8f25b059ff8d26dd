"""Prefect flow ``extract``: register the dataset, then cache each backbone's layers in one pass each.

Tasks pass configs and store keys, never tensors; the zarr store (not Prefect's result cache) decides what is done.
"""
from __future__ import annotations

from dataclasses import replace

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from declip.flows.runtime import run_flow, run_logger
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.pipeline.grid.run_names import extract_run_name, extract_tags


@task(name="extract-backbone", task_run_name="extract-{cfg.backbone}", cache_policy=NONE, retries=0)
def extract_backbone(cfg: ExtractConfig) -> dict:
    """One backbone's layers in one pass (under one view, for the splits asked for); the extraction's statistics."""
    log = run_logger()
    log.info("encoding %s layers %s of %s into %s", cfg.backbone, cfg.layers, cfg.manifest, cfg.store)
    stats = run_extraction(cfg).to_dict()
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
    return [extract_backbone(replace(base, **job)) for job in jobs]


def run_extract(cfg: dict, backbones: list[dict] | None = None) -> list[dict]:
    """The extraction flow, tagged with its backbones, layers and dataset."""
    return run_flow(extract_flow, cfg, backbones, name=extract_run_name(cfg, backbones),
                    tags=extract_tags(cfg, backbones))
