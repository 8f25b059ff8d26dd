"""declip on the single-node SLURM cluster through task_runner = "slurm": a small grid whose extraction is sharded
over two worker jobs and whose cells train and evaluate on the workers equals the thread runner's; a worker job
cancelled with scancel in the middle of an extraction is replaced and the store ends byte-identical to one process.
The flow's results say where each task ran; SLURM's own logs and squeue are the oracles for the jobs."""
from __future__ import annotations

import os
import subprocess
import threading
import time

import pandas as pd
import pytest

from declip.flows import extract as flows_extract
from tests.cluster.services import slurm_cluster_table, squeue_job_ids
from tests.fixtures import extract_config, grid_json, store_bytes

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.flow]
pytest.importorskip("dask_jobqueue")

WAIT_S = 300  # jobs queue behind other sessions' jobs on a shared machine


@pytest.fixture
def fan_out_on_two_workers(monkeypatch):
    """A barrier, not a sleep: block ranges are handed out only once both worker jobs have registered, so the
    extraction is spread over two jobs even when one of them started late."""
    real = flows_extract.shard_ranges

    def after_two_workers(blocks, shards):
        from prefect.context import FlowRunContext
        from prefect_dask import DaskTaskRunner

        runner = FlowRunContext.get().task_runner
        if isinstance(runner, DaskTaskRunner):  # the thread runner's grid, run beside it, has no workers to wait for
            runner.client.wait_for_workers(2, timeout=WAIT_S)
        return real(blocks, shards)

    monkeypatch.setattr(flows_extract, "shard_ranges", after_two_workers)


def _values(out) -> pd.Series:
    table = pd.read_parquet(out / "results.parquet")
    return table.set_index(["decoder", "layer", "train_set", "test_set", "split", "metric"])["value"].sort_index()


def _job_logs(log_dir, job_name: str) -> set[str]:
    """Job ids SLURM ran under ``job_name``, from the .err files dask-jobqueue names ``<job name>-<job id>``."""
    return {p.stem.rsplit("-", 1)[1] for p in log_dir.glob(f"{job_name}-*.err")}


def test_grid_on_slurm_jobs_equals_threads(slurm, slurm_job_name, tiny_manifest, tmp_path, prefect_harness,
                                           fan_out_on_two_workers):
    from declip.flows.grid import run_grid

    def cfg(name, **kw):
        return grid_json(tmp_path / name / "s.zarr", tmp_path / name / "g", manifest=str(tiny_manifest),
                         layers=("layer0", "layer1"), decoders=("linear",), test_sets=("tint", "bright"),
                         extract_shards=4, extract_batch_size=4, **kw)

    threads = run_grid(cfg("threads", max_workers=max(2, os.cpu_count() or 1)))  # one torch thread per task
    logs = tmp_path / "logs"
    result = run_grid(cfg("slurm", task_runner="slurm", cluster=slurm_cluster_table(slurm, logs, slurm_job_name)))
    assert result["failed"] == [] and result["trained"] == threads["trained"] == 2
    assert store_bytes(tmp_path / "slurm" / "s.zarr") == store_bytes(tmp_path / "threads" / "s.zarr")
    pd.testing.assert_series_equal(_values(tmp_path / "slurm" / "g"), _values(tmp_path / "threads" / "g"),
                                   check_exact=True)

    where = pd.DataFrame(result["where"])
    assert set(where["task"]) == {"extract", "train", "evaluate"}
    assert where["slurm_job_id"].notna().all()  # every task ran inside a SLURM job ...
    ran = set(where["slurm_job_id"])
    assert ran <= _job_logs(logs, slurm_job_name)  # ... of this grid's (SLURM wrote their logs)
    assert where.loc[where["task"] == "extract", "slurm_job_id"].nunique() == 2  # extraction over both jobs
    assert not squeue_job_ids(slurm_job_name, states="PENDING,RUNNING")  # the jobs end with the flow


@pytest.fixture(scope="module")
def slow_single(tiny_manifest, tmp_path_factory):
    """A one-process extraction slow enough to be interrupted (ViT-B/16 to its sixth block, one image per block)."""
    from declip.pipeline.extract.extraction import run_extraction

    path = tmp_path_factory.mktemp("single") / "s.zarr"
    run_extraction(_slow(tiny_manifest, path))
    return store_bytes(path)


def _slow(manifest, store, **kw):
    return extract_config(manifest, store, backbone="ViT-B-16@random-0", layers="layer5", batch_size=1, **kw)


def test_worker_job_cancelled_mid_extraction_is_replaced_and_the_store_is_byte_identical(
        slurm, slurm_job_name, tiny_manifest, tmp_path, prefect_harness, fan_out_on_two_workers, slow_single):
    import zarr

    from declip.flows.extract import run_extract
    from declip.pipeline.grid.cluster import ClusterConfig

    store = tmp_path / "s.zarr"
    seen: set[str] = set()
    cancelled: list[str] = []
    stop = threading.Event()

    def cancel_one_job_mid_way():
        done_path = store / "features" / "ViT-B-16@random-0" / "layer5" / "dolos-celebahq" / "done"
        while not stop.is_set():
            seen.update(squeue_job_ids(slurm_job_name, states="PENDING,RUNNING"))
            if not cancelled and done_path.exists():
                done = zarr.open_array(str(done_path), mode="r")[:]
                running = sorted(squeue_job_ids(slurm_job_name))
                if 4 <= done.sum() < len(done) // 2 and len(running) == 2:  # both jobs encoding, half left
                    subprocess.run(["scancel", running[0]], check=True, timeout=60)
                    cancelled.extend(running)  # the victim, then the job that survives it
            time.sleep(0.1)

    watcher = threading.Thread(target=cancel_one_job_mid_way, daemon=True)
    watcher.start()
    table = slurm_cluster_table(slurm, tmp_path / "logs", slurm_job_name)
    try:
        [stats] = run_extract(_slow(tiny_manifest, store, shards=2, device="auto").to_json(), runner="slurm",
                              cluster=ClusterConfig.from_json(table), out=str(tmp_path))
    finally:
        stop.set()
        watcher.join(timeout=60)
    assert cancelled, "the extraction ended before a job could be cancelled mid-way"
    victim, survivor = cancelled
    assert store_bytes(store) == slow_single
    assert stats["blocks_run"] <= stats["blocks_total"] == 60  # blocks the victim finished are not redone
    finished_in = {s["where"]["slurm_job_id"] for s in stats["shards"]}
    assert victim not in finished_in  # its block range was rerun elsewhere and completed
    assert seen - {victim, survivor}, (victim, survivor, seen)  # adaptive scaling submitted a replacement job
