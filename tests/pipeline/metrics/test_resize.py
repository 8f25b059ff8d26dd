import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as tv1
import torchvision.transforms.v2.functional as tv2

from declip.pipeline.metrics.resize import to_native


def test_identity_returns_same_array_without_copy():
    prob = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    out = to_native(prob, (7, 5))
    assert out is prob


def test_identity_from_torch_tensor():
    t = torch.rand(6, 4)
    out = to_native(t, (6, 4))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, t.numpy())


@pytest.mark.parametrize("size", [(512, 384), (100, 300), (31, 17)])
def test_constant_map_stays_constant(size):
    out = to_native(np.full((256, 256), 0.3, np.float32), size)
    assert out.shape == size and out.dtype == np.float32
    np.testing.assert_allclose(out, 0.3, atol=1e-6)


def test_upsample_2x2_to_4x4_by_hand_and_torch():
    prob = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    out = to_native(prob, (4, 4))
    # half-pixel centres (align_corners=False): 0, 1/4, 3/4, 1 along each row
    np.testing.assert_allclose(out, np.tile([0.0, 0.25, 0.75, 1.0], (4, 1)), atol=1e-6)
    ref = F.interpolate(torch.from_numpy(prob)[None, None], size=(4, 4), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(out, ref[0, 0].numpy(), atol=1e-6)


@pytest.mark.parametrize("size", [(300, 200), (128, 96), (256, 512)])
def test_matches_torchvision_tensor_resize_with_default_antialias(size):
    prob = torch.rand(256, 256, generator=torch.Generator().manual_seed(1))
    out = to_native(prob, size)
    np.testing.assert_allclose(out, tv2.resize(prob[None], list(size), antialias=True)[0].numpy(), atol=1e-6)
    # torchvision's v1 functional resize on a tensor, as DeCLIP calls it, with its default antialias (True)
    np.testing.assert_allclose(out, tv1.resize(prob[None], list(size))[0].numpy(), atol=1e-6)


def test_downsampling_is_antialiased():
    prob = torch.rand(256, 256, generator=torch.Generator().manual_seed(2))
    plain = F.interpolate(prob[None, None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0].numpy()
    assert not np.allclose(to_native(prob, (64, 64)), plain, atol=1e-3)


def test_binarise_after_resize_differs_from_resizing_the_binary_map():
    prob = np.array([[0.4, 0.9]], np.float32)
    after = to_native(prob, (1, 4)) > 0.5  # DeCLIP order: 0.4, 0.525, 0.775, 0.9
    before = to_native((prob > 0.5).astype(np.float32), (1, 4)) > 0.5  # 0, 0.25, 0.75, 1
    np.testing.assert_array_equal(after, [[False, True, True, True]])
    np.testing.assert_array_equal(before, [[False, False, True, True]])


def test_rejects_non_2d():
    with pytest.raises(ValueError, match="h, w"):
        to_native(np.zeros((1, 4, 4), np.float32), (8, 8))
