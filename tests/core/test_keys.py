"""Typed keys: the only place feature-source and backbone text is parsed."""
import pytest

from declip.core.errors import DeclipError
from declip.core.keys import (
    DECLIP_FUSION_PARTNER, BackboneKey, DatasetKey, LayerKey, SourceKey, backbone_arch, parse_store_key,
    split_view_chain, split_view_key, view_dataset_key,
)


@pytest.mark.parametrize("text", [
    "ViT-L-14@openai/layer20",
    "ViT-L-14@openai/layer20+RN50@openai/layer3",
    "ViT-B-32@random-0~openclip/layer2",
    "ViT-L-14@openai/layer20[jpeg:75]",
    "ViT-L-14@openai/layer20+RN50@openai/layer3[jpeg:75+resize:0.5]",
])
def test_source_text_round_trips(text):
    key = SourceKey.parse(text)
    assert str(key) == text
    assert SourceKey.parse(str(key)) == key


def test_source_parts_fusion_and_view():
    key = SourceKey.parse("ViT-L-14@openai/layer20+RN50@openai/layer3[jpeg:75+resize:0.5]")
    assert key.fused and key.layer == "layer20" and key.view == "jpeg:75+resize:0.5"
    assert key.parts[0] == LayerKey(BackboneKey("ViT-L-14", "openai"), "layer20")
    assert key.parts[1] == DECLIP_FUSION_PARTNER
    single = SourceKey.parse("ViT-L-14@openai/layer20[jpeg:75+resize:0.5]")
    assert not single.fused and single.view == "jpeg:75+resize:0.5"
    assert SourceKey.parse("ViT-L-14@openai/layer20").view == "clean"
    assert SourceKey.parse("ViT-L-14@openai/layer20[clean]") == SourceKey.parse("ViT-L-14@openai/layer20")


def test_view_may_be_written_on_each_fused_part_but_must_agree():
    both = SourceKey.parse("ViT-L-14@openai/layer20[jpeg:75]+RN50@openai/layer3[jpeg:75]")
    assert str(both) == "ViT-L-14@openai/layer20+RN50@openai/layer3[jpeg:75]"
    with pytest.raises(DeclipError, match="share one view"):
        SourceKey.parse("ViT-L-14@openai/layer20[jpeg:75]+RN50@openai/layer3[jpeg:50]")


def test_declip_fused_uses_the_one_partner():
    key = SourceKey.declip_fused("ViT-L-14@openai", "layer20")
    assert str(key) == "ViT-L-14@openai/layer20+RN50@openai/layer3"
    assert key == SourceKey.parse(str(key))


def test_backbone_part_is_canonicalised():
    assert str(SourceKey.parse("ViT-B-32@random7/layer1")) == "ViT-B-32@random-7/layer1"
    assert str(SourceKey.parse("CLIP:RN50/layer3")) == "RN50@openai/layer3"


def test_local_weights_in_a_source_are_keyed_by_checksum(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"abc")
    key = SourceKey.parse(f"ViT-B-32@{weights}/layer4")
    assert key.backbone.weights.startswith("file-") and key.backbone.weights_path == str(weights.resolve())
    assert SourceKey.parse(str(key)) == key  # the path is not part of the identity


@pytest.mark.parametrize("bad, match", [
    ("layer20", "BACKBONE/LAYER"),
    ("ViT-L-14@openai/", "BACKBONE/LAYER"),
    ("ViT-L-14/layer20", "BACKBONE/LAYER"),
    ("a@b/l1+c@d/l2+e@f/l3", "at most two"),
    ("ViT-L-14@openai/layer20[jpeg:75", "unbalanced"),
    ("ViT-L-14@openai/layer20]", "unbalanced"),
    ("ViT-L-14@openai/layer20[]", "view is written last"),
    ("ViT-L-14@openai/layer20[jpeg]x", "view is written last"),
])
def test_bad_sources_get_one_clear_error(bad, match):
    with pytest.raises(DeclipError, match=match):
        SourceKey.parse(bad)


def test_sources_sort_by_their_text():
    keys = [SourceKey.parse(t) for t in ("b@x/layer2", "a@x/layer9", "a@x/layer1+b@x/layer3")]
    assert [str(k) for k in sorted(keys)] == ["a@x/layer1+b@x/layer3", "a@x/layer9", "b@x/layer2"]


