"""Training and evaluation refuse a store whose chunks were changed in place (issue 21 item 1): before, flipping 8
bytes of one float16 chunk let `train` and `evaluate` finish with a changed model. Each read path (streamed batches,
the in-RAM copy, the device-resident copy, evaluation) now stops with one error naming the store, the array and the
block, and `declip store verify` as the fix."""
from __future__ import annotations

import shutil
from functools import partial

import numpy as np
import pytest

from declip.core.errors import DeclipError
from declip.pipeline.evaluate.evaluation import EvalConfig, evaluate
from declip.pipeline.train.training import train
from declip.store.feature_store import FeatureStore
from tests.fixtures import TINY_BACKBONE, TINY_DATASET, flip_bytes, train_config
from tests.store.store_fixtures import sample_chunk

LAYER = f"features/{TINY_BACKBONE}/layer1/{TINY_DATASET}"
_cfg = partial(train_config, batch_size=8, max_epochs=1)
READS = {"stream": dict(memory_gb=0.0, device_memory_gb=0.0), "memory": dict(device_memory_gb=0.0),
         "resident": dict(device_memory_gb=1.0)}


def _row(store: FeatureStore, split: str) -> int:
    s = store.samples(TINY_DATASET)
    return int(np.flatnonzero((s["split"] == split) & (s["subset"] == "tint") & (s["label"] == 1))[0])


def _damage(tiny_store, tmp_path, what: str, split: str) -> tuple[str, str]:
    """A copy of the tiny store with one chunk of ``what`` changed in place for a ``split`` row; (store, regex)."""
    path = tmp_path / "s.zarr"
    shutil.copytree(tiny_store, path)
    store = FeatureStore(str(path), mode="r")
    row = _row(store, split)
    block_rows = store.open_layer(TINY_BACKBONE, "layer1", TINY_DATASET).block_rows
    block, within = divmod(row, block_rows)
    if what == "feats":
        flip_bytes(sample_chunk(path / LAYER / "feats", row))
        array = f"{LAYER}/feats"
    elif what == "cls":
        channels = store.open_layer(TINY_BACKBONE, "layer1", TINY_DATASET).cls.shape[1]
        flip_bytes(path / LAYER / "cls" / "c" / str(block) / "0", offset=within * channels * 2)
        array = f"{LAYER}/cls"
    elif what == "soft_masks":
        flip_bytes(path / "datasets" / TINY_DATASET / "soft_masks" / "c" / str(row) / "0" / "0")
        array = f"datasets/{TINY_DATASET}/soft_masks"
    else:  # one bit of the row's packed native mask, re-encoded: the zstd chunk still decodes, to other bits
        import zarr

        bits = zarr.open_array(str(path / "datasets" / TINY_DATASET / "native_bits"), mode="a")
        at = int(zarr.open_array(str(path / "datasets" / TINY_DATASET / "native_offsets"), mode="r")[row]) + 5
        bits[at] = bits[at] ^ 0x01
        array = f"datasets/{TINY_DATASET}/native_bits"
    lo = block * block_rows
    named = rf"store {path}: {array}, block {block} \(rows {lo}-{lo + block_rows - 1}\): .*declip store verify"
    return str(path), named


@pytest.mark.parametrize("how", sorted(READS))
@pytest.mark.parametrize("what", ["feats", "cls", "soft_masks"])
def test_training_refuses_a_chunk_changed_in_place(tiny_store, tmp_path, what, how):
    store, named = _damage(tiny_store, tmp_path, what, "train")
    with pytest.raises(DeclipError, match=named):
        train(_cfg(store, tmp_path / "run", **READS[how]))


@pytest.fixture(scope="module")
def checkpoint(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    train(_cfg(str(tiny_store), out / "run"))
    return str(out / "run" / "best")


@pytest.mark.parametrize("what", ["feats", "cls", "native_bits"])
def test_evaluation_refuses_a_chunk_changed_in_place(tiny_store, checkpoint, tmp_path, what):
    store, named = _damage(tiny_store, tmp_path, what, "test")
    with pytest.raises(DeclipError, match=named):
        evaluate(EvalConfig(store=store, checkpoint=checkpoint, dataset=TINY_DATASET, test_subsets=("tint",),
                            out=str(tmp_path / "ev")))


def test_an_undecodable_mask_chunk_is_one_line_from_evaluate(tiny_store, checkpoint, tmp_path, capsys):
    """Not a raw `Zstd decompression error`: the store, the array, the block and the fix, on one line."""
    from declip.cli.app import main

    path = tmp_path / "s.zarr"
    shutil.copytree(tiny_store, path)
    flip_bytes(path / "datasets" / TINY_DATASET / "native_bits" / "c" / "0", offset=0)  # the frame header
    code = main(["evaluate", "--store", str(path), "--dataset", TINY_DATASET, "--ckpt", checkpoint, "--test-sets",
                 "tint", "--out", str(tmp_path / "ev"), "--no-flow"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"store {path}: datasets/{TINY_DATASET}/native_bits, block" in err and "cannot be decoded" in err
    assert "declip store verify" in err and "Traceback" not in err
