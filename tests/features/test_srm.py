"""SRM positive control: the features equal a direct numpy/scipy computation of the stated definition."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from declip.features import srm

# The three SRM kernels of RGB-N (Zhou et al. 2018, Fig. 3 / its released srm_kernels), written here from the paper
# as integers over their normalisers, so the reference below shares nothing with features/srm.py.
PUBLISHED_KERNELS = [
    np.array([[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]) / 4,
    np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]]) / 12,
    np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]) / 2,
]
# sha256 of the definition as first released: features cached under another definition must not be mixed with these
# (the store keys them by this checksum). Change it only together with a new definition, on purpose.
DEFINITION_SHA256 = "36685002885421335525eb021b7d0ecb38a62aab9dd98cc85e83fdfeb8fb1ef7"


def _direct(image: np.ndarray) -> np.ndarray:
    """(3, 256, 256) in 0-255 → (63, 16, 16), written from the docstring with scipy and numpy loops."""
    maps = []
    for c in range(3):
        for kernel in PUBLISHED_KERNELS:
            # torch's "reflect" padding (d c b | a b c d) is scipy's "mirror" mode
            maps.append(ndimage.correlate(image[c].astype(np.float64), kernel, mode="mirror"))
    out = np.zeros((5, 9, 16, 16))  # the five per-patch statistics; the two relative ones follow
    for m, r in enumerate(maps):
        for i in range(16):
            for j in range(16):
                patch = r[16 * i:16 * i + 16, 16 * j:16 * j + 16]
                a = np.abs(patch)
                out[:, m, i, j] = (np.log1p(a.mean()), np.log1p(patch.std()), (a < 0.5).mean(),
                                   ((a >= 0.5) & (a < 1.5)).mean(), (a >= 1.5).mean())
    rel = [out[k] - np.median(out[k].reshape(9, -1), axis=1)[:, None, None] for k in (0, 1)]
    return np.concatenate([out, np.stack(rel)]).reshape(63, 16, 16)


def test_features_match_direct_computation():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (3, 256, 256))  # continuous values: no residual sits exactly on a bin edge
    image[:, 100:180, 40:200] = 128 + rng.normal(0, 0.3, (3, 80, 160))  # a smooth "inpainted" patch
    got = srm.SrmFeatures()(torch.tensor(image[None], dtype=torch.float32))[0].numpy()
    want = _direct(image)
    assert got.shape == (srm.CHANNELS, 16, 16) == want.shape
    np.testing.assert_allclose(got, want, atol=2e-4)  # fp32 vs fp64


def test_smooth_region_has_low_residual_energy():
    rng = np.random.default_rng(0)
    image = rng.normal(128, 20, (1, 3, 256, 256)).clip(0, 255)
    image[..., :128, :] = 128.0  # top half flat
    feats = srm.SrmFeatures()(torch.tensor(image, dtype=torch.float32))[0]
    names = srm.channel_names()
    mean_abs = feats[[i for i, n in enumerate(names) if n.startswith("log1p_mean_abs")]]
    frac_zero = feats[[i for i, n in enumerate(names) if n.startswith("frac_q0")]]
    assert float(mean_abs[:, :7].max()) < 1e-4 < float(mean_abs[:, 9:].min())
    assert torch.all(frac_zero[:, :7] == 1.0) and float(frac_zero[:, 9:].max()) < 0.5


def test_definition_is_complete_and_stable():
    d = srm.definition()
    assert len(d["channels"]) == srm.CHANNELS == 63
    assert set(d["kernels"]) == set(srm.KERNELS)
    assert srm.checksum() == DEFINITION_SHA256
    for stored, published in zip(d["kernels"].values(), PUBLISHED_KERNELS, strict=True):
        np.testing.assert_array_equal(np.asarray(stored), published)
    for k in PUBLISHED_KERNELS:  # high-pass: a constant image has zero residual
        assert abs(k.sum()) < 1e-12


def test_kernels_are_the_published_integers_in_the_stated_order():
    """Channel (s*3 + c)*3 + k uses kernel k in the published order: a residual of one kernel alone shows it."""
    image = np.zeros((3, 256, 256))
    image[1, 136, 136] = 255.0  # one bright pixel in G, centre of patch (8, 8): each response is the kernel itself
    feats = srm.SrmFeatures()(torch.tensor(image[None], dtype=torch.float32))[0].numpy()
    names = srm.channel_names()
    for k, kernel in enumerate(PUBLISHED_KERNELS):
        channel = (0 * 3 + 1) * 3 + k  # log1p_mean_abs, colour G, kernel k
        want = np.log1p(np.abs(255.0 * kernel).sum() / 256.0)  # the impulse response inside patch (8, 8)
        assert feats[channel, 8, 8] == pytest.approx(want, rel=1e-5), names[channel]


def test_wrong_input_size_is_refused():
    with pytest.raises(ValueError, match="256x256"):
        srm.SrmFeatures()(torch.zeros(1, 3, 224, 224))
