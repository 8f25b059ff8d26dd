"""Where a task runs: one GPU per task, Dask's ``GPU`` resource, and a record of the host and SLURM job it ran in.

* **Requests.** Inside a flow whose Dask workers advertise the resource ``GPU`` (SLURM jobs with ``gpus > 0``, a
  LocalCluster on a machine with CUDA, an existing cluster whose workers were started with ``--resources GPU=N``),
  :func:`gpu_request` wraps the submission of a task that needs a GPU in ``dask.annotate(resources={"GPU": 1})``, so
  the scheduler never runs more of them on a worker than it has GPUs. Elsewhere (the thread runner, CPU-only
  workers) it is a no-op: the same code path runs, nothing waits for a resource no worker has.
* **Leases.** Dask counts GPUs but does not say which one a task got. :func:`task_device` turns ``auto``/``cuda``
  into one concrete ``cuda:K`` that no other task on the node holds (an exclusive ``flock`` per physical GPU,
  named by its ``CUDA_VISIBLE_DEVICES`` entry, so two SLURM jobs sharing a node never collide, and threads of one
  process never share a GPU either). ``auto`` on a worker without CUDA is ``cpu``; an explicit ``cuda:K`` is used
  as given. The device a task ran on is recorded in its run's config.json (device never changes a run's identity).
* **Where.** :func:`where` says where the current task runs (host, SLURM job id, process, Dask worker, device,
  the Dask resources it asked for), for the flow's results.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

from declip.core.errors import DeclipError

#: Node-local folder of the per-GPU lease files (the temporary directory is node-local on clusters).
LEASE_DIR = Path(tempfile.gettempdir()) / "declip-gpu-leases"


def visible_gpus() -> list[str]:
    """Physical ids of the GPUs this process may use, in CUDA's index order: ``CUDA_VISIBLE_DEVICES`` entries (SLURM
    sets them per job) or, without it, the indices CUDA reports."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (listed[:count] if listed else [str(i) for i in range(count)]) if count else []


class GpuLeases:
    """Exclusive leases on GPUs, across the threads and processes of one node (``flock`` on one file per GPU)."""

    def __init__(self, gpus: list[str], lock_dir: Path = LEASE_DIR, poll: float = 0.2):
        self.gpus, self.lock_dir, self.poll = list(gpus), Path(lock_dir), poll

    @contextlib.contextmanager
    def lease(self, timeout: float | None = None) -> Iterator[int]:
        """The CUDA index of a GPU held by nobody else until the block ends; waits while all are taken."""
        if not self.gpus:
            raise DeclipError("no GPU to lease on this worker")
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for index, gpu in enumerate(self.gpus):
                fd = os.open(self.lock_dir / f"gpu-{_safe(gpu)}.lock", os.O_RDWR | os.O_CREAT, 0o666)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    yield index
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                return
            if deadline is not None and time.monotonic() > deadline:
                raise DeclipError(f"every GPU of {socket.gethostname()} ({', '.join(self.gpus)}) stayed leased for "
                                  f"{timeout:.0f} s (lease files in {self.lock_dir})")
            time.sleep(self.poll)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


@contextlib.contextmanager
def task_device(requested: str, leases: GpuLeases | None = None) -> Iterator[str]:
    """The concrete device one task runs on: ``auto``/``cuda`` → a leased ``cuda:K`` (``auto`` → ``cpu`` where the
    worker has no CUDA); ``cpu`` and an explicit ``cuda:K`` as given."""
    if requested not in ("auto", "cuda"):
        yield requested
        return
    leases = leases if leases is not None else GpuLeases(visible_gpus())
    if not leases.gpus:
        if requested == "cuda":
            raise DeclipError(f"device cuda was asked for, but {socket.gethostname()}"
                              + (f" (SLURM job {os.environ['SLURM_JOB_ID']})" if "SLURM_JOB_ID" in os.environ else "")
                              + " has no usable CUDA GPU; give the worker jobs GPUs ([cluster] gpus = 1) or use "
                              "device = \"auto\" / \"cpu\"")
        yield "cpu"
        return
    with leases.lease() as index:
        yield f"cuda:{index}"


def where(device: str | None = None) -> dict:
    """Where the calling task runs: host, SLURM job id (None outside SLURM), process id, Dask worker address and the
    Dask resources the task asked for (None outside Dask), and ``device`` when given."""
    record = {"host": socket.gethostname(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "pid": os.getpid(),
              "dask_worker": None, "resources": None}
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    if worker is not None:
        record["dask_worker"] = worker.address
        key = worker.get_current_task()
        state = worker.state.tasks.get(key) if key is not None else None
        record["resources"] = dict(state.resource_restrictions or {}) if state is not None else None
    if device is not None:
        record["device"] = device
    return record


def workers_advertise_gpus() -> bool:
    """Whether the current flow's task runner has Dask workers that advertise the resource ``GPU``.

    Known from the runner's own settings for a cluster it starts (SLURM ``--resources GPU=N``, a LocalCluster's
    ``resources``); asked of the scheduler for an existing cluster (``dask_address``). The thread runner: False.
    """
    from prefect.context import FlowRunContext

    runner = getattr(FlowRunContext.get(), "task_runner", None)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        return False
    if not isinstance(runner, DaskTaskRunner):
        return False
    kwargs = runner.cluster_kwargs or {}
    if "GPU" in (kwargs.get("resources") or {}):
        return True
    if any(str(arg).startswith("GPU=") for arg in kwargs.get("worker_extra_args") or ()):
        return True
    if runner.address:
        workers = runner.client.scheduler_info().get("workers", {})
        return any("GPU" in (w.get("resources") or {}) for w in workers.values())
    return False


def gpu_request(enabled: bool):
    """Context for submitting tasks that need a GPU: one ``GPU`` resource each where ``enabled``, else nothing."""
    if not enabled:
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources={"GPU": 1})
