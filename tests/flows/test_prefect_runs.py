"""What a user sees of Prefect: a run named for what it does, tagged, with progress in its logs (the UI), one
start-up line and no INFO chatter in the terminal."""
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import TINY_BACKBONE

from tests.fixtures import REPO  # noqa: E402


async def _run_and_logs(name: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
        assert len(runs) == 1, [r.name for r in runs]
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id])))
        return runs[0], [log.message for log in logs]


@pytest.mark.flow
def test_train_cli_run_is_named_tagged_and_logs_to_prefect(tiny_store, tmp_path, prefect_harness):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_LOGGING_LEVEL"}  # the CLI's own defaults
    env["PREFECT_API_URL"] = prefect_harness  # the run goes where this process reads it back
    run = tmp_path / "seed7"
    proc = subprocess.run(
        [sys.executable, "-m", "declip.cli", "train", "--store", str(tiny_store), "--dataset", "dolos-celebahq",
         "--source", f"{TINY_BACKBONE}/layer2", "--decoders", "linear", "--train-sets", "tint", "--max-epochs", "1",
         "--batch-size", "8", "--seed", "7", "--out", str(run), "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "starting a temporary local Prefect API" in proc.stderr or "reporting to" in proc.stderr
    assert [line for line in proc.stderr.splitlines() if "INFO" in line] == []

    flow_run, messages = asyncio.run(_run_and_logs("train-linear-layer2-tint"))
    assert {"backbone:" + TINY_BACKBONE, "layer:layer2", "decoder:linear", "dataset:dolos-celebahq"} <= set(flow_run.tags)
    assert any(m.startswith("training 1 head(s) on tint") for m in messages), messages
    assert any(m.startswith(f"linear on {TINY_BACKBONE}/layer2: best validation") for m in messages), messages
    assert any(m.startswith("epoch 1/≤1 done: ") for m in messages), messages  # the loop's own line


def test_quiet_dask_keeps_distributed_to_warnings(monkeypatch):
    import logging

    from declip.flows.runtime import quiet_dask

    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED", raising=False)
    logging.getLogger("distributed").setLevel(logging.INFO)
    quiet_dask()
    assert os.environ["DASK_LOGGING__DISTRIBUTED"] == "warning"
    assert logging.getLogger("distributed").level == logging.WARNING


async def _task_runs_and_artifacts(flow_name: str, outs: set[str] | None = None):
    """Flow runs named ``flow_name`` (of these grid ``outs`` only: the harness is shared by the whole session, where
    other tests run grids of the same name), their task runs and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, \
        FlowRunFilterName

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_name])))
        if outs is not None:
            runs = [r for r in runs if str(r.parameters.get("cfg", {}).get("out")) in outs]
        tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [r.id for r in runs]}))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in runs])))
        return runs, tasks, artifacts


@pytest.mark.flow
def test_grid_task_runs_carry_their_own_tags_and_grids_their_own_table(tiny_store, tmp_path, prefect_harness):
    """Issue 19 item 9: grid task runs inherited the grid's tags (the SRM cell was tagged with the ViT layers) and
    two grids published their table under one artifact key."""
    from declip.flows.grid import run_grid
    from tests.fixtures import grid_json

    for name in ("a", "b"):
        run_grid(grid_json(tiny_store, tmp_path / name, layers=["layer0", "layer1"], baselines=False))
    runs, tasks, artifacts = asyncio.run(_task_runs_and_artifacts("grid-dolos-celebahq-test-vit-tiny-2x1",
                                                                  {str(tmp_path / "a"), str(tmp_path / "b")}))
    assert len(runs) == 2 and all({"layer:layer0", "layer:layer1"} <= set(r.tags) for r in runs)
    evaluations = [t for t in tasks if "-on-tint" in t.name]
    # one task per training run (both layers' cells train as one run): its cells' (valid, test) evaluations
    assert len(evaluations) == 2 and all(t.name.endswith("+1-more-on-tint-valid+test") for t in evaluations), \
        [t.name for t in evaluations]
    for t in evaluations:
        assert set(t.tags) == {f"backbone:{TINY_BACKBONE}", "layer:layer0", "layer:layer1", "decoder:linear",
                               "dataset:dolos-celebahq"}, (t.name, t.tags)
    keys = {a.key for a in artifacts}
    assert len(keys) == 2 and all(k.startswith("grid-iou-dolos-celebahq-") for k in keys)
