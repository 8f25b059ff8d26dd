"""Prefect flow ``train``: a thin wrapper over :func:`pipeline.runs.training.train_heads`."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE

from pipeline.runs.training import TrainConfig, train_heads


def train_config_from_dict(d: dict) -> TrainConfig:
    return TrainConfig.from_json(d)


@task(name="train-heads", cache_policy=NONE)
def train_task(cfgs: list[dict]) -> list[dict]:
    return train_heads([train_config_from_dict(c) for c in cfgs])


@flow(name="train")
def train_flow(cfgs: list[dict]) -> list[dict]:
    """Train one decoder, or several heads together from one read of each batch."""
    return train_task(cfgs)
