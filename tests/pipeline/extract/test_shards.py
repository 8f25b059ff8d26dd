"""Sharded extraction without Prefect: the setup writes every piece of metadata, block-range tasks write only their
blocks, and the store ends byte-identical to a one-process run; a task that dies resumes from the done flags."""
from __future__ import annotations

import pytest

from declip.core.errors import DeclipError
from declip.pipeline.extract import extraction
from declip.pipeline.extract.extraction import ExtractionSetup, extract_blocks, prepare_extraction, run_extraction
from declip.pipeline.extract.shards import merge_stats, shard_ranges
from declip.store.feature_store import FeatureStore
from tests.fixtures import extract_config, store_bytes

LAYERS = "layer0,layer2"


@pytest.mark.parametrize("blocks,shards,expected", [
    (range(10), 3, [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]),
    (range(4), 4, [[0], [1], [2], [3]]),
    ([2, 5, 9], 8, [[2], [5], [9]]),  # never an empty task
    ([7, 1, 4, 3], 2, [[1, 3], [4, 7]]),  # ascending, contiguous in the pending list
    ([], 3, []),
    (range(5), 1, [[0, 1, 2, 3, 4]]),
])
def test_shard_ranges_cover_every_block_once_in_balanced_contiguous_runs(blocks, shards, expected):
    assert shard_ranges(blocks, shards) == expected


def test_shard_ranges_refuse_zero_shards():
    with pytest.raises(DeclipError, match="at least 1"):
        shard_ranges(range(3), 0)


def test_setup_then_block_ranges_equal_one_process(tiny_manifest, tmp_path):
    single = tmp_path / "single.zarr"
    run_extraction(extract_config(tiny_manifest, single, layers=LAYERS, batch_size=4))
    sharded = tmp_path / "sharded.zarr"
    cfg = extract_config(tiny_manifest, sharded, layers=LAYERS, batch_size=4)
    setup, _ = prepare_extraction(cfg)
    assert setup.blocks == tuple(range(setup.blocks_total)) and setup.layers == ("layer0", "layer2")
    before = store_bytes(sharded)
    # the setup made every array and every mask; features are not written yet
    assert set(before) == set(store_bytes(single))
    runs = [extract_blocks(cfg, ExtractionSetup.from_json(setup.to_json()), r)  # as a task receives it
            for r in reversed(shard_ranges(setup.blocks, 3))]
    assert [s.blocks_run for s in runs] == [len(r) for r in reversed(shard_ranges(setup.blocks, 3))]
    assert store_bytes(sharded) == store_bytes(single)


def test_a_block_range_task_writes_no_metadata(tiny_manifest, tmp_path):
    cfg = extract_config(tiny_manifest, tmp_path / "s.zarr", layers="layer0", batch_size=8)
    setup, _ = prepare_extraction(cfg)
    unmade = ExtractionSetup(setup.dataset, ("layer0", "layer1"), setup.block_rows, setup.rows, setup.blocks)
    with pytest.raises(DeclipError, match=r"no test-vit-tiny@random-0 \['layer1'\].*only into layers its "):
        extract_blocks(cfg, unmade, [0])
    store = FeatureStore(cfg.store, mode="r")
    assert not store.has_layer(cfg.backbone, "layer1", setup.dataset)
    assert store.open_layer(cfg.backbone, "layer0", setup.dataset).pending_blocks().tolist() == list(setup.blocks)


def test_a_task_that_dies_resumes_from_its_done_flags(tiny_manifest, tmp_path, monkeypatch):
    single = tmp_path / "single.zarr"
    run_extraction(extract_config(tiny_manifest, single, layers=LAYERS, batch_size=4))
    cfg = extract_config(tiny_manifest, tmp_path / "s.zarr", layers=LAYERS, batch_size=4)
    setup, _ = prepare_extraction(cfg)
    real, calls = extraction.encode_batch, []

    def dies_at_the_fourth_block(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("worker lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(extraction, "encode_batch", dies_at_the_fourth_block)
    with pytest.raises(RuntimeError, match="worker lost"):
        extract_blocks(cfg, setup, setup.blocks)
    monkeypatch.setattr(extraction, "encode_batch", real)
    done = FeatureStore(cfg.store, mode="r").open_layer(cfg.backbone, "layer0", setup.dataset).done[:].sum()
    assert done == 3  # written before the failure, kept
    again = extract_blocks(cfg, setup, setup.blocks)  # the retry: same arguments
    assert again.blocks_run == setup.blocks_total - 3
    assert store_bytes(cfg.store) == store_bytes(single)


def test_merged_statistics_sum_the_tasks_and_keep_where_each_ran():
    setup = {"backbone": "b", "dataset": "d", "layers": ["layer0"], "rows": 10, "blocks_total": 5}
    shards = [{"blocks_run": 3, "images_encoded": 6, "bad_images": 1, "seconds": {"decode": 1.0, "forward": 2.0},
               "blocks": [0, 2], "where": {"host": "a"}},
              {"blocks_run": 2, "images_encoded": 4, "bad_images": 0, "seconds": {"decode": 0.5, "forward": 1.0},
               "blocks": [3, 4], "where": {"host": "b"}}]
    merged = merge_stats(setup, shards, wall=2.0)
    assert (merged["blocks_run"], merged["images_encoded"], merged["bad_images"]) == (5, 10, 1)
    assert merged["seconds"] == {"decode": 1.5, "forward": 3.0} and merged["images_per_s"] == 5.0
    assert merged["shards"] == [{"blocks": [0, 2], "blocks_run": 3, "where": {"host": "a"}},
                                {"blocks": [3, 4], "blocks_run": 2, "where": {"host": "b"}}]
