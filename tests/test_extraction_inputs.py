"""Inputs that changed or are odd at extraction time: each gets a recorded problem or one clear error (issue 10)."""
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_BACKBONE
from core.errors import DeclipError
from pipeline.data.manifest import scan_dataset, write_manifest
from pipeline.runs.extraction import ExtractConfig, run_extraction
from store.feature_store import FeatureStore


@pytest.fixture
def own_copy(tiny_dolos, tmp_path):
    """A private copy of the tiny dataset and its manifest, free to be changed after the scan."""
    copy = tmp_path / "data"
    shutil.copytree(tiny_dolos, copy)
    result = scan_dataset(copy, "dolos", progress=False)
    write_manifest(result.manifest, tmp_path / "m.parquet", copy, "dolos")
    return copy, tmp_path / "m.parquet", result.manifest


def _cfg(manifest, store, **kw):
    return ExtractConfig(manifest=str(manifest), store=str(store), backbone=TINY_BACKBONE, layers="layer0",
                         batch_size=8, progress=False, **kw)


def test_image_replaced_after_scan_is_a_problem_and_strict_stops(own_copy, tmp_path):
    copy, manifest, df = own_copy
    victim = copy / df["image_path"][5]
    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(victim)  # a valid image, but not the scanned one
    stats = run_extraction(_cfg(manifest, tmp_path / "s.zarr"))
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    arrays = store.open_layer(TINY_BACKBONE, "layer0", store.datasets()[0])
    problems = store.layer_problems(arrays)
    assert stats.bad_images == 1 and arrays.valid[5] == 0 and arrays.valid[:].sum() == len(df) - 1
    assert [(p["row"], p["reason"]) for p in problems] == [(5, "changed-since-scan")]
    with pytest.raises(DeclipError, match="changed-since-scan"):
        run_extraction(_cfg(manifest, tmp_path / "t.zarr", strict=True))
