"""How the report names and orders sources: read through SourceKey, so fused sources and views are named in full and
table cells that name no source (baselines, old tables) are left as they are. Expected labels written by hand."""
from declip.pipeline.report.labels import curve_name, short_source, source_order

FUSED = "ViT-L-14@openai/layer20+RN50@openai/layer3"


def test_short_labels_drop_the_weights_only():
    assert short_source("demo-vit-small@random-0/layer4") == "demo-vit-small/layer4"
    assert short_source(FUSED) == "ViT-L-14/layer20+RN50/layer3"
    assert short_source("srm@fixed/layer0[jpeg:75+resize:0.5]") == "srm/layer0[jpeg:75+resize:0.5]"
    assert short_source("ViT-B-32@random-0~openclip/layer3") == "ViT-B-32/layer3"
    assert [short_source(cell) for cell in ("-", "layer10", "/layer2")] == ["-", "layer10", "/layer2"]


def test_sources_order_by_backbone_then_depth():
    sources = ["vit@random-0/layer10", "srm@fixed/layer0", "vit@random-0/layer2", FUSED, "vit@random-0/layer5"]
    assert sorted(sources, key=source_order) == [FUSED, "srm@fixed/layer0", "vit@random-0/layer2",
                                                 "vit@random-0/layer5", "vit@random-0/layer10"]
    assert sorted(["layer10", "layer2"], key=source_order) == ["layer2", "layer10"]  # tables without sources


def test_layer_curves_follow_a_backbone_and_its_fusion_partner():
    assert curve_name("vit@random-0/layer10") == curve_name("vit@random-0/layer2") == "vit"
    assert curve_name(FUSED) == "ViT-L-14+RN50/layer3"
    assert curve_name("-") == ""
