"""srm@fixed flows through the store like a backbone layer: extracted, recorded, read back, trained on."""
import numpy as np
import pytest
import torch
from PIL import Image

from declip.features import srm
from declip.features.backbones import load_backbone, state_checksum
from declip.features.preprocess import to_tensor
from declip.core.errors import DeclipError
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.pipeline.train.training import train
from tests.fixtures import train_config
from declip.store.feature_store import FeatureStore


@pytest.fixture(scope="module")
def srm_store(tiny_manifest, tmp_path_factory):
    store = tmp_path_factory.mktemp("srm") / "srm.zarr"
    run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(store), backbone=srm.KEY, layers="all",
                                 batch_size=8, progress=False))
    return store


def test_srm_layer_is_cached_with_its_definition(srm_store):
    fs = FeatureStore(str(srm_store), mode="r")
    arr = fs.open_layer(srm.KEY, srm.LAYER, "dolos-celebahq")
    meta = arr.meta
    assert meta["family"] == "srm" and meta["channels"] == srm.CHANNELS == 63 and list(meta["grid"]) == [16, 16]
    assert meta["definition"]["channels"] == srm.channel_names()
    module = srm.SrmFeatures()
    assert bytes(module.definition_sha256.tolist()).hex() == srm.checksum()  # the checksum covers the definition
    assert meta["weights_checksum"] == state_checksum(module)
    assert meta["recipe"]["name"] == "srm" and meta["recipe"]["size"] == 256 and meta["recipe"]["mean"] == [0.0] * 3
    samples = fs.samples("dolos-celebahq")
    row = int(np.flatnonzero(samples["label"].to_numpy() == 1)[0])
    root = fs.dataset_attrs("dolos-celebahq")["root"]
    bb = load_backbone(srm.KEY)
    recipe = bb.recipe()
    pixels = to_tensor(recipe, Image.open(f"{root}/{samples['image_path'].iloc[row]}").convert("RGB"))
    assert float(pixels.max()) > 1.5  # 0-255 units
    want = srm.SrmFeatures()(pixels[None])[0].numpy()
    got = np.asarray(arr.feats[row], dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)  # stored as float16


def test_srm_trains_like_a_backbone_layer(srm_store, tmp_path):
    summary = train(train_config(srm_store, tmp_path / "run", source=f"{srm.KEY}/{srm.LAYER}", decoder="conv-4",
                                 width=0.125, batch_size=8, max_epochs=2, patience=2, min_steps_per_epoch=4))
    assert summary["epochs"] == 2 and (tmp_path / "run" / "best" / "decoder.pt").exists()


def test_bad_srm_keys_are_refused():
    with pytest.raises(DeclipError, match="srm@fixed"):
        load_backbone("srm@random-0")
    with pytest.raises(DeclipError, match="one layer"):
        load_backbone(srm.KEY).feature_family.layer_info(None, "layer3")
