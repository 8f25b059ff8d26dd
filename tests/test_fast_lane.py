"""The guard that keeps `make test-fast` fast: unmarked tests cannot start processes, flows or Dask clusters."""
from __future__ import annotations

import subprocess
import sys

import pytest


def test_an_unmarked_test_cannot_start_a_subprocess(fast_lane_guard):
    with pytest.raises(RuntimeError, match=r"pytest.mark.slow"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    with pytest.raises(RuntimeError, match=r"pytest.mark.slow"):
        subprocess.run("true", shell=True, check=True)
    assert len(fast_lane_guard["violations"]) == 2
    fast_lane_guard["violations"].clear()  # provoked on purpose


def test_an_unmarked_test_cannot_start_a_worker_process(fast_lane_guard):
    import multiprocessing

    worker = multiprocessing.get_context("spawn").Process(target=print)
    with pytest.raises(RuntimeError, match=r"pytest.mark.slow"):
        worker.start()
    assert worker.pid is None and len(fast_lane_guard["violations"]) == 1
    fast_lane_guard["violations"].clear()


def test_libraries_may_ask_small_tools_for_metadata(fast_lane_guard):
    from declip.core.versions import code_version

    code_version.cache_clear()
    assert code_version()  # runs git from library code: allowed
    assert fast_lane_guard["violations"] == []
    with pytest.raises(RuntimeError, match=r"pytest.mark.slow"):
        subprocess.run(["git", "--version"], capture_output=True)  # the same tool, started by the test itself
    fast_lane_guard["violations"].clear()


def test_a_python_interpreter_is_refused_whoever_starts_it(fast_lane_guard):
    library = compile("import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'pass'])", "/opt/lib/spawn.py",
                      "exec")
    with pytest.raises(RuntimeError, match=r"pytest.mark.slow"):
        exec(library, {})
    fast_lane_guard["violations"].clear()


def test_an_unmarked_test_cannot_run_a_prefect_flow(fast_lane_guard):
    from prefect import flow

    calls = []

    @flow
    def tiny():
        calls.append(1)

    with pytest.raises(RuntimeError, match=r"pytest.mark.flow"):
        tiny()
    assert calls == [] and len(fast_lane_guard["violations"]) == 1
    fast_lane_guard["violations"].clear()


def test_an_unmarked_test_cannot_start_a_dask_cluster(fast_lane_guard):
    from distributed import LocalCluster

    with pytest.raises(RuntimeError, match=r"pytest.mark.slow"):
        LocalCluster(n_workers=0, processes=False)
    fast_lane_guard["violations"].clear()


@pytest.mark.slow
def test_a_slow_test_may_start_a_subprocess(fast_lane_guard):
    assert subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout == "42\n"
    assert fast_lane_guard["violations"] == []
