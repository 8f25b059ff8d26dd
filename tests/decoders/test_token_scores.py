"""The linear head's token scores and their gradients, against oracles that do not use the code under test:
finite differences (``torch.autograd.gradcheck``) and autograd through ``nn.Linear`` on the ``[B, H*W, C]`` token
view (DeCLIP's formulation)."""
import pytest
import torch
from torch import nn

from declip.decoders.token_scores import token_scores


def _inputs(batch=3, channels=5, h=2, w=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(batch, channels, h, w, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(channels, generator=g, dtype=dtype, requires_grad=True)
    bias = torch.randn(1, generator=g, dtype=dtype, requires_grad=True)
    return feats, weight, bias


def test_gradients_match_finite_differences_for_the_map_the_weights_and_the_bias():
    feats, weight, bias = _inputs()
    assert torch.autograd.gradcheck(token_scores, (weight, bias, feats), eps=1e-6, atol=1e-7)


def test_scores_and_gradients_equal_nn_linear_on_the_token_view():
    feats, weight, bias = _inputs(batch=4, channels=7, h=3, w=4, dtype=torch.float32, seed=1)
    upstream = torch.randn(4, 12, generator=torch.Generator().manual_seed(2))
    ours = token_scores(weight, bias, feats)
    (ours * upstream).sum().backward()
    got = feats.grad.clone(), weight.grad.clone(), bias.grad.clone()

    linear = nn.Linear(7, 1)
    with torch.no_grad():
        linear.weight.copy_(weight[None])
        linear.bias.copy_(bias)
    x = feats.detach().clone().requires_grad_(True)
    theirs = linear(x.flatten(2).transpose(1, 2)).squeeze(-1)  # [B, H*W, C] tokens, row-major like CLIP's patches
    (theirs * upstream).sum().backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[0], x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], linear.weight.grad[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[2], linear.bias.grad, rtol=1e-5, atol=1e-5)


def test_scores_are_per_token_in_row_major_grid_order():
    """Hand case: one channel weighted 1, the others 0 -- each score is that channel's value at its grid cell."""
    feats = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    weight = torch.tensor([0.0, 1.0, 0.0])
    scores = token_scores(weight, torch.tensor([0.5]), feats)
    assert scores.tolist() == [[4.5, 5.5, 6.5, 7.5], [16.5, 17.5, 18.5, 19.5]]


@pytest.mark.parametrize("needs", ["feats", "weight"])
def test_only_the_gradients_asked_for_are_computed(needs):
    feats, weight, bias = _inputs()
    feats.requires_grad_(needs == "feats")
    weight.requires_grad_(needs == "weight")
    token_scores(weight, bias, feats).sum().backward()
    assert (feats.grad is not None) == (needs == "feats")
    assert (weight.grad is not None) == (needs == "weight")


def test_under_autocast_a_training_step_runs_and_its_weight_gradient_stays_near_float32():
    """Autocast may cast a batched product to bfloat16 (CPU autocast does for ``bmm``); the gradient must still reach
    the float32 weights in their dtype."""
    feats, weight, bias = _inputs(batch=2, channels=8, dtype=torch.float32, seed=3)
    feats.requires_grad_(False)
    token_scores(weight, bias, feats).square().sum().backward()
    exact = weight.grad.clone()
    weight.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = token_scores(weight, bias, feats)
    scores.float().square().sum().backward()
    assert weight.grad.dtype == torch.float32
    torch.testing.assert_close(weight.grad, exact, rtol=0.05, atol=0.05 * exact.abs().max().item())
