"""Prefect flow ``evaluate``: a thin wrapper over :func:`pipeline.runs.evaluation.evaluate`."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from pipeline.runs.evaluation import EvalConfig, evaluate


def eval_config_from_dict(d: dict) -> EvalConfig:
    return EvalConfig.from_json(d)


@task(name="evaluate-checkpoint", cache_policy=NONE)
def evaluate_task(cfg: dict) -> list[dict]:
    return evaluate(eval_config_from_dict(cfg)).to_dict(orient="records")


@flow(name="evaluate")
def evaluate_flow(cfg: dict) -> list[dict]:
    """Evaluate one trained decoder on test subsets of a cached dataset."""
    return evaluate_task(cfg)
