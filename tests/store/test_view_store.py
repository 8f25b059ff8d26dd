"""Views through the shared extraction path: the manifest's sha256 is checked on the original file, the recipe's EXIF
setting applies before the view (masks of geometric views follow), and view copies get checksums and verify."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures import TINY_BACKBONE
from declip.features.backbones import load_backbone
from declip.features.images import open_mask_gray, open_rgb
from declip.features.preprocess import make_recipe, resize_for, to_tensor
from declip.features.taps import forward_layers
from declip.features.views import View
from declip.pipeline.data.manifest import scan_dataset, write_manifest
from declip.pipeline.data.masks import fake_is_white, soft_target_256
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.store.feature_store import FeatureStore
from declip.store.readers import LayerReader
from declip.store.verify import verify_store
from tests.store.store_fixtures import sample_chunk

DATASET = "dolos-celebahq"


def _extract(manifest, store, backbone=TINY_BACKBONE, **kw):
    return run_extraction(ExtractConfig(manifest=str(manifest), store=str(store), backbone=backbone,
                                        layers="layer0", batch_size=8, progress=False, **kw))


def _tag(path, orientation=6):
    im = Image.open(path)
    im.load()
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif.tobytes())


@pytest.fixture
def own_copy(tiny_dolos, tmp_path):
    root = tmp_path / "dolos"
    shutil.copytree(tiny_dolos, root)
    return root


def _scan(root, path):
    result = scan_dataset(root, "dolos", progress=False)
    write_manifest(result.manifest, path, root, "dolos")
    return path, result.manifest


def test_view_extraction_checks_the_original_files_sha256(own_copy, tmp_path):
    manifest, df = _scan(own_copy, tmp_path / "m.parquet")
    victim = int(np.flatnonzero((df["split"] == "test").to_numpy())[0])
    Image.fromarray(np.full((48, 80, 3), 7, np.uint8)).save(own_copy / df["image_path"][victim])
    stats = _extract(manifest, tmp_path / "s.zarr", view="jpeg:50", splits=("test",))
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    arrays = store.open_layer(TINY_BACKBONE, "layer0", f"{DATASET}@jpeg:50")
    assert stats.bad_images == 1 and arrays.valid[victim] == 0
    assert [(p["row"], p["reason"]) for p in store.layer_problems(arrays)] == [(victim, "changed-since-scan")]


def test_exif_recipe_applies_before_a_geometric_view_and_masks_follow(own_copy, tmp_path):
    image = sorted((own_copy / "celebahq" / "fake" / "tint" / "images" / "test").glob("*.png"))[0]
    mask = own_copy / "celebahq" / "fake" / "tint" / "masks" / "test" / image.name
    _tag(image)
    _tag(mask)
    manifest, df = _scan(own_copy, tmp_path / "m.parquet")
    key = f"{TINY_BACKBONE}~declip+exif"
    _extract(manifest, tmp_path / "s.zarr", key, view="resize:0.5")
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    view_key = f"{DATASET}@resize:0.5"
    samples = store.samples(view_key)
    row = int(np.flatnonzero(samples["image_path"].str.endswith("/" + image.name).to_numpy())[0])
    assert store.dataset_attrs(view_key)["mask_exif_orientation"] == "apply"
    assert (samples["width"][row], samples["height"][row]) == (24, 40)  # upright 48x80 -> tagged 80x48, halved

    view = View.parse("resize:0.5")
    backbone = load_backbone(key)
    rec = make_recipe(backbone.key.recipe, backbone.image_size, backbone.mean, backbone.std)
    image_id = samples["image_path"][row]

    def features(exif):
        im = view.apply(open_rgb(image, exif=exif), image_id, lambda x: resize_for(rec, x))
        return forward_layers(backbone, to_tensor(rec, im)[None], ["layer0"])["layer0"][0][0]

    stored = torch.from_numpy(np.asarray(store.open_layer(key, "layer0", view_key).feats[row], dtype=np.float32))
    torch.testing.assert_close(stored, features(True), atol=2e-2, rtol=1e-2)
    assert (stored - features(False)).abs().max() > 0.1

    upright = view.apply_mask(fake_is_white(open_mask_gray(mask, exif=True), "fake_is_black"))
    assert upright.shape == (40, 24)
    np.testing.assert_array_equal(store.soft_masks(view_key, np.array([row]))[0], soft_target_256(upright))
    np.testing.assert_array_equal(store.native_mask(view_key, row, (40, 24)), upright > 127)


def test_view_copies_are_checksummed_verified_and_redone(tiny_manifest, tmp_path):
    path = tmp_path / "s.zarr"
    _extract(tiny_manifest, path)
    _extract(tiny_manifest, path, view="jpeg:50", splits=("test",))  # photometric, one split: a partial group
    _extract(tiny_manifest, path, view="resize:0.5")  # geometric: its own masks
    store = FeatureStore(str(path))
    report = verify_store(store)
    assert not [d for d in report if d.blocks or d.unchecked], [(d.path, d.blocks, d.unchecked) for d in report]
    assert {f"features/{TINY_BACKBONE}/layer0/{DATASET}@jpeg:50", f"datasets/{DATASET}@resize:0.5"} <= {
        d.path for d in report}

    jpeg = f"{DATASET}@jpeg:50"
    arrays = store.open_layer(TINY_BACKBONE, "layer0", jpeg)
    assert not arrays.complete and arrays.sums is not None
    before = LayerReader(store, TINY_BACKBONE, "layer0", jpeg, partial=True).read_all().feats
    block = int(np.flatnonzero(arrays.done[:])[0])
    row = arrays.block_range(block)[0]
    sample_chunk(path / "features" / TINY_BACKBONE / "layer0" / jpeg / "feats", row).unlink()
    bad = {d.path: d.blocks for d in verify_store(store, redo=True) if d.blocks}
    assert bad == {f"features/{TINY_BACKBONE}/layer0/{jpeg}": [block]}
    _extract(tiny_manifest, path, view="jpeg:50", splits=("test",))
    again = LayerReader(FeatureStore(str(path), mode="r"), TINY_BACKBONE, "layer0", jpeg, partial=True).read_all().feats
    assert again.tobytes() == before.tobytes()
