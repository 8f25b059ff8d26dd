"""HDF5 export/import of one (backbone, layer, dataset) slice: for tools that want one file, not a zarr tree.

The file holds ``feats`` (N, C, H, W) in the store's dtype, ``scales`` for quantized features, ``cls`` when present,
``valid``, and the feature metadata as a JSON attribute; import writes it back into a store (refusing a mismatch like
any other write) and marks it complete. Export reads through :class:`store.readers.LayerReader`, so a damaged chunk
stops it (naming the block) instead of being copied out as data.
"""
from __future__ import annotations

import json

import h5py
import numpy as np

from declip.core.errors import DeclipError
from declip.core.io import atomic_path
from declip.core.keys import parse_store_key
from declip.store.feature_store import FeatureStore
from declip.store.readers import LayerReader

_ROWS_PER_COPY = 256


def export_hdf5(store: FeatureStore, backbone: str, layer: str, dataset: str, out: str) -> str:
    arrays = store.open_layer(backbone, layer, dataset)
    if not arrays.complete:
        raise DeclipError(f"{arrays.path} is incomplete; finish `declip extract` before exporting it")
    reader = LayerReader(store, backbone, layer, dataset)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        n = arrays.n_rows
        dset = f.create_dataset("feats", shape=arrays.feats.shape, dtype=arrays.feats.dtype,
                                chunks=(1, *arrays.feats.shape[1:]))
        small = {name: f.create_dataset(name, shape=a.shape, dtype=a.dtype)
                 for name, a in (("cls", arrays.cls), ("scales", arrays.scales)) if a is not None}
        for lo in range(0, n, _ROWS_PER_COPY):
            raw = reader.read_rows(np.arange(lo, min(n, lo + _ROWS_PER_COPY)))
            dset[lo:lo + len(raw.feats)] = raw.feats
            for name, part in (("cls", raw.cls), ("scales", raw.scales)):
                if part is not None:
                    small[name][lo:lo + len(part)] = part
        f.create_dataset("valid", data=reader.valid().astype(arrays.valid.dtype))
        f.attrs["meta"] = json.dumps(arrays.meta)
        f.attrs["key"] = f"{backbone}/{layer}/{dataset}"
        # unreadable-image records, per block
        f.attrs["problems"] = json.dumps({str(b): records for b, records in store.block_problems(arrays).items()})
        samples = store.samples(dataset)
        f.create_dataset("image_path", data=np.array(samples["image_path"].tolist(), dtype=h5py.string_dtype()))
    return out


def import_hdf5(store: FeatureStore, path: str) -> str:
    """Write an exported slice back; the dataset must already be registered in ``store`` with the same rows."""
    with h5py.File(path, "r") as f:
        meta = json.loads(f.attrs["meta"])
        layer_key, dataset = parse_store_key(str(f.attrs["key"]))
        backbone, layer = str(layer_key.backbone), layer_key.layer
        store.samples(dataset)  # raises a clear error when the dataset is not registered
        registered = store.dataset_attrs(dataset)
        for field, have in (("dataset_checksum", registered.get("dataset_checksum")),
                            ("n_rows", registered.get("n_rows"))):
            if meta.get(field) != have:
                raise DeclipError(
                    f"{path} holds features for other rows than dataset {dataset!r} in {store.url} ({field}: file "
                    f"{meta.get(field)!r} vs store {have!r}). Nothing was changed. Import it into a store whose "
                    f"{dataset!r} was registered from the same manifest."
                )
        identity = {k: v for k, v in meta.items() if k not in ("created", "versions", "layout")}
        arrays = store.open_layer(backbone, layer, dataset, identity)
        problems = json.loads(f.attrs.get("problems", "{}"))
        feats, valid = f["feats"], f["valid"][:]
        cls = f["cls"][:] if "cls" in f else None
        scales = f["scales"][:] if "scales" in f else None
        for block in arrays.pending_blocks():
            lo, hi = arrays.block_range(int(block))
            store.write_block(arrays, int(block), feats[lo:hi], None if cls is None else cls[lo:hi],
                              valid[lo:hi], problems.get(str(int(block)), []),
                              None if scales is None else scales[lo:hi])
    return f"{backbone}/{layer}/{dataset}"

