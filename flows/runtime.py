"""Prefect plumbing shared by the flows: quiet offline defaults, run names and tags, the run logger, task runners.

Flows run with no Prefect server configured (Prefect's ephemeral mode starts a local SQLite-backed API) and show up
in the UI when ``PREFECT_API_URL`` points at one. Progress goes to Prefect's run logs at INFO (what the UI shows)
while the console shows warnings only. The default runner is a bounded thread pool (an unbounded one
oversubscribes 2 cores with torch threads); ``dask`` runs tasks on a ``dask.distributed`` cluster.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def prefect_defaults(announce: bool = False) -> None:
    """Settings measured to matter offline (stack-notes §1.1); the user's environment always wins.

    ``announce``: say on stderr what the next seconds of silence are (the ephemeral API server starting).
    """
    os.environ.setdefault("PREFECT_HOME", str(Path.home() / ".prefect"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # INFO reaches the run logs (the UI); the console handler keeps the terminal to warnings.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    quiet_dask()
    private = None
    if not os.environ.get("PREFECT_API_URL"):
        from declip.flows.api_database import choose_api_database

        private = choose_api_database(Path(os.environ["PREFECT_HOME"]))  # several commands at once: one DB each
        watch_ephemeral_server()
    if not os.environ.get("DECLIP_DEBUG"):
        hide_failure_logs_on_console()
    if announce:
        print(startup_line(), file=sys.stderr, flush=True)
        if private:
            print(private, file=sys.stderr, flush=True)


def startup_line() -> str:
    """One line naming what Prefect is about to do (connect, or start a temporary local API for ~10 s)."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return f"declip: running as a Prefect flow, reporting to {url}"
    return ("declip: starting a temporary local Prefect API for this run (~10 s; `prefect server start` + "
            "PREFECT_API_URL=http://127.0.0.1:4200/api skips this and shows the run in the UI)")


def quiet_dask() -> None:
    """dask.distributed logs every scheduler/worker start at INFO (24 lines per grid); keep its warnings only.

    The environment variable reaches worker processes (they read dask config at import); the logger level covers
    a ``distributed`` already imported here.
    """
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    level = getattr(logging, os.environ["DASK_LOGGING__DISTRIBUTED"].upper(), logging.WARNING)
    logging.getLogger("distributed").setLevel(level)


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """Prefect's run logger inside a flow or task (its lines appear in the UI), a plain logger elsewhere (``.fn``)."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger("declip.flows")


def run_flow(flow, *args, name: str, tags: list[str], task_runner=None):
    """Call ``flow`` as a run named ``name`` and tagged ``tags`` (they reach its task runs too)."""
    from prefect import tags as prefect_tags

    options = {"flow_run_name": name}
    if task_runner is not None:
        options["task_runner"] = task_runner
    with prefect_tags(*tags):
        return flow.with_options(**options)(*args)


def own_tags():
    """A context in which task runs carry only the tags given to them, not the enclosing flow run's: a grid's cells
    are tagged with their own backbone, layer and decoder (the SRM cell was tagged with the grid's two ViT layers)."""
    from prefect.context import TagsContext

    return TagsContext(current_tags=set())


def hide_failure_logs_on_console() -> None:
    """Prefect prints a failed task and flow with full tracebacks (75-98 lines) on the console; the CLI prints the
    one line that matters (or Python's own traceback for a bug), so those records stay in the run logs (the UI) and
    off the terminal. ``declip --debug`` (or ``-v``) keeps them."""
    from prefect.logging.handlers import PrefectConsoleHandler

    original = PrefectConsoleHandler.filter
    if getattr(original, "_declip_quiet", False):
        return

    def quiet(self, record):
        if record.levelno >= logging.ERROR and record.name in ("prefect.flow_runs", "prefect.task_runs"):
            return False
        return original(self, record)

    quiet._declip_quiet = True
    PrefectConsoleHandler.filter = quiet


def watch_ephemeral_server() -> None:
    """Start Prefect's ephemeral server behind :mod:`flows.server_watchdog`, so no server outlives this process.

    Prefect's ``SubprocessASGIServer._run_uvicorn_command`` builds the uvicorn command and its environment; we run
    the same command, prefixed by the watchdog with our pid. Prefect keeps the watchdog's ``Popen`` and terminates
    it on a normal exit, which stops the server too.
    """
    import subprocess
    import sys

    from prefect.server.api import server

    original = server.SubprocessASGIServer._run_uvicorn_command
    if getattr(original, "_declip_watched", False):
        return

    class _WatchedSubprocess:
        """Prefect's ``subprocess`` name, with ``Popen`` prefixing the watchdog; the real module is untouched."""

        def __getattr__(self, name):
            return getattr(subprocess, name)

        @staticmethod
        def Popen(args, **kw):  # noqa: N802 - stands in for subprocess.Popen
            watchdog = [sys.executable, str(Path(__file__).with_name("server_watchdog.py")), str(os.getpid()), "--"]
            kw.setdefault("start_new_session", True)  # a terminal's Ctrl-C reaches the command, not its API server
            return subprocess.Popen(watchdog + list(args), **kw)

    def run_watched(self):
        server.subprocess = _WatchedSubprocess()
        try:
            return original(self)
        finally:
            server.subprocess = subprocess

    run_watched._declip_watched = True
    server.SubprocessASGIServer._run_uvicorn_command = run_watched


def task_runner(kind: str = "threads", max_workers: int = 1, address: str | None = None, cluster=None,
                out: str = "."):
    """``threads`` (bounded pool, default), ``dask`` (LocalCluster, or the scheduler at ``address``) or ``slurm``
    (Dask workers in SLURM jobs started by dask-jobqueue, as ``cluster`` says: a
    :class:`~declip.pipeline.grid.cluster.ClusterConfig`; job logs under ``out``/slurm unless it names a folder)."""
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=max(1, max_workers))
    if kind == "dask":
        quiet_dask()
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        kwargs = {"n_workers": max(1, max_workers), "threads_per_worker": 1, "processes": True,
                  "dashboard_address": None, "memory_limit": "6GiB", "silence_logs": logging.WARNING}
        gpus = _local_gpus()
        if gpus:  # each worker advertises its share, so GPU tasks ask for one (flows.placement)
            kwargs["resources"] = {"GPU": max(1, gpus // kwargs["n_workers"])}
        return DaskTaskRunner(cluster_kwargs=kwargs)
    if kind == "slurm":
        quiet_dask()
        from prefect_dask import DaskTaskRunner

        from declip.pipeline.grid.cluster import ClusterConfig, slurm_adapt_kwargs, slurm_cluster_kwargs

        cluster = cluster if cluster is not None else ClusterConfig()
        return DaskTaskRunner(cluster_class="dask_jobqueue.SLURMCluster",
                              cluster_kwargs=slurm_cluster_kwargs(cluster, out),
                              adapt_kwargs=slurm_adapt_kwargs(cluster))
    raise ValueError(f"unknown task runner {kind!r}; use threads, dask or slurm")


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def loopback_api_warning(kind: str) -> str | None:
    """A warning when SLURM workers may not reach the Prefect API: its URL is this machine's loopback (the
    temporary API, or a server on localhost), which a compute node other than this one cannot connect to."""
    if kind != "slurm":
        return None
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value() or ""
    if url and not any(host in url for host in ("://127.0.0.1", "://localhost", "://[::1]")):
        return None
    return ("the Prefect API is " + (url or "a temporary server on this machine") + ": SLURM workers on other "
            "nodes cannot report to it. Start `prefect server start --host 0.0.0.0` and export "
            "PREFECT_API_URL=http://<this host>:4200/api before running the grid")
