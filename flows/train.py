"""Prefect flow ``train``: a thin wrapper over :func:`declip.pipeline.train.training.train_heads`."""
from __future__ import annotations

from prefect import flow, task
from prefect.cache_policies import NONE
from prefect.runtime import flow_run

from declip.flows.runtime import run_flow, run_logger
from declip.pipeline.grid.run_names import train_run_name, train_tags
from declip.pipeline.train.training import TrainConfig, train_heads


@task(name="train-heads", cache_policy=NONE)
def train_task(cfgs: list[TrainConfig]) -> list[dict]:
    """Train one decoder, or several heads from one read of each batch; progress goes to the run's log."""
    log = run_logger()
    log.info("training %d head(s) on %s: %s", len(cfgs), ",".join(cfgs[0].train_sets),
             "; ".join(f"{c.decoder} on {c.source}" for c in cfgs))
    results = train_heads(cfgs, log)  # one line per epoch in the run log
    for r in results:
        log.info("%s on %s: best validation %.3f at epoch %s of %s -> %s/best", r["decoder"], r["source"],
                 r["best_val"], r["best_epoch"], r["epochs"], r["out"])
    return results


@flow(name="train", flow_run_name=lambda: train_run_name(flow_run.parameters["cfgs"]))
def train_flow(cfgs: list[dict]) -> list[dict]:
    """Train one decoder, or several heads together from one read of each batch (``cfgs``: TrainConfig JSON, as the
    UI shows the flow's parameters)."""
    return train_task([TrainConfig.from_json(c) for c in cfgs])


def run_train(cfgs: list[dict]) -> list[dict]:
    """The training flow, tagged with its backbones, layers, decoders and dataset."""
    return run_flow(train_flow, cfgs, name=train_run_name(cfgs), tags=train_tags(cfgs))
