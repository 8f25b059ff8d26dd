"""The setup's dataset part: register a manifest's rows (and a view's copy) in the store and cache their masks.

Part of the extraction setup (:func:`declip.pipeline.extract.extraction.prepare_extraction`), which is the only
writer of store metadata: block-range tasks never come here.
"""
from __future__ import annotations

import math
import os

import numpy as np
from tqdm.auto import tqdm

from declip.core.errors import DeclipError
from declip.core.keys import view_dataset_key
from declip.features.views import View
from declip.pipeline.data.manifest import read_manifest
from declip.pipeline.data.orientation import manifest_rows, row_mask
from declip.pipeline.data.scan_record import ScanRecord
from declip.store.feature_store import FeatureStore


def dataset_key_for(manifest_df, override: str | None) -> str:
    if override:
        return override
    names = sorted(set(manifest_df["dataset"]))
    if len(names) != 1:
        raise DeclipError(f"the manifest mixes datasets {names}; pass --dataset NAME to name the cached copy")
    return names[0]


def prepare_dataset(store: FeatureStore, manifest_path: str, dataset: str | None, progress: bool,
                    block_rows: int = 64, exif: bool = False) -> str:
    """Register the manifest's rows in the store and cache its masks (soft 256² targets, native binary masks).

    A new dataset's masks are written in blocks of ``block_rows`` (the extraction batch), each under the store lock.
    Masks are oriented like the images of the recipe that first caches them (``exif``: EXIF orientation applied);
    the dataset records it, and a recipe that orients images the other way is refused for this dataset.
    """
    manifest = read_manifest(manifest_path)
    df, record = manifest_rows(manifest, exif)  # sizes as the recipe sees the images (pipeline.data.orientation)
    df = df.reset_index(drop=True)
    key = dataset_key_for(df, dataset)
    store.create_dataset(key, df, str(manifest.root), manifest.layout, block_rows=block_rows)
    if store.dataset_attrs(key).get("scan") != record.to_json():  # the split rule, rows each rule removed: the report
        with store.lock(f"dataset-{key}"):
            store.set_dataset_attrs(key, scan=record.to_json())
    _cache_masks(store, key, df, manifest.abspath, exif, None, progress, record)
    return key


def prepare_view_dataset(store: FeatureStore, dataset: str, view: View, progress: bool, exif: bool = False) -> str:
    """Register ``dataset@view``: the same rows, sizes as the view leaves them, masks moved by geometric views.

    A photometric view reads the clean dataset's masks (nothing is stored twice). A geometric view's masks are read
    as the recipe orients them (``exif``, like the clean dataset's), then moved by the view.
    """
    if view.is_clean:
        return dataset
    key = view_dataset_key(dataset, view.name)
    attrs = store.dataset_attrs(dataset)
    clean = store.samples(dataset)
    df = clean
    if view.geometric:
        sizes = [view.image_size(int(w), int(h)) for w, h in df[["width", "height"]].itertuples(index=False)]
        df = df.assign(width=[w for w, _ in sizes], height=[h for _, h in sizes])
    store.create_dataset(key, df, attrs["root"], attrs["layout"], int(attrs["block_rows"]), view=view.record(),
                         masks_of=None if view.geometric else dataset)
    if view.geometric:
        root = attrs["root"]
        _cache_masks(store, key, clean, lambda rel: os.path.normpath(os.path.join(root, rel)), exif, view, progress,
                     ScanRecord.from_json(attrs.get("scan") or {}))
    return key


def _cache_masks(store: FeatureStore, key: str, df, abspath, exif: bool, view: View | None, progress: bool,
                 record: ScanRecord) -> None:
    """Soft 256² targets and native binary masks of every pending block of ``key``.

    ``df`` holds the registered rows (clean sizes as the recipe sees the images); each mask is read aligned with its
    image (:func:`~declip.pipeline.data.orientation.row_mask`: the scan's orientation and mask rules), then moved by
    ``view``'s geometry (if any).
    """
    from declip.pipeline.data.masks import binary_native, soft_target_256

    pending = store.pending_mask_blocks(key)
    block_rows = int(store.dataset_attrs(key)["block_rows"])
    _check_mask_orientation(store, key, exif, fresh=len(pending) == max(1, math.ceil(len(df) / block_rows)))
    has_mask = ((df["label"] == 1) & (df["mask_path"].fillna("").astype(str) != "")).to_numpy()
    for block in tqdm(pending, desc=f"masks {key}", unit="block", disable=not progress or len(pending) == 0):
        rows = range(block * block_rows, min((block + 1) * block_rows, len(df)))
        soft = np.zeros((len(rows), 256, 256), dtype=np.uint8)
        native: list[np.ndarray | None] = []
        for i, row in enumerate(rows):
            if has_mask[row]:  # a fake with a mask file; every other row has none (read as all zero)
                rec = df.iloc[row]
                mask = row_mask(abspath(rec["mask_path"]), rec, record, exif)
                if view is not None:
                    mask = view.apply_mask(mask)
                soft[i] = soft_target_256(mask)
                native.append(binary_native(mask))
            else:
                native.append(None)
        store.write_masks(key, int(block), soft, native)


def _check_mask_orientation(store: FeatureStore, key: str, exif: bool, fresh: bool) -> None:
    wanted = "apply" if exif else "ignore"
    recorded = store.dataset_attrs(key).get("mask_exif_orientation")
    if recorded is None:
        if not fresh:
            recorded = "apply"  # masks cached before the setting existed were always turned upright
        else:
            store.set_dataset_attrs(key, mask_exif_orientation=wanted)
            return
    if recorded != wanted:
        raise DeclipError(
            f"dataset {key!r} in {store.url} caches its masks with exif_orientation={recorded!r}, but this recipe "
            f"{'applies' if exif else 'ignores'} it, so masks and images would not line up; register the manifest "
            f"again under another --dataset name (or use another store) for this recipe"
        )
