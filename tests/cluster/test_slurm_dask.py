"""dask-jobqueue's SLURMCluster on the single-node cluster: two one-core worker jobs, tasks on both, and a worker
job cancelled with scancel is replaced by adaptive scaling while its task is rerun elsewhere and completes."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.cluster.services import slurm_cluster_kwargs, squeue_job_ids

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

dask_jobqueue = pytest.importorskip("dask_jobqueue")
distributed = pytest.importorskip("distributed")

WAIT_S = 300  # generous: jobs queue behind other sessions' jobs on a shared machine


def _slurm_job_id() -> str:
    return os.environ["SLURM_JOB_ID"]


def _wait_until(condition, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _worker_jobs(client) -> dict[str, str]:
    """{worker address: SLURM_JOB_ID seen inside that worker}; {} while a worker is coming or going."""
    try:
        return client.run(_slurm_job_id, on_error="raise")
    except Exception:  # a worker that left between listing and running
        return {}


@pytest.fixture(scope="module")
def two_job_cluster(slurm, tmp_path_factory):
    import dask

    if slurm.cpus < 2:
        pytest.skip(f"the node has {slurm.cpus} CPU; two one-core worker jobs need 2")
    name = f"declip-dask-{os.getpid()}"
    log_dir = tmp_path_factory.mktemp("slurm-dask-logs")
    # lost-worker-timeout: how long SpecCluster waits before it forgets a vanished worker's job and may replace it.
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "2s"}):
        cluster = dask_jobqueue.SLURMCluster(**slurm_cluster_kwargs(slurm, log_dir, name))
        cluster.adapt(minimum_jobs=2, maximum_jobs=2, interval="1s")
        client = distributed.Client(cluster)
        try:
            client.wait_for_workers(2, timeout=WAIT_S)
            yield name, cluster, client
        finally:
            client.close()
            cluster.close()
            subprocess.run(["scancel", "--me", "-n", name], capture_output=True, timeout=60)


def test_tasks_run_on_two_workers_in_different_slurm_jobs(two_job_cluster):
    name, _cluster, client = two_job_cluster
    workers = list(client.scheduler_info()["workers"])
    assert len(workers) == 2
    futures = {addr: client.submit(_slurm_job_id, workers=[addr], allow_other_workers=False, pure=False)
               for addr in workers}
    seen = {addr: fut.result(timeout=WAIT_S) for addr, fut in futures.items()}
    assert len(set(seen.values())) == 2, seen
    # The oracle is SLURM itself: exactly these two jobs are running under the cluster's job name.
    assert set(seen.values()) == squeue_job_ids(name)


def _record_and_hang_in(victim: str, marker_dir: str) -> str:
    """Marks where it started; in the victim's job it hangs (until scancel kills that job), elsewhere it returns."""
    import pathlib

    job = os.environ["SLURM_JOB_ID"]
    (pathlib.Path(marker_dir) / f"started-in-{job}").touch()
    if job == victim:
        time.sleep(3600)
    return job


def test_cancelled_worker_job_is_replaced_and_its_task_completes_elsewhere(two_job_cluster, tmp_path):
    name, _cluster, client = two_job_cluster
    before = _wait_until(lambda: (jobs := _worker_jobs(client)) and len(jobs) == 2 and jobs, "two workers")
    victim_addr, victim = min(before.items())
    survivor = next(job for job in before.values() if job != victim)

    future = client.submit(_record_and_hang_in, victim, str(tmp_path), workers=[victim_addr],
                           allow_other_workers=True, pure=False)
    # Barrier, not a sleep: cancel only once the task is known to be running inside the victim's job.
    _wait_until(lambda: (tmp_path / f"started-in-{victim}").exists(), "the task to start in the victim job")
    subprocess.run(["scancel", victim], check=True, timeout=60)

    # The scheduler reschedules the lost task on a live worker, where it completes.
    done_in = future.result(timeout=WAIT_S)
    assert done_in != victim
    assert (tmp_path / f"started-in-{done_in}").exists()

    # Adaptive scaling (minimum 2 jobs) submits a new job for the lost worker.
    after = _wait_until(lambda: (jobs := _worker_jobs(client)) and len(jobs) == 2 and victim not in jobs.values()
                        and jobs, "a replacement worker job")
    replacement = set(after.values()) - {survivor}
    assert len(replacement) == 1 and replacement.isdisjoint(before.values()), (before, after)
    assert victim not in squeue_job_ids(name, states="PENDING,RUNNING")
    assert set(after.values()) == squeue_job_ids(name)
    new_addr = next(addr for addr, job in after.items() if job in replacement)
    assert client.submit(_slurm_job_id, workers=[new_addr], pure=False).result(timeout=WAIT_S) in replacement
