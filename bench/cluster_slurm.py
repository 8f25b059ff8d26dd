"""What a SLURM worker costs on the local single-node cluster (tests/cluster/slurm.sh), beside a Dask LocalCluster.

Measured side by side in one run:
  * ``slurm.sh start`` on a running cluster (the idempotent check), and with ``--restart`` a stop + cold start of
    munged/slurmctld/slurmd;
  * worker start latency: from creating the cluster and asking for N one-core workers to all N registered with the
    scheduler -- SLURMCluster (one sbatch job per worker) vs LocalCluster (one process per worker);
  * a trivial task's round trip (submit -> result, sequential) on a SLURM worker vs a LocalCluster worker;
  * a one-task Prefect flow through prefect-dask's DaskTaskRunner on each cluster class (``--prefect``).
Needs root (or an already running cluster). Install time from nothing is printed by slurm.sh itself on first use.

Usage: python bench/cluster_slurm.py [--repeats 3] [--tasks 200] [--restart] [--prefect]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from common import report, workdir

from tests.cluster.services import SLURM_SCRIPT, ServiceUnavailable, slurm_cluster_kwargs, start_slurm


def _inc(x: int) -> int:
    return x + 1


def _start_workers(make_cluster, n: int) -> tuple[float, object, object]:
    from distributed import Client

    t0 = time.perf_counter()
    cluster = make_cluster(n)
    client = Client(cluster)
    client.wait_for_workers(n, timeout=600)
    return time.perf_counter() - t0, cluster, client


def _round_trip(client, n_tasks: int) -> float:
    """Median seconds of one submit -> result of a trivial task, sequential (each waits for the one before)."""
    client.submit(_inc, -1, pure=False).result()  # warm: function pickled, connections open
    times = []
    for i in range(n_tasks):
        t0 = time.perf_counter()
        client.submit(_inc, i, pure=False).result()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _prefect_one_task(cluster_class: str, cluster_kwargs: dict) -> float:
    from prefect import flow, task
    from prefect_dask import DaskTaskRunner

    @task
    def where() -> str:
        return os.environ.get("SLURM_JOB_ID", "local")

    @flow(task_runner=DaskTaskRunner(cluster_class=cluster_class, cluster_kwargs=cluster_kwargs,
                                     adapt_kwargs={"minimum": 1, "maximum": 1}))
    def one_task() -> str:
        return where.submit().result()

    t0 = time.perf_counter()
    one_task()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3, help="cluster starts per side (median reported)")
    ap.add_argument("--tasks", type=int, default=200, help="sequential trivial tasks per side")
    ap.add_argument("--restart", action="store_true", help="also time stop + cold start of the SLURM daemons")
    ap.add_argument("--prefect", action="store_true", help="also time a one-task Prefect flow on each cluster class")
    args = ap.parse_args()
    os.environ.setdefault("PREFECT_HOME", str(workdir("prefect")))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")

    if args.restart:
        subprocess.run(["bash", str(SLURM_SCRIPT), "stop"], check=True, capture_output=True)
    t0 = time.perf_counter()
    try:
        node = start_slurm()
    except ServiceUnavailable as err:
        sys.exit(f"no SLURM here: {err}")
    start_s = time.perf_counter() - t0
    print(f"slurm.sh start: {start_s:.2f} s ({node.start_line})")

    from dask_jobqueue import SLURMCluster
    from distributed import LocalCluster

    logs = workdir("slurm-logs")
    slurm_kwargs = slurm_cluster_kwargs(node, logs, "declip-bench")
    local_kwargs = dict(threads_per_worker=1, processes=True, memory_limit="2GiB", dashboard_address=":0")

    def slurm_cluster(n: int):
        cluster = SLURMCluster(**slurm_kwargs)
        cluster.scale(jobs=n)
        return cluster

    def local_cluster(n: int):
        return LocalCluster(n_workers=n, **local_kwargs)

    n_workers = min(2, node.cpus)
    starts: dict[str, list[float]] = {"slurm": [], "local": []}
    trips: dict[str, float] = {}
    for name, make in (("slurm", slurm_cluster), ("local", local_cluster)):
        for r in range(args.repeats):
            seconds, cluster, client = _start_workers(make, n_workers)
            starts[name].append(seconds)
            if r == 0:
                trips[name] = _round_trip(client, args.tasks)
            client.close()
            cluster.close()
    slurm_start, local_start = statistics.median(starts["slurm"]), statistics.median(starts["local"])
    report(f"worker start: cluster created -> {n_workers} one-core workers registered (median of {args.repeats}, s)",
           ("SLURMCluster (sbatch jobs)", slurm_start), ("LocalCluster (processes)", local_start),
           slurm_start / local_start, "information")
    report(f"trivial task round trip, median of {args.tasks} sequential (ms)",
           ("SLURM worker", trips["slurm"] * 1e3), ("LocalCluster worker", trips["local"] * 1e3),
           trips["slurm"] / trips["local"], "~1: a SLURM worker is a plain Dask worker once started")
    if args.prefect:
        _prefect_one_task("distributed.LocalCluster", dict(n_workers=1, **local_kwargs))  # warm: the API server starts
        slurm_flow = _prefect_one_task("dask_jobqueue.SLURMCluster", slurm_kwargs)
        local_flow = _prefect_one_task("distributed.LocalCluster", dict(n_workers=1, **local_kwargs))
        report("one-task Prefect flow through DaskTaskRunner (s)", ("SLURMCluster", slurm_flow),
               ("LocalCluster", local_flow), slurm_flow / local_flow, "information")


if __name__ == "__main__":
    main()
