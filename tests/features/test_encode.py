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


class _DeviceTensor:
    """Stands in for a tensor on an accelerator: records each conversion and copy, in order, and where it ran."""

    def __init__(self, log: list, device: str = "cuda", dtype=None):
        self.log, self.device, self.dtype = log, device, dtype

    def to(self, *args, **kwargs):
        self.log.append((self.device, "to", args, kwargs))
        dtype = next((a for a in args if isinstance(a, torch.dtype)), kwargs.get("dtype", self.dtype))
        device = next((a for a in args if isinstance(a, str)), kwargs.get("device", self.device))
        return _DeviceTensor(self.log, device, dtype)

    def cpu(self):
        self.log.append((self.device, "cpu", (), {}))
        return _DeviceTensor(self.log, "cpu", self.dtype)

    def numpy(self):
        assert self.device == "cpu"
        return np.zeros(0)


def test_features_are_converted_to_their_storage_dtype_before_they_leave_the_device():
    """A blocking copy to the host that also changes the dtype converts on the CPU (PyTorch's copy kernel): the
    conversion must be asked for while the tensor is still on its device, and the copy must not convert."""
    from declip.features.encode import to_host

    from declip.store.quantize import encode

    log: list = []
    out = to_host(_DeviceTensor(log), torch.float16)
    assert log == [("cuda", "to", (torch.float16,), {}), ("cuda", "cpu", (), {})]
    assert (out.device, out.dtype) == ("cpu", torch.float16)
    log.clear()
    encode(_DeviceTensor(log), "float16")  # extraction's storage encoding of float features
    assert log == [("cuda", "to", (torch.float16,), {}), ("cuda", "cpu", (), {})]


def test_stored_float16_values_are_numpys_round_to_nearest_even_conversion():
    """Oracle: numpy's float32 → float16 cast (IEEE round to nearest, ties to even), on values that straddle ties,
    subnormals and overflow."""
    values = np.array([1.0, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 6e-8, 3e-5, 65504.0, 65520.0, -2.5e-6], np.float32)
    feats = torch.from_numpy(np.tile(values, (2, 3, 1, 1)))
    cached = to_cached({"layer1": (feats, torch.from_numpy(values[None].repeat(2, 0)))})["layer1"]
    expected = np.tile(values, (2, 3, 1, 1)).astype(np.float16)
    np.testing.assert_array_equal(cached[0].view(np.uint16), expected.view(np.uint16))
    tokens = values[None].repeat(2, 0).astype(np.float16)
    np.testing.assert_array_equal(cached[1].view(np.uint16), tokens.view(np.uint16))
