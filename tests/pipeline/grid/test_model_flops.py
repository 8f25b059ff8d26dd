"""FLOP counts: pinned to the design's published figures and to hand-derived counts, the committed table recounted on
the meta device, and the planner's memo key (a decoder's geometry, not its layer's name) held for every decoder."""
import pytest

from declip.decoders import list_decoders
from declip.pipeline.grid import flop_table
from declip.pipeline.grid.model_flops import count_decoder_flops, count_encode_flops, decoder_flops, encode_flops


def test_flops_match_the_published_sizes():
    """design.md: ViT-L/14 costs about 162 GFLOP per 224 px image (142 up to layer20), conv-20 about 81 GFLOP."""
    assert encode_flops("ViT-L-14", "layer23") == pytest.approx(162e9, rel=0.01)
    assert encode_flops("ViT-L-14", "layer20") == pytest.approx(142e9, rel=0.01)
    fwd, step = decoder_flops("conv-20", 1024, (16, 16), "vit")
    assert fwd == pytest.approx(81e9, rel=0.01) and 2.5 * fwd < step < 3.5 * fwd
    assert encode_flops("RN50", "layer1") < encode_flops("RN50", "layer4")


def test_counts_equal_hand_derived_ones():
    # test-vit-tiny (64 px, patch 8, width 64, MLP ratio 4): n = 8*8 + 1 tokens, d = 64. Per block QKV + output
    # projections 8nd², MLP 4rnd², attention 4n²d; the patch embedding 2·(3·8·8)·64 per patch.
    n, d = 65, 64
    block = 8 * n * d * d + 4 * 4 * n * d * d + 4 * n * n * d
    assert block == 7_471_360
    assert count_encode_flops("test-vit-tiny", "layer1") == 2 * block + 2 * 3 * 8 * 8 * 64 * 64
    # SRM: three 5×5 kernels on each of 3 colour channels at 256²; the statistics are not multiply-adds
    assert count_encode_flops("srm", "layer0") == 2 * 25 * 9 * 256 * 256
    # linear: one multiply-add per channel and token; a training step adds the weight gradient, never the input's
    assert decoder_flops("linear", 64, (8, 8), "vit") == (2 * 64 * 64, 2 * 2 * 64 * 64)
    assert decoder_flops("linear", 63, (16, 16), "srm") == (2 * 63 * 256, 2 * 2 * 63 * 256)
    # the width scales a conv decoder's channels: a narrower one costs less than the full-width (table) one
    assert decoder_flops("conv-4", 1024, (16, 16), "vit", 0.5)[0] < decoder_flops("conv-4", 1024, (16, 16), "vit")[0]


def test_the_table_holds_what_the_meta_device_counts():
    """Each decoder on the table's smallest geometry (RN50 layer4) and RN50's first stage, recounted now: a changed
    decoder or tower that left the committed table stale fails here (regenerate it with the command it names)."""
    small = [key for key in flop_table.DECODER if key[1:4] == (2048, (7, 7), "resnet")]
    assert sorted(key[0] for key in small) == sorted(list_decoders())
    for key in small:
        assert count_decoder_flops(*key) == flop_table.DECODER[key], (
            f"{key}: stale; run python -m declip.pipeline.grid.model_flops --write")
    assert count_encode_flops("RN50", "layer1") == flop_table.ENCODE[("RN50", "layer1")]
    assert len(flop_table.ENCODE) == 24 + 4  # DeCLIP's towers, every layer


@pytest.mark.parametrize("decoder", list_decoders())
def test_a_decoders_flops_depend_on_its_geometry_not_the_layer_name(decoder):
    """The memo and the table key counts by (decoder, channels, grid, family, width); a decoder built differently
    for another layer name must fail here (and then the key needs the layer)."""
    same = {count_decoder_flops(decoder, 32, (8, 8), "vit", 0.125, layer=name) for name in ("layer0", "layer11")}
    assert len(same) == 1


def test_an_unknown_layer_is_named_with_the_towers_layers():
    from declip.core.errors import DeclipError

    with pytest.raises(DeclipError, match=r"RN50 has no layer0; its layers are layer1\.\.layer4"):
        encode_flops("RN50", "layer0")
