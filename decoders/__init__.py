"""Trainable decoders on cached CLIP features: DeCLIP's conv-N, linear and attention heads, state-dict compatible.

Every module of this package is imported when the registry is first read, so each registers its decoders;
list them with :func:`list_decoders`.
"""
from declip.decoders.registry import (
    DECLIP_INPUT_FAMILIES, Decoder, build_decoder, canonical_name, decoder_from_config, list_decoders, register_decoder,
)
from declip.decoders.attention import AttentionDecoder
from declip.decoders.conv import ConvDecoder, needs_final_resize, upsample_skips
from declip.decoders.checkpoint_io import load_decoder, save_decoder
from declip.decoders.declip_checkpoint import load_declip_checkpoint, save_declip_checkpoint
from declip.decoders.weight_init import init_declip_
from declip.decoders.linear import LinearDecoder

__all__ = [
    "DECLIP_INPUT_FAMILIES", "AttentionDecoder", "ConvDecoder", "Decoder", "LinearDecoder", "build_decoder",
    "canonical_name", "decoder_from_config", "init_declip_", "list_decoders", "load_declip_checkpoint", "load_decoder",
    "needs_final_resize", "register_decoder", "save_declip_checkpoint", "save_decoder", "upsample_skips",
]
