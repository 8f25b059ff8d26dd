"""Prefect flows ``train`` and ``evaluate``: thin wrappers over :mod:`pipeline.training` / :mod:`pipeline.evaluation`."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from pipeline.evaluation import EvalConfig, evaluate
from pipeline.training import TrainConfig, train_heads


def _train_cfg(d: dict) -> TrainConfig:
    return TrainConfig(**dict(d, train_subsets=tuple(d["train_subsets"])))


def _eval_cfg(d: dict) -> EvalConfig:
    extra = {"metrics": tuple(d["metrics"])} if d.get("metrics") else {}
    return EvalConfig(**dict(d, test_subsets=tuple(d["test_subsets"]), **extra))


@task(name="train-heads", cache_policy=NONE)
def train_task(cfgs: list[dict]) -> list[dict]:
    return train_heads([_train_cfg(c) for c in cfgs])


@task(name="evaluate-checkpoint", cache_policy=NONE)
def evaluate_task(cfg: dict) -> list[dict]:
    return evaluate(_eval_cfg(cfg)).to_dict(orient="records")


@flow(name="train")
def train_flow(cfgs: list[dict]) -> list[dict]:
    """Train one decoder, or several heads together from one read of each batch."""
    return train_task(cfgs)


@flow(name="evaluate")
def evaluate_flow(cfg: dict) -> list[dict]:
    return evaluate_task(cfg)
