"""DeCLIP's keep rules for masks (issue 21.7): `--mask-checks declip` keeps fakes with a size-mismatched, non-binary or
empty mask, the manifest records the rule and the rows each rule removed, and extraction hands that to the store,
where the report reads it (read_scan_record)."""
import numpy as np
import pytest
from PIL import Image

from declip.core.errors import DeclipError
from declip.pipeline.data.manifest import read_manifest, scan_dataset, write_manifest
from declip.pipeline.data.scan_record import ScanRecord, read_scan_record
from declip.pipeline.extract.extraction import run_extraction
from declip.store.feature_store import FeatureStore
from tests.fixtures import extract_config

H, W = 40, 64


def _write(root):
    """Two good fakes, one with a half-size mask, one with a soft (non-binary) mask, one with an empty mask, one with a
    0/1 label map, and one whose mask is missing."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    box = np.zeros((H, W), np.uint8)
    box[10:30, 16:48] = 255
    masks = {"good0": box, "good1": box, "small": box[::2, ::2], "soft": np.tile(np.linspace(0, 255, W), (H, 1)),
             "empty": np.zeros((H, W)), "labels": box // 255}
    for name, mask in masks.items():
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(np.asarray(mask, np.uint8)).save(root / "masks" / f"{name}.png")
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "images" / "lost.png")


def test_strict_rules_count_the_rows_each_rule_removed(tmp_path):
    _write(tmp_path / "set")
    result = scan_dataset(tmp_path / "set", "pairs", split="test", progress=False)
    assert sorted(result.manifest["image_path"]) == ["images/good0.png", "images/good1.png"]
    assert result.record.removed == {"mask-size-mismatch": 1, "mask-not-binary": 2, "empty-mask": 1, "missing-mask": 1}
    assert result.record.kept == {} and result.record.mask_checks == "strict"


def test_declip_rules_keep_those_rows_and_extraction_caches_their_masks(tmp_path):
    _write(tmp_path / "set")
    result = scan_dataset(tmp_path / "set", "pairs", split="test", mask_checks="declip", progress=False)
    assert sorted(result.manifest["image_path"]) == [f"images/{n}.png" for n in
                                                     ("empty", "good0", "good1", "labels", "small", "soft")]
    assert result.record.removed == {"missing-mask": 1}
    assert result.record.kept == {"mask-size-mismatch": 1, "mask-not-binary": 2, "empty-mask": 1}
    kept = result.problems[result.problems["detail"].str.startswith("kept (--mask-checks declip)")]
    assert len(kept) == 4
    write_manifest(result.manifest, tmp_path / "m.parquet", tmp_path / "set", "pairs", result.record)
    assert read_manifest(tmp_path / "m.parquet").record == result.record

    run_extraction(extract_config(tmp_path / "m.parquet", tmp_path / "s.zarr"))
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    samples = store.samples("set").set_index("image_path")
    rows = {_stem(p): i for i, p in enumerate(samples.index)}
    native = {n: store.native_mask("set", rows[n], (H, W)) for n in rows}
    box = np.zeros((H, W), bool)
    box[10:30, 16:48] = True
    np.testing.assert_array_equal(native["good0"], box)
    np.testing.assert_array_equal(native["small"], box)  # the half-size box, scaled back up (nearest)
    assert not native["empty"].any() and not native["labels"].any()  # DeCLIP: value/255 > 0.5, so 0/1 reads all-real
    np.testing.assert_array_equal(native["soft"], np.tile(np.linspace(0, 255, W).astype(np.uint8) > 127, (H, 1)))

    record = read_scan_record(str(tmp_path / "s.zarr"), "set")
    assert record == result.record and record.removed_line().startswith("rows left out by rule: missing-mask 1")


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def test_a_manifest_written_without_its_record_gets_one_inferred(tiny_store):
    dataset = FeatureStore(str(tiny_store), mode="r").datasets()[0]
    record = read_scan_record(str(tiny_store), dataset)  # conftest writes the tiny manifest without a record
    assert record.split_rule.rule == "folders" and record.mask_checks == "strict" and record.exif_orientations == {}


def test_record_round_trip_and_unknown_rules():
    record = ScanRecord(mask_checks="declip", removed={"missing-file": 2}, kept={"empty-mask": 1},
                        exif_orientations={"a.jpg": 6})
    assert ScanRecord.from_json(record.to_json()) == record
    with pytest.raises(DeclipError, match="--mask-checks 'loose'"):
        scan_dataset(".", "pairs", mask_checks="loose", progress=False)
