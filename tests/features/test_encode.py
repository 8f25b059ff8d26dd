"""The shared encoder: every caller (extraction, predict, benches) gets the same features for the same files."""
import numpy as np
import torch

from tests.fixtures import TINY_BACKBONE
from declip.features.backbones import load_backbone
from declip.features.encode import encode_batch, encode_files, encode_images, to_cached
from declip.features.images import open_rgb
from declip.features.preprocess import make_recipe
from declip.features.image_batches import prefetch_batches
from declip.pipeline.data.manifest import read_manifest
from declip.store.feature_store import FeatureStore


def _setup(tiny_manifest):
    manifest = read_manifest(tiny_manifest)
    backbone = load_backbone(TINY_BACKBONE)
    recipe = make_recipe("declip", backbone.image_size, backbone.mean, backbone.std)
    paths = [manifest.abspath(p) for p in manifest.df["image_path"][:4]]
    return manifest, backbone, recipe, paths


def test_files_images_and_batches_agree_with_the_store(tiny_manifest, tiny_store):
    manifest, backbone, recipe, paths = _setup(tiny_manifest)
    by_files = to_cached(encode_files(backbone, recipe, paths, ["layer1"]))["layer1"]
    by_images = to_cached(encode_images(backbone, recipe, [open_rgb(p) for p in paths], ["layer1"]))["layer1"]
    batch = next(iter(prefetch_batches([(0, [0, 1, 2, 3], [str(p) for p in paths])], recipe)))
    by_batch = encode_batch(backbone, batch, ["layer1"])["layer1"]
    stored = FeatureStore(str(tiny_store), mode="r").open_layer(TINY_BACKBONE, "layer1", manifest.df["dataset"][0])
    for feats, cls in (by_images, by_batch):
        assert np.array_equal(feats, by_files[0]) and np.array_equal(cls, by_files[1])
    assert np.array_equal(by_files[0], stored.feats[0:4]) and np.array_equal(by_files[1], stored.cls[0:4])
    assert by_files[0].dtype == np.float16


def test_failed_rows_are_zeroed(tiny_manifest):
    _, backbone, recipe, paths = _setup(tiny_manifest)
    batch = next(iter(prefetch_batches([(0, [0, 1], [str(paths[0]), "/nonexistent.png"])], recipe)))
    feats, _ = encode_batch(backbone, batch, ["layer0"])["layer0"]
    assert not batch.ok[1] and batch.problems[0]["reason"] == "missing-file"
    assert np.all(feats[1] == 0) and np.any(feats[0] != 0)
