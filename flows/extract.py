"""Prefect flow ``extract``: register the dataset, then cache each backbone's layers in one pass each.

Tasks pass configs and store keys, never tensors; the zarr store (not Prefect's result cache) decides what is done.
"""
from __future__ import annotations

from dataclasses import asdict, replace

from prefect import flow, task
from prefect.cache_policies import NONE

from pipeline.runs.extraction import ExtractConfig, run_extraction


@task(name="extract-backbone", cache_policy=NONE, retries=0)
def extract_backbone(cfg: dict) -> dict:
    stats = run_extraction(ExtractConfig(**cfg))
    return stats.to_dict()


@flow(name="extract", log_prints=False)
def extract_flow(cfg: dict, backbones: list[dict] | None = None) -> list[dict]:
    """``backbones``: optional list of ``{"backbone": KEY, "layers": SPEC}`` (DeCLIP's fused model needs two)."""
    base = ExtractConfig(**cfg)
    jobs = backbones or [{"backbone": base.backbone, "layers": base.layers}]
    return [extract_backbone(asdict(replace(base, **job))) for job in jobs]
