"""The fused multi-head localization loss (issue 23 item 3) against the per-head path it replaces."""
import pytest
import torch
import torch.nn.functional as F

from declip.pipeline.train.fused_loss import UpsampledBCE


def _maps(heads, rows=3, grid=(7, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(heads * rows, 1, *grid, generator=g) * 3, torch.rand(rows, 256, 256, generator=g)


def _per_head(maps, targets, weights=None):
    maps = maps.clone().requires_grad_(True)
    rows = targets.shape[0]
    losses = []
    for k in range(maps.shape[0] // rows):
        up = F.interpolate(maps[k * rows:(k + 1) * rows], size=(256, 256), mode="bicubic", align_corners=False)
        losses.append(F.binary_cross_entropy_with_logits(up[:, 0], targets))
    losses = torch.stack(losses)
    (losses if weights is None else losses * weights).sum().backward()
    return losses.detach(), maps.grad


def _fused(maps, targets, weights=None):
    maps = maps.clone().requires_grad_(True)
    losses = UpsampledBCE.apply(maps, targets, maps.shape[0] // targets.shape[0])
    (losses if weights is None else losses * weights).sum().backward()
    return losses.detach(), maps.grad


@pytest.mark.parametrize("rows", [3, 19])  # one chunk of rows, and several (8 per chunk on the CPU) plus a rest
def test_losses_and_gradients_are_the_per_head_ones(rows):
    maps, targets = _maps(heads=4, rows=rows)
    weights = torch.tensor([1.0, 0.5, -2.0, 3.0])  # upstream gradients other than 1 reach each head's own gradient
    want_loss, want_grad = _per_head(maps, targets, weights)
    loss, grad = _fused(maps, targets, weights)
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
    """``bce_sum`` writes softplus with vectorised passes (ATen's is a scalar loop) and takes its logs of products
    of 32 sigmoids; at logits far from 0, where the forms differ most, at logits all 0 (the smallest products), and
    with a count of logits that is no multiple of 32, it still equals PyTorch's BCE-with-logits in float64."""
    from declip.pipeline.train.fused_loss import bce_sum

    g = torch.Generator().manual_seed(0)
    cases = [torch.randn(4, 64, 64, generator=g) * 25,  # |u| up to ~100
             torch.zeros(2, 16, 16),
             torch.randn(3, 7, 5, generator=g) * 4]  # 105 logits: three blocks of 32 and 9 more
    for logits in cases:
        targets = torch.rand(logits.shape, generator=g)
        want = F.binary_cross_entropy_with_logits(logits.double(), targets.double())
        assert float(bce_sum(logits, targets) / logits.numel()) == pytest.approx(float(want), rel=1e-6), logits.shape
