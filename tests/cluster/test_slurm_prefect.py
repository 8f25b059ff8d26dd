"""The combination declip's SLURM task runner will use: a Prefect flow whose DaskTaskRunner starts
dask_jobqueue.SLURMCluster (cluster_class/cluster_kwargs/adapt_kwargs) runs its task inside a SLURM job, and the
worker job is gone after the flow."""
from __future__ import annotations

import os
import socket
import time

import pytest

from tests.cluster.services import slurm_cluster_kwargs, squeue_job_ids

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.flow]

pytest.importorskip("dask_jobqueue")
pytest.importorskip("prefect_dask")


def test_prefect_task_runs_on_a_slurm_worker(slurm, slurm_job_name, tmp_path):
    from prefect import flow, task
    from prefect_dask import DaskTaskRunner

    @task
    def where() -> dict:
        return {"job_id": os.environ.get("SLURM_JOB_ID"), "job_name": os.environ.get("SLURM_JOB_NAME"),
                "pid": os.getpid(), "host": socket.gethostname()}

    runner = DaskTaskRunner(cluster_class="dask_jobqueue.SLURMCluster",
                            cluster_kwargs=slurm_cluster_kwargs(slurm, tmp_path, slurm_job_name),
                            adapt_kwargs={"minimum": 1, "maximum": 1})

    @flow(task_runner=runner)
    def one_task_on_slurm() -> dict:
        return where.submit().result()

    seen = one_task_on_slurm()
    assert seen["job_name"] == slurm_job_name
    assert seen["job_id"] is not None and seen["job_id"].isdigit()
    assert seen["pid"] != os.getpid()
    assert "SLURM_JOB_ID" not in os.environ  # the test itself does not run inside a job
    # The worker's own SLURM log names the same job (dask-jobqueue writes <job_name>-<job id>.err).
    assert (tmp_path / f"{slurm_job_name}-{seen['job_id']}.err").exists()
    # The runner closes the cluster with the flow: its job leaves the queue.
    deadline = time.monotonic() + 120
    while squeue_job_ids(slurm_job_name, states="PENDING,RUNNING") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not squeue_job_ids(slurm_job_name, states="PENDING,RUNNING")
