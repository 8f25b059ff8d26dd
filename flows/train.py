"""Prefect flow ``train``: a thin wrapper over :func:`declip.pipeline.train.training.train_heads`."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from declip.flows.runtime import run_flow, run_logger
from declip.pipeline.grid.run_names import train_run_name, train_tags
from declip.pipeline.train.training import TrainConfig, train_heads


def train_config_from_dict(d: dict) -> TrainConfig:
    return TrainConfig.from_json(d)


@task(name="train-heads", cache_policy=NONE)
def train_task(cfgs: list[dict]) -> list[dict]:
    log = run_logger()
    log.info("training %d head(s) on %s: %s", len(cfgs), ",".join(cfgs[0]["train_subsets"]),
             "; ".join(f"{c['decoder']} on {c['source']}" for c in cfgs))
    results = train_heads([train_config_from_dict(c) for c in cfgs])
    for r in results:
        log.info("%s on %s: best validation %.3f at epoch %s of %s -> %s/best", r["decoder"], r["source"],
                 r["best_val"], r["best_epoch"], r["epochs"], r["out"])
    return results


@flow(name="train", flow_run_name=lambda: train_run_name(flow_run.parameters["cfgs"]))
def train_flow(cfgs: list[dict]) -> list[dict]:
    """Train one decoder, or several heads together from one read of each batch."""
    return train_task(cfgs)


def run_train(cfgs: list[dict]) -> list[dict]:
    """The training flow, tagged with its backbones, layers, decoders and dataset."""
    return run_flow(train_flow, cfgs, name=train_run_name(cfgs), tags=train_tags(cfgs))
