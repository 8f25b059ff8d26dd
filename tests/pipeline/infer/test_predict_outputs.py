"""What ``declip predict`` writes (issue 19 item 9): float maps beside the 8-bit PNGs, an original | map panel with
a colour bar instead of a red tint, whole-pixel sizes, the random-weight note; and (issue 21 item 5) a backbone given
as ``ARCH@FILE`` loads from that file, with no false GELU warning for an ``-quickgelu`` architecture."""
import json
import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from declip.features.open_clip import CONFIG_DIR, create_open_clip
from declip.core.keys import BackboneKey
from declip.pipeline.infer.panels import outlined
from declip.pipeline.infer.predict import predict
from declip.pipeline.train.training import train
from tests.fixtures import TINY_BACKBONE, TINY_SIZE, train_config


@pytest.fixture(scope="module")
def checkpoint(tiny_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(train_config(tiny_store, out, batch_size=8, max_epochs=1))
    return out / "best"


@pytest.fixture(scope="module")
def images(tiny_dolos, tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    for path in sorted((tiny_dolos / "celebahq" / "fake" / "tint" / "images" / "test").glob("*.png"))[:2]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.png").write_bytes(b"no image")
    return folder


def test_float_maps_panels_and_sizes(checkpoint, images, tmp_path):
    table = predict(str(checkpoint), [str(images)], str(tmp_path), progress=False)
    assert table.attrs["random_weights"] and table.attrs["source"] == f"{TINY_BACKBONE}/layer1"
    assert str(table["width"].dtype) == "Int64" and str(table["height"].dtype) == "Int64"
    ok = table[table["status"] == "ok"]
    height, width = TINY_SIZE
    for rec in ok.itertuples():
        exact = np.load(tmp_path / rec.float_map)
        png = np.asarray(Image.open(tmp_path / rec.map)) / 255.0
        assert exact.dtype == np.float32 and exact.shape == (height, width)
        np.testing.assert_allclose(png, exact, atol=0.5 / 255 + 1e-6)  # the PNG is the float map rounded
        assert rec.image_score == pytest.approx(float(exact.mean()), rel=1e-6)
        panel = Image.open(tmp_path / "overlays" / rec.map.split("/")[-1])
        assert panel.width > 2 * panel.height  # original | map (+ colour bar) side by side, for an 80×48 image


def test_the_panels_original_is_untouched_outside_the_outline():
    """A uniform p = 0.3 (below the threshold) used to tint the whole photo red; now the original is shown as is."""
    image = Image.fromarray(np.full((6, 8, 3), 100, np.uint8))
    assert (outlined(image, np.full((6, 8), 0.3), 0.5) == 100).all()
    prob = np.zeros((6, 8))
    prob[1:5, 2:6] = 0.9
    drawn = outlined(image, prob, 0.5)
    assert (drawn[1, 2] == (255, 255, 0)).all() and (drawn[2, 3] == 100).all() and (drawn[0, 0] == 100).all()


def test_a_backbone_given_as_a_file_loads_from_that_file(checkpoint, images, tmp_path):
    """It failed with "open_clip has no pretrained tag 'file-<sha>'": the file's path was dropped on the way."""
    weights = tmp_path / "tiny.pt"
    torch.save(create_open_clip(BackboneKey.parse(TINY_BACKBONE)).state_dict(), weights)  # the same weights
    by_tag = predict(str(checkpoint), [str(images)], str(tmp_path / "a"), progress=False)
    by_file = predict(str(checkpoint), [str(images)], str(tmp_path / "b"), backbone=f"test-vit-tiny@{weights}",
                      progress=False)
    assert by_file.attrs["source"].startswith("test-vit-tiny@file-")
    for a, b in zip(by_tag["float_map"].dropna(), by_file["float_map"].dropna()):
        np.testing.assert_allclose(np.load(tmp_path / "a" / a), np.load(tmp_path / "b" / b), atol=1e-6)


def test_an_architecture_named_quickgelu_by_its_config_gets_no_gelu_warning(tmp_path, caplog):
    """open_clip's own ``ViT-L-14-quickgelu`` sets quick_gelu in its config: loading a file into it warned that it
    was built "with exact GELU" and suggested ``-quickgelu-quickgelu``."""
    import open_clip

    config = json.loads((CONFIG_DIR / "test-vit-tiny.json").read_text())
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "test-vit-qg-quickgelu.json").write_text(json.dumps({**config, "quick_gelu": True}))
    open_clip.add_model_config(tmp_path / "configs")
    model = create_open_clip(BackboneKey.parse("test-vit-qg-quickgelu@random-0"))
    weights = tmp_path / "qg.pt"
    torch.save(model.state_dict(), weights)
    with caplog.at_level(logging.WARNING):
        loaded = create_open_clip(BackboneKey.parse(f"test-vit-qg-quickgelu@{weights}"))
    assert "exact GELU" not in caplog.text
    assert type(loaded.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