def test_store_key():
    layer, dataset = parse_store_key("ViT-B-32@random-0/layer3/dolos-celebahq")
    assert (str(layer), dataset) == ("ViT-B-32@random-0/layer3", "dolos-celebahq")
    with pytest.raises(DeclipError, match="BACKBONE/LAYER/DATASET"):
        parse_store_key("ViT-B-32@random-0/layer3")


@pytest.mark.parametrize("text, dataset, view", [
    ("dolos", "dolos", "clean"),
    ("dolos@jpeg:75", "dolos", "jpeg:75"),
    ("dolos-celebahq@augment:all+copy:2", "dolos-celebahq", "augment:all+copy:2"),
    ("my set@resize:0.5+jitter:0.1,0.2,0.3,0.4", "my set", "resize:0.5+jitter:0.1,0.2,0.3,0.4"),
])
def test_dataset_key_round_trips(text, dataset, view):
    key = DatasetKey.parse(text)
    assert (key.dataset, key.view) == (dataset, view) and str(key) == text
    assert split_view_key(text) == (dataset, view) and view_dataset_key(dataset, view) == text
    assert key.is_clean == (view == "clean") and str(key.with_view("clean")) == dataset


@pytest.mark.parametrize("bad", ["", "@jpeg:75", "dolos@"])
def test_bad_dataset_keys_get_one_clear_error(bad):
    with pytest.raises(DeclipError, match="DATASET@VIEW"):
        DatasetKey.parse(bad)


def test_view_chain_is_split_into_operations_and_parameters():
    assert split_view_chain("jpeg:75+resize:0.5") == [("jpeg", "75"), ("resize", "0.5")]
    assert split_view_chain("jitter") == [("jitter", "")]
    assert split_view_chain(" jitter:0.1,0.2,0.3,0.4 + copy:3 ") == [("jitter", "0.1,0.2,0.3,0.4"), ("copy", "3")]
    assert split_view_chain("clean") == [("clean", "")]


def test_backbone_arch_reads_no_weight_file(tmp_path):
    missing = tmp_path / "not-there.pt"  # BackboneKey.parse would refuse it; a readable name must not
    assert backbone_arch(f"ViT-L-14@{missing}") == "ViT-L-14"
    assert backbone_arch("ViT-B-32@random-0~openclip") == "ViT-B-32"
    assert backbone_arch(BackboneKey("RN50", "openai")) == "RN50"
    assert backbone_arch("CLIP:ViT-L/14") == "ViT-L-14" and backbone_arch("CLIP:ViT-L/14,RN50") == "ViT-L-14+RN50"
    with pytest.raises(DeclipError, match="ARCH@WEIGHTS"):
        backbone_arch("ViT-L-14")


def test_table_cells_that_name_no_source_read_as_none():
    from declip.core.keys import source_or_none

    assert str(source_or_none("a@x/layer1+b@y/layer3[jpeg:75]")) == "a@x/layer1+b@y/layer3[jpeg:75]"
    for cell in ("-", "layer10", "/layer10", "", None, float("nan"), 3):  # baselines, old tables, empty cells
        assert source_or_none(cell) is None


def test_layer_depth_orders_layer_names_by_number():
    from declip.core.keys import layer_depth

    assert sorted(["layer10", "layer2", "layer0"], key=layer_depth) == ["layer0", "layer2", "layer10"]
    assert (layer_depth("layer23"), layer_depth("pool"), layer_depth("layer")) == (23, -1, -1)


def test_a_view_the_store_does_not_hold_is_refused_clearly(tiny_store):
    from tests.fixtures import TINY_BACKBONE
    from declip.store.feature_store import FeatureStore
    from declip.store.readers import FeatureSource

    store = FeatureStore(str(tiny_store), mode="r")
    assert FeatureSource(store, f"{TINY_BACKBONE}/layer1", "dolos-celebahq").channels == 64
    with pytest.raises(DeclipError, match=r"holds no view 'jpeg:75'.*declip extract --view jpeg:75.*layer1\)$"):
        FeatureSource(store, f"{TINY_BACKBONE}/layer1[jpeg:75]", "dolos-celebahq")


def test_random_weights_carry_their_seed():
    assert BackboneKey.parse("ViT-B-32@random-3").seed == 3
    assert BackboneKey.parse("ViT-B-32@random").seed == 0
    assert BackboneKey.parse("ViT-L-14@openai").seed is None and BackboneKey.parse("srm@fixed").seed is None
