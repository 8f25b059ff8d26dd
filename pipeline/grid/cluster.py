"""The ``[cluster]`` table: worker jobs on SLURM, started by dask-jobqueue's ``SLURMCluster`` for ``task_runner =
"slurm"``, and the paths every worker must see.

Each field maps onto one ``SLURMCluster`` argument (:func:`slurm_cluster_kwargs`): one Dask worker process per job
with ``cores`` threads, ``gpus`` GPUs requested as ``--gres=gpu:N`` and advertised to Dask as the resource ``GPU``
(every GPU task asks for one, so a job runs as many at once as it has GPUs). Jobs are kept by adaptive scaling
(:func:`slurm_adapt_kwargs`) between ``min_jobs`` and ``max_jobs``, or at exactly ``jobs``: a job that ends (its
walltime, ``scancel``, a node failure) is replaced, which a fixed ``scale(n)`` does not do (measured on the test
cluster). ``declip grid --dry-run`` prints the batch script (:func:`job_script`) without submitting anything.
"""
from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from declip.core.configs import JsonConfig, option, rules_of
from declip.core.errors import DeclipError
from declip.core.validation import check_config, whole

#: Where the dry run's job script says the scheduler is (the real address exists only once the flow starts it).
SCHEDULER_PLACEHOLDER = "tcp://SCHEDULER:8786"


