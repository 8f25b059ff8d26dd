"""The fused multi-head localization loss (issue 23 item 3) against the per-head path it replaces."""
import pytest
import torch
import torch.nn.functional as F

from declip.pipeline.train.fused_loss import UpsampledBCE, bicubic_matrix


def _maps(heads, rows=3, grid=(7, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(heads * rows, 1, *grid, generator=g) * 3, torch.rand(rows, 256, 256, generator=g)


def _per_head(maps, targets):
    maps = maps.clone().requires_grad_(True)
    rows = targets.shape[0]
    losses = []
    for k in range(maps.shape[0] // rows):
        up = F.interpolate(maps[k * rows:(k + 1) * rows], size=(256, 256), mode="bicubic", align_corners=False)
        losses.append(F.binary_cross_entropy_with_logits(up[:, 0], targets))
    torch.stack(losses).sum().backward()
    return torch.stack(losses).detach(), maps.grad


def _fused(maps, targets):
    maps = maps.clone().requires_grad_(True)
    losses = UpsampledBCE.apply(maps, targets, maps.shape[0] // targets.shape[0])
    losses.sum().backward()
    return losses.detach(), maps.grad


@pytest.mark.parametrize("grid", [(16, 16), (7, 5), (24, 24)])
def test_bicubic_matrices_are_torch_bicubic_upsampling(grid):
    s = torch.randn(2, 1, *grid)
    up = F.interpolate(s, size=(256, 256), mode="bicubic", align_corners=False)
    mat = bicubic_matrix(grid[0]) @ s[:, 0] @ bicubic_matrix(grid[1]).T
    torch.testing.assert_close(mat, up[:, 0], rtol=0, atol=1e-5)


def test_losses_and_gradients_are_the_per_head_ones():
    maps, targets = _maps(heads=4)
    want_loss, want_grad = _per_head(maps, targets)
    loss, grad = _fused(maps, targets)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(grad, want_grad, rtol=1e-4, atol=1e-7)


def test_a_heads_loss_and_gradient_do_not_depend_on_the_heads_beside_it():
    maps, targets = _maps(heads=5, seed=1)
    rows = targets.shape[0]
    loss, grad = _fused(maps, targets)
    for k in range(5):
        alone_loss, alone_grad = _fused(maps[k * rows:(k + 1) * rows], targets)
        assert torch.equal(loss[k:k + 1], alone_loss)
        assert torch.equal(grad[k * rows:(k + 1) * rows], alone_grad)


def test_detection_heads_keep_the_per_head_image_loss(tiny_store, tmp_path, monkeypatch):
    from tests.fixtures import train_config
    from declip.pipeline.train import training

    modes, real_loss = [], training._loss

    def spy(logits, masks, labels, mode):
        modes.append(mode)
        return real_loss(logits, masks, labels, mode)

    monkeypatch.setattr(training, "_loss", spy)
    training.train(train_config(tiny_store, tmp_path / "det", mode="detection", max_epochs=1, batch_size=8))
    assert modes and set(modes) == {"detection"}


def test_the_reported_loss_holds_for_large_logits():
    """``mean_bce`` writes softplus with vectorised passes (ATen's is a scalar loop); at logits far from 0, where
    the two forms differ most, it still equals PyTorch's BCE-with-logits in float64."""
    from declip.pipeline.train.fused_loss import mean_bce

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 64, 64, generator=g) * 25  # |u| up to ~100
    targets = torch.rand(4, 64, 64, generator=g)
    want = F.binary_cross_entropy_with_logits(logits.double(), targets.double())
    assert float(mean_bce(logits, targets)) == pytest.approx(float(want), rel=1e-6)
