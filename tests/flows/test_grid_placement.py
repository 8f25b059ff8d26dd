"""A grid on Dask workers that advertise a GPU: its extraction is sharded, every training run and evaluation asks
for one GPU, and the store and results equal the thread runner's; the flow's results say where each task ran."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from tests.fixtures import grid_json, store_bytes

pytestmark = [pytest.mark.flow, pytest.mark.slow]  # a Dask LocalCluster


def _values(out) -> pd.Series:
    table = pd.read_parquet(out / "results.parquet")
    key = ["decoder", "layer", "train_set", "test_set", "split", "view", "metric"]
    return table.set_index(key)["value"].sort_index()


def test_grid_on_gpu_advertising_workers_equals_threads(tiny_manifest, tmp_path, prefect_harness):
    from prefect_dask import DaskTaskRunner

    from declip.flows.grid import grid_flow, run_grid
    from declip.flows.runtime import run_flow

    def cfg(name, **kw):
        return grid_json(tmp_path / name / "s.zarr", tmp_path / name / "g", manifest=str(tiny_manifest),
                         layers=("layer0", "layer1"), decoders=("linear",), test_sets=("tint", "bright"),
                         extract_shards=2, extract_batch_size=8, baselines=False, **kw)

    # one torch thread per task on both sides (a Dask worker has one), so the numbers can be compared bit for bit
    threads = run_grid(cfg("threads", max_workers=max(2, os.cpu_count() or 1)))
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "processes": True,
                                            "dashboard_address": None, "resources": {"GPU": 1}})
    dask = run_flow(grid_flow, cfg("dask", task_runner="dask"), name="grid-on-dask", tags=[], task_runner=runner)
    assert dask["failed"] == [] and dask["trained"] == threads["trained"] == 2
    assert store_bytes(tmp_path / "dask" / "s.zarr") == store_bytes(tmp_path / "threads" / "s.zarr")
    pd.testing.assert_series_equal(_values(tmp_path / "dask" / "g"), _values(tmp_path / "threads" / "g"),
                                   check_exact=True)

    where = pd.DataFrame(dask["where"])
    assert set(where["task"]) == {"extract", "train", "evaluate"}
    assert (where["pid"] != os.getpid()).all() and where["dask_worker"].notna().all()
    assert (where["resources"] == {"GPU": 1}).all()  # every extraction range, training run and evaluation
    assert (where["device"] == "cpu").all()  # CPU-only workers: the annotation is accepted, the device stays cpu
    assert len(where[where["task"] == "extract"]) == 2 and len(where[where["task"] == "evaluate"]) == 2 * 2 * 2
    plain = pd.DataFrame(threads["where"])
    assert (plain["pid"] == os.getpid()).all() and plain["resources"].isna().all()
