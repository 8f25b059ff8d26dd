"""The bicubic matrices against PyTorch's own bicubic upsampling (the oracle: ``F.interpolate``)."""
import pytest
import torch
import torch.nn.functional as F

from declip.decoders import build_decoder
from declip.decoders.bicubic import bicubic_matrix, matrix_logits


@pytest.mark.parametrize("grid", [(16, 16), (7, 5), (24, 24)])
def test_bicubic_matrices_are_torch_bicubic_upsampling(grid):
    s = torch.randn(2, 1, *grid)
    up = F.interpolate(s, size=(256, 256), mode="bicubic", align_corners=False)
    mat = bicubic_matrix(grid[0]) @ s[:, 0] @ bicubic_matrix(grid[1]).T
    torch.testing.assert_close(mat, up[:, 0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["linear", "attention"])
def test_matrix_logits_are_the_decoders_own_logits(name):
    """What validation computes equals the decoder's forward (DeCLIP's ``F.interpolate``) up to float rounding,
    for every decoder that upsamples its token scores; a non-square grid catches swapped axes."""
    decoder = build_decoder(name, in_channels=12, grid=(6, 4), family="vit", layer="layer3", width=0.25, seed=0)
    feats, cls = torch.randn(3, 12, 6, 4), torch.randn(3, 12)
    with torch.no_grad():
        want = decoder.eval()(feats, cls)
        got = matrix_logits(decoder, feats, cls)
    assert got.shape == want.shape == (3, 1, 256, 256)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
