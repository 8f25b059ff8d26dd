"""Prefect flow ``evaluate``: a thin wrapper over :func:`declip.pipeline.evaluate.evaluation.evaluate`."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from declip.flows.runtime import run_flow, run_logger
from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate
from declip.pipeline.grid.run_names import evaluate_run_name, evaluate_tags


@task(name="evaluate-checkpoint", cache_policy=NONE)
def evaluate_task(cfg: EvalConfig) -> list[dict]:
    """Evaluate one checkpoint on its test subsets; the summary rows (IoU per test set in the run's log)."""
    log = run_logger()
    log.info("evaluating %s on %s", cfg.checkpoint, ",".join(cfg.test_subsets))
    rows = evaluate(cfg).to_dict(orient="records")
    for r in rows:
        if r.get("metric") == "iou":
            log.info("%s: IoU %.2f over %s images", r.get("test_set"), r["value"], r.get("n_images"))
    return rows


@flow(name="evaluate", flow_run_name=lambda: evaluate_run_name(flow_run.parameters["cfg"]))
def evaluate_flow(cfg: dict) -> list[dict]:
    """Evaluate one trained decoder on test subsets of a cached dataset (``cfg``: EvalConfig JSON)."""
    return evaluate_task(EvalConfig.from_json(cfg))


def run_evaluate(cfg: dict) -> list[dict]:
    """The evaluation flow, tagged with its dataset (and source when given)."""
    return run_flow(evaluate_flow, cfg, name=evaluate_run_name(cfg), tags=evaluate_tags(cfg))
