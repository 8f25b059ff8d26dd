"""Prefect plumbing shared by the flows: quiet offline defaults and the task-runner choice.

Flows run with no Prefect server configured (Prefect's ephemeral mode starts a local SQLite-backed API) and show up
in the UI when ``PREFECT_API_URL`` points at one. The default runner is a bounded thread pool (an unbounded one
oversubscribes 2 cores with torch threads); ``dask`` runs tasks on a ``dask.distributed`` cluster.
"""
from __future__ import annotations

import os
from pathlib import Path


def prefect_defaults() -> None:
    """Settings measured to matter offline (stack-notes §1.1); the user's environment always wins."""
    os.environ.setdefault("PREFECT_HOME", str(Path.home() / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")


def task_runner(kind: str = "threads", max_workers: int = 1, address: str | None = None):
    """``threads`` (bounded pool, default) or ``dask`` (LocalCluster, or the scheduler at ``address``)."""
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max(1, max_workers))
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": max(1, max_workers), "threads_per_worker": 1,
                                              "processes": True, "dashboard_address": None,
                                              "memory_limit": "6GiB"})
    raise ValueError(f"unknown task runner {kind!r}; use threads or dask")
