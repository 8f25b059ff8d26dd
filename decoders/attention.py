"""DeCLIP's attention decoder (method §3.3): two CLIP residual attention blocks, then the linear token head.

DeCLIP's version has two accidents, reproduced only with ``faithful=True``:

* both blocks get CLIP's *text* causal mask (token i attends to tokens 0..i), built for 257 = CLS + 256 tokens;
* its ``"fc" in name`` trainable rule leaves attention projections, ``c_proj`` and LayerNorms at random init
  (8.40 M of 25.19 M trained).

Our default (``faithful=False``) uses no mask and trains every decoder weight. The feature store keeps the CLS
token apart from the patch grid, so faithful mode can run on the same ``[CLS, patches]`` sequence as DeCLIP;
without a CLS token the blocks see the patch tokens only (and faithful mode masks those causally).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn

from declip.decoders.linear import scores_to_logits, token_head
from declip.decoders.registry import Decoder, make_config, register_decoder
from declip.core.errors import DeclipError


class LayerNorm(nn.LayerNorm):
    """CLIP's LayerNorm: computes in fp32 so fp16 features do not lose precision."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """OpenAI CLIP's block with the same attribute names and order, so ``att1.*`` keys load unchanged.

    The mask is an argument, not a stored attribute: DeCLIP's checkpoints do not contain it either.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = LayerNorm(width)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x`` is sequence-first ``[T, B, C]`` as in CLIP."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


def causal_mask(length: int, like: Tensor) -> Tensor:
    """CLIP's text mask: -inf above the diagonal, additive."""
    return torch.full((length, length), float("-inf"), dtype=like.dtype, device=like.device).triu_(1)


def num_heads(width: int) -> int:
    """DeCLIP uses ``width // 64`` (16 for 1024); at least one head for tiny test widths."""
    heads = max(1, width // 64)
    if width % heads:
        raise DeclipError(f"attention decoder needs in_channels divisible by {heads} heads, got {width}")
    return heads


class AttentionDecoder(Decoder):
    """att1 -> att2 -> shared linear head over the patch tokens -> bicubic upsampling to 256."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        width = config["in_channels"]
        # Attribute order att1, att2, fc gives DeCLIP's state-dict order; the blocks keep PyTorch's default init.
        self.att1 = ResidualAttentionBlock(width, num_heads(width))
        self.att2 = ResidualAttentionBlock(width, num_heads(width))
        self.fc = token_head(width)

    scores_then_upsample = True

    def forward(self, feats: Tensor, cls_token: Tensor | None = None) -> Tensor:
        return scores_to_logits(self.token_scores(feats, cls_token), self.config["grid"])

    def token_scores(self, feats: Tensor, cls_token: Tensor | None = None) -> Tensor:
        self.check_input(feats)
        x = feats.flatten(2).permute(2, 0, 1)  # [H*W, B, C], sequence-first like DeCLIP
        if cls_token is not None:
            x = torch.cat([cls_token.to(x.dtype).unsqueeze(0), x], dim=0)
        mask = causal_mask(x.shape[0], x) if self.faithful else None
        x = self.att2(self.att1(x, mask), mask)
        if cls_token is not None:
            x = x[1:]
        return self.fc(x).squeeze(-1).transpose(0, 1)  # [B, H*W]


@register_decoder("attention")
def attention(**kwargs: Any) -> AttentionDecoder:
    """Two residual attention blocks of width C (25.19 M parameters at C = 1024); ``width`` is not used."""
    return AttentionDecoder(make_config("attention", **kwargs))
