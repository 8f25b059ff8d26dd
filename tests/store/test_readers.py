"""Feature readers (store/readers.py): one source or a fused pair, streaming = in-memory batches, incomplete layers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from declip.core.errors import DeclipError
from declip.store.feature_store import FeatureStore
from tests.store.store_fixtures import BB_A, BB_B, DS, expected_layer, make_meta, new_store, write_blocks


def _two_source_store(path: Path, n: int = 9):
    store, samples = new_store(path, n=n, block_rows=4)
    a = store.open_layer(BB_A, "layer1", DS, make_meta(samples, BB_A, "layer1", channels=3, grid=(4, 4)))
    b = store.open_layer(BB_B, "layer3", DS, make_meta(samples, BB_B, "layer3", channels=5, grid=(2, 2),
                                                       has_cls=False))
    write_blocks(store, a, range(3), seed=1)
    write_blocks(store, b, range(3), seed=2)
    return store, expected_layer(a, 1), expected_layer(b, 2)


def test_feature_source_single_and_fused(tmp_path):
    import torch
    import torch.nn.functional as F

    from declip.store.readers import FeatureSource

    store, (fa, ca, va), (fb, _, vb) = _two_source_store(tmp_path / "s.zarr")
    rows = np.array([7, 0, 3, 8, 2])
    single = FeatureSource(FeatureStore(str(tmp_path / "s.zarr"), mode="r"), f"{BB_A}/layer1", DS)
    feats, cls = single.get(rows)
    assert feats.dtype == torch.float16 and tuple(feats.shape) == (5, 3, 4, 4)
    np.testing.assert_array_equal(feats.numpy(), fa[rows])
    np.testing.assert_array_equal(cls.numpy(), ca[rows])
    assert single.channels == 3 and single.grid == (4, 4) and single.family == "vit"
    np.testing.assert_array_equal(single.valid(), va.astype(bool))

    fused = FeatureSource(store, f"{BB_A}/layer1+{BB_B}/layer3", DS)
    feats, cls = fused.get(rows)
    assert cls is None and tuple(feats.shape) == (5, 8, 4, 4) and feats.dtype == torch.float32
    assert fused.channels == 8 and fused.family == "fused"
    np.testing.assert_array_equal(feats[:, :3].numpy(), fa[rows].astype(np.float32))
    want_b = F.interpolate(torch.from_numpy(fb[rows]).float(), size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(feats[:, 3:], want_b, rtol=0, atol=0)
    np.testing.assert_array_equal(fused.valid(), va.astype(bool) & vb.astype(bool))
    for bad in ("nolayer", f"{BB_A}/layer1+{BB_B}/layer3+{BB_A}/layer1"):
        with pytest.raises(DeclipError, match="feature source"):
            FeatureSource(store, bad, DS)


@pytest.mark.parametrize("spec", [f"{BB_A}/layer1", f"{BB_A}/layer1+{BB_B}/layer3"])
def test_streaming_and_in_memory_batches_are_identical(tmp_path, spec):
    from declip.store.readers import FeatureSource

    store, (fa, ca, _), _ = _two_source_store(tmp_path / "s.zarr")
    rows = np.array([0, 1, 2, 4, 5, 6, 8])
    streamed = list(FeatureSource(store, spec, DS).iter_batches(rows, 3, shuffle=True, seed=5))
    mem = FeatureSource(store, spec, DS)
    mem.load_into_memory()
    in_ram = list(mem.iter_batches(rows, 3, shuffle=True, seed=5))
    assert [len(b[0]) for b in streamed] == [3, 3, 1]
    assert sorted(np.concatenate([b[0] for b in streamed]).tolist()) == rows.tolist()
    assert np.concatenate([b[0] for b in streamed]).tolist() != rows.tolist()  # really shuffled (seeded)
    assert len(streamed) == len(in_ram)
    for (r1, f1, c1), (r2, f2, c2) in zip(streamed, in_ram):
        np.testing.assert_array_equal(r1, r2)
        assert f1.dtype == f2.dtype
        np.testing.assert_array_equal(f1.numpy(), f2.numpy())
        assert (c1 is None) == (c2 is None)
        if c1 is not None:
            np.testing.assert_array_equal(c1.numpy(), c2.numpy())
        if "+" not in spec:
            np.testing.assert_array_equal(f1.numpy(), fa[r1])
            np.testing.assert_array_equal(c1.numpy(), ca[r1])


def test_incomplete_layer_is_refused_by_reader(tmp_path):
    from declip.store.readers import FeatureSource, LayerReader

    store, samples = new_store(tmp_path / "s.zarr", n=9, block_rows=4)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples))
    write_blocks(store, arrays, [0, 2])
    with pytest.raises(DeclipError, match=r"incomplete \(1 blocks missing\).*re-run\s+`declip extract`"):
        LayerReader(store, BB_A, "layer1", DS)
    with pytest.raises(DeclipError, match="declip extract"):
        FeatureSource(store, f"{BB_A}/layer9", DS)
