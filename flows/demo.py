"""Prefect flow ``demo``: build the embedded dataset, scan it, run the grid (which extracts once), write the report."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from declip.flows.grid import grid_flow
from declip.flows.runtime import run_flow, run_logger, task_runner
from declip.pipeline.grid.run_names import arch, grid_run_name, grid_tags, slug, tags
from declip.pipeline.grid.demo import DemoConfig, grid_config, layers_for
from declip.pipeline.grid.demo_data import build_demo_dataset, scan_demo_dataset
from declip.pipeline.report.report import write_report


@task(name="build-demo-data", cache_policy=NONE)
def build_data(c: DemoConfig) -> str:
    """The embedded demo dataset under ``c.data_dir`` (same seed, same bytes); the root to scan."""
    return str(build_demo_dataset(c.data_dir, seed=c.seed, size=c.size))


@task(name="scan-manifest", cache_policy=NONE)
def scan(root: str, manifest: str) -> dict:
    """The demo tree scanned into its manifest: dataset name, rows, generators."""
    return scan_demo_dataset(root, manifest)


@task(name="report", cache_policy=NONE)
def report(results: str) -> str:
    """The grid's report page (figures, tables) beside its results table."""
    return str(write_report(results))


def demo_run_name(cfg: dict) -> str:
    return slug(f"demo-{arch(cfg.get('backbone', DemoConfig.backbone))}", 100)


@flow(name="demo", flow_run_name=lambda: demo_run_name(flow_run.parameters["cfg"]))
def demo_flow(cfg: dict) -> dict:
    from declip.features.backbones import load_backbone
    from prefect import tags as prefect_tags

    log = run_logger()
    c = DemoConfig.from_json(cfg)
    log.info("building the demo dataset in %s (%d fakes per generator)", c.data_dir, c.size)
    root = build_data(c)
    scanned = scan(root, str(c.manifest))
    log.info("scanned %d images of dataset %s; generators %s", scanned["rows"], scanned["dataset"],
             ", ".join(scanned["generators"]))
    layers = layers_for(c, load_backbone(c.backbone).num_blocks)
    gcfg = grid_config(c, scanned["dataset"], scanned["generators"], layers)
    runner = task_runner(c.task_runner, c.max_workers)
    with prefect_tags(*grid_tags(gcfg)):
        result = grid_flow.with_options(task_runner=runner, flow_run_name=grid_run_name(gcfg))(gcfg)
    page = report(result["results"])
    log.info("report written to %s", page)
    return {"report": page, "grid": result, "scan": scanned, "out": str(Path(c.out).resolve())}


def run_demo(cfg: dict) -> dict:
    """The demo flow, named for its backbone and tagged with it."""
    backbone = cfg.get("backbone", DemoConfig.backbone)
    return run_flow(demo_flow, cfg, name=demo_run_name(cfg), tags=["demo", *tags(backbones=[backbone])])
