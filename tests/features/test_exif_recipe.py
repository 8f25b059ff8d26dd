"""EXIF orientation is a recorded recipe option: DeCLIP's recipe reads images and masks as stored (as DeCLIP does),
``+exif`` turns both upright; a dataset's masks follow the recipe that cached them and the other setting is refused."""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from declip.core.errors import DeclipError
from declip.features.backbones import load_backbone
from declip.features.images import open_mask_gray, open_rgb
from declip.features.preprocess import make_recipe, to_tensor
from declip.features.taps import forward_layers
from declip.pipeline.data.masks import fake_is_white, soft_target_256

ROTATE_90_CW = 6  # EXIF orientation tag: the stored pixels must be rotated to be seen upright


def _tag(path, orientation=ROTATE_90_CW):
    im = Image.open(path)
    im.load()
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif.tobytes())


def test_recipes_record_their_exif_setting():
    assert make_recipe("declip", 224, (0, 0, 0), (1, 1, 1)).to_dict()["exif_orientation"] == "ignore"
    assert make_recipe("openclip", 224, (0, 0, 0), (1, 1, 1)).exif_orientation == "ignore"
    upright = make_recipe("declip+exif", 224, (0, 0, 0), (1, 1, 1))
    assert upright.applies_exif and upright.interpolation == "bilinear" and not upright.crop
    with pytest.raises(DeclipError, match="unknown preprocessing recipe"):
        make_recipe("declip+rotate", 224, (0, 0, 0), (1, 1, 1))


def test_decoding_with_and_without_exif(tmp_path):
    raw = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "tagged.png"
    Image.fromarray(raw).save(path)
    _tag(path)
    np.testing.assert_array_equal(np.asarray(open_rgb(path, exif=False)), raw)
    np.testing.assert_array_equal(np.asarray(open_rgb(path, exif=True)), np.rot90(raw, -1))
    mask = tmp_path / "mask.png"
    Image.fromarray(raw[..., 0]).save(mask)
    _tag(mask)
    assert open_mask_gray(mask, exif=False).shape == (20, 30) and open_mask_gray(mask, exif=True).shape == (30, 20)


@pytest.fixture(scope="module")
def tagged_manifest(tiny_dolos, tmp_path_factory):
    """The tiny Dolos tree with one fake test image and its mask carrying an EXIF 90° rotation."""
    from declip.pipeline.data.manifest import scan_dataset, write_manifest

    root = tmp_path_factory.mktemp("exif") / "dolos"
    shutil.copytree(tiny_dolos, root)
    image = sorted((root / "celebahq" / "fake" / "tint" / "images" / "test").glob("*.png"))[0]
    mask = root / "celebahq" / "fake" / "tint" / "masks" / "test" / image.name
    # squared first, so a tagged mask fits its image either way (non-square: tests/pipeline/data/test_orientation.py)
    side = min(Image.open(image).size)
    Image.open(image).convert("RGB").resize((side, side), Image.BICUBIC).save(image)
    Image.open(mask).convert("L").resize((side, side), Image.NEAREST).save(mask)
    _tag(image)
    _tag(mask)
    result = scan_dataset(root, "dolos", progress=False)
    path = root.parent / "manifest.parquet"
    write_manifest(result.manifest, path, root, "dolos")
    return path, image, mask


def _extract(manifest, store, backbone):
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction

    run_extraction(ExtractConfig(manifest=str(manifest), store=str(store), backbone=backbone, layers="layer0",
                                 batch_size=8, progress=False))


def _row_of(store, name):
    from declip.store.feature_store import FeatureStore

    fs = FeatureStore(str(store), mode="r")
    samples = fs.samples("dolos-celebahq")
    return fs, int(np.flatnonzero(samples["image_path"].str.endswith("/" + name).to_numpy())[0])


@pytest.mark.parametrize("recipe, exif", [("", False), ("~declip+exif", True)])
def test_extraction_orients_images_and_masks_by_the_recipe(tagged_manifest, tmp_path, recipe, exif):
    manifest, image, mask = tagged_manifest
    key = f"test-vit-tiny@random-0{recipe}"
    _extract(manifest, tmp_path / "s.zarr", key)
    fs, row = _row_of(tmp_path / "s.zarr", image.name)
    arrays = fs.open_layer(key, "layer0", "dolos-celebahq")
    assert arrays.meta["recipe"]["exif_orientation"] == ("apply" if exif else "ignore")
    assert fs.dataset_attrs("dolos-celebahq")["mask_exif_orientation"] == ("apply" if exif else "ignore")

    backbone = load_backbone(key)
    rec = make_recipe(backbone.key.recipe, backbone.image_size, backbone.mean, backbone.std)
    expected, other = (forward_layers(backbone, to_tensor(rec, open_rgb(image, exif=e))[None], ["layer0"])["layer0"][0]
                       for e in (exif, not exif))
    stored = torch.from_numpy(np.asarray(arrays.feats[row], dtype=np.float32))
    torch.testing.assert_close(stored, expected[0], atol=2e-2, rtol=1e-2)
    assert (stored - other[0]).abs().max() > 0.1

    want = soft_target_256(fake_is_white(open_mask_gray(mask, exif=exif), "fake_is_black"))
    np.testing.assert_array_equal(fs.soft_masks("dolos-celebahq", np.array([row]))[0], want)
    unwanted = soft_target_256(fake_is_white(open_mask_gray(mask, exif=not exif), "fake_is_black"))
    assert not np.array_equal(want, unwanted)


def test_a_dataset_refuses_the_other_orientation(tagged_manifest, tmp_path):
    manifest, _, _ = tagged_manifest
    _extract(manifest, tmp_path / "s.zarr", "test-vit-tiny@random-0")
    with pytest.raises(DeclipError, match="exif_orientation='ignore', but this recipe applies it"):
        _extract(manifest, tmp_path / "s.zarr", "test-vit-tiny@random-0~declip+exif")