@dataclass(frozen=True)
class ClusterConfig(JsonConfig):
    """Worker jobs on SLURM (``task_runner = "slurm"``); ignored by the other task runners."""

    WHAT = "cluster"

    partition: str | None = option(
        None, metavar="NAME", example="gpu", help="SLURM partition (queue) of the worker jobs. Unset: the default one")
    cores: int = option(
        4, rule=whole(1), metavar="N",
        help="CPU cores per worker job: the Dask worker's threads (image decoding and data loading use them)")
    memory: str = option("16GB", metavar="SIZE", help="memory per worker job (sbatch --mem; the Dask worker's limit)")
    gpus: int = option(
        0, rule=whole(0), metavar="N",
        help="GPUs per worker job (--gres=gpu:N), advertised to Dask as the resource GPU; every extraction shard, "
             "training group and evaluation asks for one, and device auto becomes that GPU")
    walltime: str = option("04:00:00", metavar="HH:MM:SS", help="wall-clock limit of each worker job")
    jobs: int = option(
        2, rule=whole(1), metavar="N",
        help="worker jobs kept running while the flow runs; one that ends (walltime, scancel, node failure) is "
             "replaced. min_jobs/max_jobs make it adaptive instead")
    min_jobs: int | None = option(
        None, rule=whole(0, optional=True), metavar="N", example=0,
        help="adaptive scaling: fewest worker jobs. Unset: exactly jobs (0 when max_jobs is set)")
    max_jobs: int | None = option(
        None, rule=whole(1, optional=True), metavar="N", example=8,
        help="adaptive scaling: most worker jobs, submitted while tasks wait. Unset: exactly jobs")
    job_directives: tuple[str, ...] = option(
        (), metavar="LINES", example=("--account=mylab", "--constraint=a100"), split=False,
        help="extra #SBATCH directives of each worker job; repeatable (as a flag: "
             "--cluster-job-directives=--qos=high)")
    prologue: tuple[str, ...] = option(
        (), metavar="LINES", example=("module load cuda", "source /shared/declip/.venv/bin/activate"), split=False,
        help="shell lines each worker job runs before the worker starts (its environment); repeatable")
    python: str | None = option(
        None, metavar="PATH", example="/shared/declip/.venv/bin/python",
        help="Python of the worker jobs, with declip installed. Unset: this process's interpreter (the same path "
             "must exist on the compute nodes)")
    interface: str | None = option(
        None, metavar="NAME", example="ib0",
        help="network interface the scheduler and workers talk over (e.g. ib0). Unset: the host name's address")
    log_directory: str | None = option(
        None, metavar="DIR", example="slurm-logs",
        help="folder of the worker jobs' .out/.err files. Unset: <out>/slurm")
    job_name: str = option("declip-worker", metavar="NAME", help="SLURM job name of the workers (squeue -n NAME)")

    def __post_init__(self) -> None:
        check_config(self, rules_of(ClusterConfig), self.WHAT)
        for name in ("job_directives", "prologue"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        low, high = self.job_range
        if low > high:
            raise DeclipError(f"[cluster] min_jobs ({low}) is above max_jobs ({high})")

    @property
    def job_range(self) -> tuple[int, int]:
        """(fewest, most) worker jobs: exactly ``jobs``, or the adaptive range when min_jobs or max_jobs is set
        (an unset end: 0 fewest, ``jobs`` most)."""
        if self.min_jobs is None and self.max_jobs is None:
            return self.jobs, self.jobs
        low = self.min_jobs if self.min_jobs is not None else 0
        return low, self.max_jobs if self.max_jobs is not None else max(self.jobs, low)


def slurm_cluster_kwargs(c: ClusterConfig, out: str) -> dict:
    """``dask_jobqueue.SLURMCluster`` keyword arguments for ``c``; job logs go to ``log_directory`` or <out>/slurm."""
    kwargs = dict(
        cores=c.cores, processes=1, memory=c.memory, walltime=c.walltime, job_name=c.job_name, queue=c.partition,
        job_extra_directives=([f"--gres=gpu:{c.gpus}"] if c.gpus else []) + list(c.job_directives),
        job_script_prologue=list(c.prologue), python=c.python or sys.executable,
        worker_extra_args=["--resources", f"GPU={c.gpus}"] if c.gpus else [],
        log_directory=str(Path(c.log_directory or Path(out) / "slurm").expanduser().resolve()),
        scheduler_options={"dashboard_address": ":0"},  # two grids on one login node must not fight over :8787
    )
    if c.interface:
        kwargs["interface"] = c.interface
    return kwargs


def slurm_adapt_kwargs(c: ClusterConfig) -> dict:
    """``SLURMCluster.adapt`` arguments: the adaptive range, or exactly ``jobs`` (still adaptive, so a lost job is
    replaced)."""
    low, high = c.job_range
    return {"minimum_jobs": low, "maximum_jobs": high}


def job_script(c: ClusterConfig, out: str) -> str:
    """The batch script each worker job is submitted with, as ``sbatch`` would get it (the scheduler address is a
    placeholder: it exists once the flow starts the scheduler). Nothing is submitted or started."""
    import tempfile

    from dask_jobqueue.slurm import SLURMJob

    kwargs = slurm_cluster_kwargs(c, out)
    kwargs.pop("scheduler_options")
    logs = kwargs.pop("log_directory")
    with tempfile.TemporaryDirectory() as scratch:  # a job creates its log folder; a dry run creates nothing
        text = SLURMJob(scheduler=SCHEDULER_PLACEHOLDER, name=f"{c.job_name}-0", log_directory=scratch,
                        **kwargs).job_script()
        return text.replace(scratch, logs)


def check_paths_here(paths: dict[str, str]) -> dict:
    """Raise one line naming the first of ``paths`` ({what: path}) this machine cannot see; URLs (s3://, ...) are
    not checked. Run on a worker: the flow's paths are absolute on the submitting machine and must be the same
    there."""
    for what, path in paths.items():
        if path and "://" not in str(path) and not os.path.exists(path):
            job = os.environ.get("SLURM_JOB_ID")
            raise DeclipError(
                f"worker {socket.gethostname()}" + (f" (SLURM job {job})" if job else "") + f" cannot see the {what} "
                f"{path}: mount it on the compute nodes at the same path (a shared file system), or put the store on "
                "object storage (s3://...)")
    return {"host": socket.gethostname(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"), "checked": sorted(paths)}
