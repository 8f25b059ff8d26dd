"""Inputs that changed or are odd at extraction time: each gets a recorded problem or one clear error (issue 10)."""
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.fixtures import TINY_BACKBONE, extract_config
from declip.core.errors import DeclipError
from declip.pipeline.data.manifest import scan_dataset, write_manifest
from declip.pipeline.extract.extraction import run_extraction
from declip.store.feature_store import FeatureStore


@pytest.fixture
def own_copy(tiny_dolos, tmp_path):
    """A private copy of the tiny dataset and its manifest, free to be changed after the scan."""
    copy = tmp_path / "data"
    shutil.copytree(tiny_dolos, copy)
    result = scan_dataset(copy, "dolos", progress=False)
    write_manifest(result.manifest, tmp_path / "m.parquet", copy, "dolos")
    return copy, tmp_path / "m.parquet", result.manifest


def test_image_replaced_after_scan_is_a_problem_and_strict_stops(own_copy, tmp_path):
    copy, manifest, df = own_copy
    victim = copy / df["image_path"][5]
    Image.fromarray(np.full((64, 64, 3), 7, np.uint8)).save(victim)  # a valid image, but not the scanned one
    stats = run_extraction(extract_config(manifest, tmp_path / "s.zarr"))
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    arrays = store.open_layer(TINY_BACKBONE, "layer0", store.datasets()[0])
    problems = store.layer_problems(arrays)
    assert stats.bad_images == 1 and arrays.valid[5] == 0 and arrays.valid[:].sum() == len(df) - 1
    assert [(p["row"], p["reason"]) for p in problems] == [(5, "changed-since-scan")]
    with pytest.raises(DeclipError, match="changed-since-scan"):
        run_extraction(extract_config(manifest, tmp_path / "t.zarr", strict=True))


def test_disk_full_is_one_error_naming_the_store(own_copy, tmp_path, monkeypatch):
    import errno

    from declip.store.feature_store import FeatureStore as FS

    _, manifest, _ = own_copy
    calls = []

    def full(self, *args, **kw):
        calls.append(1)
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "s.zarr" / "features" / "x"))

    monkeypatch.setattr(FS, "write_block", full)
    with pytest.raises(DeclipError, match=r"store .*s\.zarr: no space left on the device.*free space"):
        run_extraction(extract_config(manifest, tmp_path / "s.zarr"))
    assert calls


def test_truncated_samples_parquet_is_named_then_rebuilt_by_extract(own_copy, tmp_path):
    _, manifest, df = own_copy
    run_extraction(extract_config(manifest, tmp_path / "s.zarr"))
    store = FeatureStore(str(tmp_path / "s.zarr"))
    dataset = store.datasets()[0]
    path = tmp_path / "s.zarr" / "datasets" / dataset / "samples.parquet"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DeclipError, match=r"samples\.parquet is damaged or missing.*re-run `declip extract`"):
        store.samples(dataset)
    run_extraction(extract_config(manifest, tmp_path / "s.zarr"))
    assert len(FeatureStore(str(tmp_path / "s.zarr")).samples(dataset)) == len(df)


def test_mask_deleted_after_scan_is_one_clear_error(own_copy, tmp_path):
    copy, manifest, df = own_copy
    mask = df["mask_path"][df["mask_path"] != ""].iloc[0]
    (copy / mask).unlink()
    with pytest.raises(DeclipError, match=rf"{mask}: missing-file.*re-run `declip data scan`"):
        run_extraction(extract_config(manifest, tmp_path / "s.zarr"))


def test_memory_store_refused_and_file_url_works(own_copy, tmp_path):
    _, manifest, _ = own_copy
    with pytest.raises(DeclipError, match="memory:// store vanishes"):
        run_extraction(extract_config(manifest, "memory://feats.zarr"))
    run_extraction(extract_config(manifest, f"file://{tmp_path}/u.zarr"))
    store = FeatureStore(f"file://{tmp_path}/u.zarr", mode="r")
    assert (tmp_path / "u.zarr" / "zarr.json").exists() and store.open_layer(TINY_BACKBONE, "layer0",
                                                                             store.datasets()[0]).complete


def test_edited_manifest_with_paths_outside_root_is_refused(own_copy, tmp_path):
    import pyarrow.parquet as pq

    from declip.pipeline.data.manifest import read_manifest

    _, manifest, _ = own_copy
    table = pq.read_table(manifest)
    for bad in ("../../etc/passwd.png", "/etc/hosts.png"):
        df = table.to_pandas()
        df.loc[2, "image_path"] = bad
        import pyarrow as pa

        edited = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(table.schema.metadata)
        pq.write_table(edited, tmp_path / "edited.parquet")
        with pytest.raises(DeclipError, match=rf"1 row\(s\) point outside the dataset root \(row 2: {bad}\)"):
            read_manifest(tmp_path / "edited.parquet")


def test_absolute_path_is_joined_without_double_slash(tmp_path):
    from declip.pipeline.data.manifest import Manifest

    import pandas as pd

    m = Manifest(pd.DataFrame(), tmp_path, "list")
    assert str(m.abspath("/abs/x.png")) == "/abs/x.png" and str(m.abspath("a/b.png")) == f"{tmp_path}/a/b.png"


def test_absolute_path_row_is_reported_without_a_double_slash(own_copy, tmp_path):
    copy, _, df = own_copy
    edited = df.copy()
    edited.loc[0, "image_path"] = str(tmp_path / "gone.png")  # allowed at scan time only with --allow-outside-root
    write_manifest(edited, tmp_path / "abs.parquet", copy, "dolos")
    run_extraction(extract_config(tmp_path / "abs.parquet", tmp_path / "s.zarr"))
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    problems = store.layer_problems(store.open_layer(TINY_BACKBONE, "layer0", store.datasets()[0]))
    assert [(p["path"], p["reason"]) for p in problems] == [(str(tmp_path / "gone.png"), "missing-file")]
