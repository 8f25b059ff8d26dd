"""One GPU per task: leases that never hand one GPU to two tasks (threads or processes of a node), ``auto`` resolved
on the worker, the Dask resource request, and the record of where a task ran. CPU-only here, so GPUs are named."""
from __future__ import annotations

import os
import threading

import pytest

from declip.core.errors import DeclipError
from declip.flows.placement import GpuLeases, gpu_request, task_device, where


def test_concurrent_leases_get_different_gpus_and_a_third_waits(tmp_path):
    leases = GpuLeases(["2", "GPU-abc"], tmp_path, poll=0.01)
    with leases.lease() as a, leases.lease() as b:
        assert {a, b} == {0, 1}  # CUDA indices of the visible GPUs
        with pytest.raises(DeclipError, match="stayed leased"):
            with leases.lease(timeout=0.2):
                pass
    with leases.lease(timeout=1) as again:  # released: available again
        assert again == 0


def test_leases_exclude_each_other_across_threads(tmp_path):
    leases = GpuLeases(["0", "1"], tmp_path, poll=0.005)
    holding, peak, lock = set(), [0], threading.Lock()
    both_in = threading.Barrier(2)

    def task():
        with leases.lease() as gpu:
            with lock:
                assert gpu not in holding
                holding.add(gpu)
                peak[0] = max(peak[0], len(holding))
            both_in.wait(timeout=5)  # two tasks hold their GPUs at the same moment
            with lock:
                holding.discard(gpu)

    threads = [threading.Thread(target=task) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert peak[0] == 2 and not any(t.is_alive() for t in threads)


@pytest.mark.slow  # a holder process
def test_a_lease_is_exclusive_across_processes(tmp_path):
    import subprocess
    import sys

    held = tmp_path / "held"
    code = ("import sys, time, pathlib; from declip.flows.placement import GpuLeases\n"
            "with GpuLeases(['0'], pathlib.Path(sys.argv[1])).lease() as g:\n"
            "    pathlib.Path(sys.argv[2]).touch(); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(held)])
    try:
        for _ in range(600):
            if held.exists():
                break
            threading.Event().wait(0.05)
        assert held.exists()
        with pytest.raises(DeclipError, match="stayed leased"):
            with GpuLeases(["0"], tmp_path, poll=0.01).lease(timeout=0.3):
                pass
    finally:
        proc.kill()
        proc.wait()
    with GpuLeases(["0"], tmp_path).lease(timeout=5) as gpu:  # a killed holder's lock is gone with it
        assert gpu == 0



def test_task_device_resolves_on_the_worker(tmp_path):
    none = GpuLeases([], tmp_path)
    with task_device("auto", none) as device:
        assert device == "cpu"  # a CPU-only worker: the same path, nothing waits
    with task_device("cpu", GpuLeases(["0"], tmp_path)) as device:
        assert device == "cpu"
    with task_device("cuda:1", GpuLeases(["0"], tmp_path)) as device:
        assert device == "cuda:1"  # pinned by the user: as given, no lease
    two = GpuLeases(["0", "1"], tmp_path)
    with task_device("auto", two) as first, task_device("cuda", two) as second:
        assert {first, second} == {"cuda:0", "cuda:1"}
    with pytest.raises(DeclipError, match="no usable CUDA GPU.*gpus = 1"):
        with task_device("cuda", none):
            pass


def test_gpu_request_annotates_submissions_only_when_workers_have_gpus():
    import dask

    with gpu_request(False):
        assert dask.get_annotations() == {}
    with gpu_request(True):
        assert dask.get_annotations() == {"resources": {"GPU": 1}}
    assert dask.get_annotations() == {}


def test_where_outside_dask_and_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    record = where("cuda:0")
    assert record == {"host": os.uname().nodename, "slurm_job_id": None, "pid": os.getpid(), "dask_worker": None,
                      "resources": None, "device": "cuda:0"}
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert where()["slurm_job_id"] == "4242" and "device" not in where()
