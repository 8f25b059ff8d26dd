"""Builders of tiny feature stores shared by the store tests (tests/store/test_*.py), written directly with
:class:`declip.store.feature_store.FeatureStore` (no extraction, no model): every value written is a deterministic
function of (seed, block), so each check compares against an exact expectation. Importable by spawned writers too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from declip.store.feature_store import FeatureStore, dataset_checksum

BB_A, BB_B, DS = "bbA@random-0", "bbB@random-0", "ds"


def sample_chunk(array_dir: Path, row: int) -> Path:
    """The chunk file of ``row`` in a one-sample-per-chunk array, by the chunk key encoding its metadata records
    (feature arrays use flat ``c.ROW.0.0.0`` keys; older stores and other arrays nested ``c/ROW/0/0/0`` ones)."""
    import zarr

    array = zarr.open_array(str(array_dir), mode="r")
    return array_dir / array.metadata.encode_chunk_key((row,) + (0,) * (array.ndim - 1))


def make_samples(n: int, sizes: list[tuple[int, int]] | None = None, tag: str = "") -> pd.DataFrame:
    """n rows; odd rows are fake with a mask, even rows real. ``sizes`` gives (height, width) per row."""
    sizes = sizes or [(16, 24)] * n
    return pd.DataFrame({
        "image_path": [f"img/{tag}{i:03d}.png" for i in range(n)],
        "mask_path": [f"mask/{tag}{i:03d}.png" if i % 2 else None for i in range(n)],
        "sha256": [f"{tag}{i:064d}"[-64:] for i in range(n)],
        "width": [w for _, w in sizes],
        "height": [h for h, _ in sizes],
        "label": [i % 2 for i in range(n)],
        "generator": ["g" if i % 2 else "real" for i in range(n)],  # an extra column: kept
    })


def make_meta(samples: pd.DataFrame, backbone: str = BB_A, layer: str = "layer1", channels: int = 3,
              grid=(4, 5), block_rows: int = 4, has_cls: bool = True) -> dict:
    return {
        "backbone": backbone, "layer": layer, "channels": channels, "grid": list(grid), "has_cls": has_cls,
        "n_rows": len(samples), "block_rows": block_rows, "family": "vit" if has_cls else "resnet",
        "weights_checksum": "w" * 16, "dataset_checksum": dataset_checksum(samples),
        "recipe": {"size": 224, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "dtype": "float32"},
        "random_weights": True, "semantics": "block output tokens (pre-LN)", "activation": "gelu",
    }


def block_data(arrays, block: int, seed: int = 0):
    """Deterministic (feats, cls, valid) for a block: never all-zero, so every chunk is really written."""
    lo, hi = arrays.block_range(block)
    c, h, w = arrays.feats.shape[1:]
    rng = np.random.default_rng([seed, block])
    feats = (rng.standard_normal((hi - lo, c, h, w)) + 3).astype(np.float16)
    cls = (rng.standard_normal((hi - lo, c)) + 3).astype(np.float16)
    valid = np.ones(hi - lo, dtype=np.uint8)
    valid[0] = block % 2  # some unreadable rows
    return feats, cls, valid


def expected_layer(arrays, seed: int = 0):
    parts = [block_data(arrays, b, seed) for b in range(arrays.done.shape[0])]
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def write_blocks(store: FeatureStore, arrays, blocks, seed: int = 0) -> None:
    for b in blocks:
        f, c, v = block_data(arrays, int(b), seed)
        store.write_block(arrays, int(b), f, c if arrays.cls is not None else None, v,
                          [{"row": arrays.block_range(int(b))[0], "reason": "x"}] if b == 0 else [])


def new_store(path: Path, n: int = 10, block_rows: int = 4) -> tuple[FeatureStore, pd.DataFrame]:
    store = FeatureStore(str(path))
    samples = make_samples(n)
    store.create_dataset(DS, samples, "/data", "list", block_rows=block_rows)
    return store, samples


def full_layer(path: Path, n: int = 10, block_rows: int = 4, **meta_kw):
    store, samples = new_store(path, n, block_rows)
    arrays = store.open_layer(BB_A, "layer1", DS, make_meta(samples, block_rows=block_rows, **meta_kw))
    write_blocks(store, arrays, range(arrays.done.shape[0]))
    return store, samples, arrays


def chunk_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and "zarr.json" not in p.name}


def root_race_hook(meeting: Path, parties: int, timeout: float = 300.0):
    """A ``store.base.BEFORE_ROOT_CREATION`` hook that forces the first-open race among ``parties`` writers (threads
    or processes): each arrives having looked and found no root; once all have, the one whose marker sorts first
    creates the root and every other one tries only after the root exists: the interleaving that used to fail."""
    import os
    import threading
    import time

    def wait(until, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise TimeoutError(f"root race: waited {timeout:.0f}s for {what}")
            time.sleep(0.005)

    def hook(url: str) -> None:
        meeting.mkdir(parents=True, exist_ok=True)
        mine = f"{os.getpid():08d}-{threading.get_ident():020d}"
        (meeting / mine).touch()
        wait(lambda: len(list(meeting.iterdir())) >= parties, f"{parties} writers at {meeting}")
        if sorted(p.name for p in meeting.iterdir())[0] != mine:
            wait(lambda: (Path(url) / "zarr.json").exists(), f"{url}/zarr.json")

    return hook
