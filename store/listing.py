"""What a store holds, for ``declip store ls`` / ``info``: datasets with their subsets and splits (the names
``train``/``evaluate``/``grid`` take), and feature arrays with shapes, rows done, bytes, metadata."""
from __future__ import annotations

import pandas as pd

from declip.core.errors import DeclipError
from declip.core.keys import parse_store_key
from declip.store.feature_store import FeatureStore


SPLIT_ORDER = ("train", "valid", "test")


def dataset_subsets(store: FeatureStore, dataset: str) -> pd.DataFrame:
    """Image counts of one cached dataset: a row per subset (generator or ``real``), a column per split, a total."""
    if dataset not in store.datasets():
        known = ", ".join(store.datasets()) or "none"
        raise DeclipError(f"dataset {dataset!r} is not in store {store.url} (datasets: {known}); "
                          "`declip extract --manifest M --store S` registers a manifest's dataset")
    samples = store.samples(dataset)
    split = _column(samples, "split").rename("split")
    table = pd.crosstab(_column(samples, "subset").rename("subset"), split)
    known = [s for s in SPLIT_ORDER if s in table.columns]
    table = table[known + sorted(c for c in table.columns if c not in known)]
    table["total"] = table.sum(axis=1)
    return table


def _column(samples: pd.DataFrame, name: str) -> pd.Series:
    """A manifest column with blanks shown as ``-``; stores registered from bare sample tables may lack it."""
    if name not in samples:
        return pd.Series("-", index=samples.index)
    return samples[name].replace("", "-")


def list_entries(store: FeatureStore) -> pd.DataFrame:
    rows = []
    for backbone, layer, dataset in store.iter_layers():
        arrays = store.open_layer(backbone, layer, dataset)
        done = arrays.done[:]
        rows_done = sum(min(arrays.block_range(b)[1], arrays.n_rows) - arrays.block_range(b)[0]
                        for b in range(len(done)) if done[b])
        rows.append({
            "key": f"{backbone}/{layer}/{dataset}", "shape": "×".join(map(str, arrays.feats.shape)),
            "dtype": arrays.storage_dtype, "rows_done": f"{rows_done}/{arrays.n_rows}",
            "complete": bool(done.all()), "bytes": store.nbytes(arrays.path),
            "random_weights": bool(arrays.meta.get("random_weights")),
        })
    return pd.DataFrame(rows, columns=["key", "shape", "dtype", "rows_done", "complete", "bytes", "random_weights"])


def entry_info(store: FeatureStore, key: str) -> dict:
    layer, dataset = parse_store_key(key)
    arrays = store.open_layer(str(layer.backbone), layer.layer, dataset)
    problems = store.layer_problems(arrays)
    valid = arrays.valid[:]
    return {
        "key": key, "shape": list(arrays.feats.shape), "dtype": arrays.storage_dtype,
        "chunks": list(arrays.feats.chunks), "blocks_done": int(arrays.done[:].sum()),
        "blocks_total": int(arrays.done.shape[0]), "rows_valid": int(valid.sum()), "bytes": store.nbytes(arrays.path),
        "unreadable": problems, "meta": arrays.meta,
    }
