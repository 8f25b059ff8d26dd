"""One mask orientation for EXIF-rotated JPEGs (issue 21.2): masks belong to the pixels as stored. Scanner,
extraction and both recipes agree, tested with an orientation-6 JPEG and a mask in each orientation.

Oracles: the fake box is found in the image *as each recipe decodes it* (its tint), and the expected masks are
numpy rotations of the hand-drawn stored mask (orientation 6 = stored pixels turned 90° clockwise to be upright).
"""
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from declip.features.images import open_rgb
from declip.pipeline.data.manifest import META_SCAN, read_manifest, scan_dataset, write_manifest
from declip.pipeline.extract.extraction import run_extraction
from declip.store.feature_store import FeatureStore
from tests.fixtures import TINY_BACKBONE, extract_config

STORED_H, STORED_W = 48, 80
BOX = (slice(8, 24), slice(10, 40))  # rows, columns of the fake box in the stored pixels


def _stored_mask() -> np.ndarray:
    mask = np.zeros((STORED_H, STORED_W), np.uint8)
    mask[BOX] = 255
    return mask


def _upright(a: np.ndarray) -> np.ndarray:
    return np.rot90(a, -1)  # EXIF 6: rotate 90° clockwise to view upright


def _dataset(root, mask_orientation: str) -> None:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    pixels = np.clip(rng.normal(110, 10, (STORED_H, STORED_W, 3)), 0, 255)
    pixels[BOX] += (90, -60, -60)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / "images" / "rot.jpg", quality=95,
                                                                    exif=exif.tobytes())
    mask = _stored_mask() if mask_orientation == "stored" else _upright(_stored_mask())
    Image.fromarray(np.ascontiguousarray(mask)).save(root / "masks" / "rot.png")
    for i in range(2):  # untagged neighbours
        noise = rng.integers(0, 255, (STORED_H, STORED_W, 3), dtype=np.uint8)
        Image.fromarray(noise).save(root / "images" / f"p{i}.png")
        Image.fromarray(_stored_mask()).save(root / "masks" / f"p{i}.png")


def _box_in_image(path, exif: bool) -> np.ndarray:
    rgb = np.asarray(open_rgb(path, exif=exif), dtype=int)
    return (rgb[..., 0] - rgb[..., 1]) > 80


def _iou(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("recipe, exif", [("", False), ("~declip+exif", True)])
def test_a_mask_in_the_stored_orientation_lines_up_under_both_recipes(tmp_path, recipe, exif):
    root = tmp_path / "set"
    _dataset(root, "stored")
    result = scan_dataset(root, "pairs", split="test", progress=False)
    assert result.problems.empty, result.problems
    row = result.manifest.set_index("image_path").loc["images/rot.jpg"]
    assert (row["width"], row["height"]) == (STORED_W, STORED_H)  # as stored
    assert result.record.exif_orientations == {"images/rot.jpg": 6}
    write_manifest(result.manifest, tmp_path / "m.parquet", root, "pairs", result.record)

    run_extraction(extract_config(tmp_path / "m.parquet", tmp_path / "s.zarr", backbone=TINY_BACKBONE + recipe))
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    samples = store.samples("set")
    i = int(np.flatnonzero((samples["image_path"] == "images/rot.jpg").to_numpy())[0])
    size = (int(samples["height"][i]), int(samples["width"][i]))
    assert size == ((STORED_W, STORED_H) if exif else (STORED_H, STORED_W))
    native = store.native_mask("set", i, size)
    expected = _upright(_stored_mask() > 127) if exif else _stored_mask() > 127
    np.testing.assert_array_equal(native, expected)
    assert _iou(native, _box_in_image(root / "images" / "rot.jpg", exif)) > 0.9  # the mask sits on the fake box
    soft = store.soft_masks("set", np.array([i]))[0] > 127
    small = np.asarray(Image.fromarray(expected).resize((256, 256), Image.NEAREST))
    assert _iou(soft, small) > 0.9


def test_a_mask_drawn_on_the_upright_image_is_refused_naming_the_fix(tmp_path):
    root = tmp_path / "set"
    _dataset(root, "upright")
    result = scan_dataset(root, "pairs", split="test", progress=False)
    assert "images/rot.jpg" not in set(result.manifest["image_path"])
    problem = result.problems.set_index("path").loc["images/rot.jpg"]
    assert problem["reason"] == "mask-size-mismatch"
    assert "fits the image turned upright by its EXIF orientation 6" in problem["detail"]
    assert "rotate the mask to the stored orientation" in problem["detail"]


@pytest.mark.parametrize("recipe, exif", [("", False), ("~declip+exif", True)])
def test_declips_rules_keep_an_upright_mask_squashed_onto_the_stored_pixels(tmp_path, recipe, exif):
    """DeCLIP reads both files as stored and resizes the mask: kept, resized to the stored size, then turned."""
    root = tmp_path / "set"
    _dataset(root, "upright")
    result = scan_dataset(root, "pairs", split="test", mask_checks="declip", progress=False)
    assert result.record.kept == {"mask-size-mismatch": 1}
    write_manifest(result.manifest, tmp_path / "m.parquet", root, "pairs", result.record)
    run_extraction(extract_config(tmp_path / "m.parquet", tmp_path / "s.zarr", backbone=TINY_BACKBONE + recipe))
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    samples = store.samples("set")
    i = int(np.flatnonzero((samples["image_path"] == "images/rot.jpg").to_numpy())[0])
    native = store.native_mask("set", i, (int(samples["height"][i]), int(samples["width"][i])))
    squashed = np.asarray(Image.fromarray(_upright(_stored_mask())).resize((STORED_W, STORED_H), Image.NEAREST)) > 127
    np.testing.assert_array_equal(native, _upright(squashed) if exif else squashed)


def test_a_manifest_from_before_orientations_were_recorded_registers_alike(tmp_path):
    """Old scans recorded upright sizes and no scan record: the tags are read at registration instead."""
    root = tmp_path / "set"
    _dataset(root, "stored")
    result = scan_dataset(root, "pairs", split="test", progress=False)
    old = result.manifest.copy()
    turned = old["image_path"] == "images/rot.jpg"
    old.loc[turned, ["width", "height"]] = [STORED_H, STORED_W]  # what the old scanner wrote: upright
    write_manifest(old, tmp_path / "m.parquet", root, "pairs")
    table = pq.read_table(tmp_path / "m.parquet")
    meta = {k: v for k, v in table.schema.metadata.items() if k != META_SCAN}
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "m.parquet")
    assert read_manifest(tmp_path / "m.parquet").record is None
    run_extraction(extract_config(tmp_path / "m.parquet", tmp_path / "s.zarr"))
    samples = FeatureStore(str(tmp_path / "s.zarr"), mode="r").samples("set")
    assert samples.loc[samples["image_path"] == "images/rot.jpg", ["width", "height"]].values.tolist() == \
        [[STORED_W, STORED_H]]
