"""The extract flow fans block ranges out as tasks: byte-identical to one process on the thread runner and on a Dask
LocalCluster, a task that dies is retried and resumes from its done flags, and GPU tasks ask Dask for a GPU where
the workers advertise one (CPU-only here: the workers are told they have one)."""
from __future__ import annotations

import os

import pytest

from declip.pipeline.extract import extraction
from declip.pipeline.extract.extraction import run_extraction
from tests.fixtures import extract_config, store_bytes

pytestmark = pytest.mark.flow

LAYERS = "layer0,layer2"


@pytest.fixture(scope="module")
def single_store(tiny_manifest, tmp_path_factory):
    """The oracle: the same extraction in one process, no Prefect."""
    path = tmp_path_factory.mktemp("single") / "s.zarr"
    run_extraction(extract_config(tiny_manifest, path, layers=LAYERS, batch_size=4))
    return store_bytes(path)


def test_threads_shards_equal_one_process_and_a_rerun_does_nothing(tiny_manifest, tmp_path, prefect_harness,
                                                                   single_store):
    from declip.flows.extract import run_extract

    cfg = extract_config(tiny_manifest, tmp_path / "s.zarr", layers=LAYERS, batch_size=4, shards=3).to_json()
    [stats] = run_extract(cfg)
    assert store_bytes(tmp_path / "s.zarr") == single_store
    assert stats["blocks_run"] == stats["blocks_total"] == 15 and stats["images_encoded"] == 60
    assert [s["blocks"] for s in stats["shards"]] == [[0, 4], [5, 9], [10, 14]]
    assert {s["where"]["pid"] for s in stats["shards"]} == {os.getpid()}  # threads of this process
    assert {s["where"]["device"] for s in stats["shards"]} == {"cpu"}
    [again] = run_extract(cfg)
    assert again["blocks_run"] == 0 and again["shards"] == []  # nothing left: no block-range task at all


def test_a_dead_task_is_retried_and_resumes_from_its_done_flags(tiny_manifest, tmp_path, prefect_harness,
                                                                single_store, monkeypatch):
    from declip.flows.extract import run_extract

    real, calls = extraction.encode_batch, []

    def dies_once_at_the_second_block(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(extraction, "encode_batch", dies_once_at_the_second_block)
    cfg = extract_config(tiny_manifest, tmp_path / "s.zarr", layers=LAYERS, batch_size=4, shards=1).to_json()
    [stats] = run_extract(cfg)
    assert store_bytes(tmp_path / "s.zarr") == single_store
    # the attempt that died had written block 0; the retry encoded the other 14 only
    assert (stats["blocks_run"], stats["blocks_total"]) == (14, 15) and len(calls) == 16


@pytest.mark.slow  # a Dask LocalCluster
def test_dask_workers_with_gpu_resources_give_the_same_bytes(tiny_manifest, tmp_path, prefect_harness,
                                                               single_store):
    from prefect_dask import DaskTaskRunner

    from declip.flows.extract import extract_flow
    from declip.flows.runtime import run_flow

    cfg = extract_config(tiny_manifest, tmp_path / "s.zarr", layers=LAYERS, batch_size=4, shards=2,
                         device="auto").to_json()
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 2, "threads_per_worker": 2, "processes": True,
                                            "dashboard_address": None, "resources": {"GPU": 1}})
    [stats] = run_flow(extract_flow, cfg, None, name="extract-on-dask", tags=[], task_runner=runner)
    assert store_bytes(tmp_path / "s.zarr") == single_store
    shards = [s["where"] for s in stats["shards"]]
    assert len(shards) == 2 and all(w["pid"] != os.getpid() and w["dask_worker"] for w in shards)
    assert all(w["resources"] == {"GPU": 1} for w in shards)  # each asked Dask for one GPU ...
    assert all(w["device"] == "cpu" for w in shards)  # ... and auto became the CPU on a worker without CUDA
    assert stats["setup_where"]["resources"] == {}  # the setup needs no GPU and asks for none
