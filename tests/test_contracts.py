"""Contract tests over every registry, in the style of timm's ``tests/test_models.py``.

Each test is parametrised from the registries themselves, so a newly registered feature family (its
``test_keys``), recipe, decoder, metric or layout is checked here without editing this file:

* backbone × layer: features (B, C, H, W) float32 and the class token as ``layer_info`` says, finite, and equal to
  the same layer taken in an all-layers pass (early stopping changes nothing); the family's config-only
  ``layer_shapes`` equal ``layer_info`` on the built model, layer for layer;
* backbone: real extraction into a zarr store reads back byte-identical to the float16 forward output;
* backbone × layer × decoder (and DeCLIP's fused source): B×1×256×256 finite float32 logits;
* recipe: a non-square RGB image → (3, size, size) finite float32;
* metric: finite and in range on a fixed random case, equal to a hand/sklearn reference where one exists;
* layout: its ``write_example`` tree scans cleanly, by name and by ``auto``;
* view operation: its example view is deterministic per image (and differs between images exactly when the
  operation is random), keeps masks aligned with the pixels, and its canonical name round-trips;
* storage dtype: encode → decode within the format's declared bound, ``bytes_per_sample`` equal to what the store's
  arrays take per row (feature chunks measured on disk), and rows read back through the store as written.

Decoders run at width 0.125 (geometry is what is checked; the width only scales channels) to keep the file fast.
"""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest
import torch
from PIL import Image

from declip.core.keys import SourceKey
from declip.decoders import build_decoder, list_decoders
from declip.features.backbones import load_backbone
from declip.features.families import FAMILIES, layer_shapes
from declip.features.fusion import fuse
from declip.features.preprocess import RECIPES, make_recipe, to_tensor
from declip.features.taps import forward_layers, layer_info, layer_names
from declip.features.views import VIEW_OPS, View
from declip.pipeline.data.layouts import LAYOUTS
from declip.pipeline.metrics.registry import REGISTRY as METRICS
from declip.pipeline.metrics.registry import MetricAccumulator
from declip.store.quantize import STORAGE_DTYPES

BACKBONE_KEYS = [key for _, family in FAMILIES.items() for key in family.test_keys]
DECODER_WIDTH = 0.125


@lru_cache(maxsize=None)
def backbone(key: str):
    return load_backbone(key)


@lru_cache(maxsize=None)
def images(key: str) -> torch.Tensor:
    size = backbone(key).image_size
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))


@lru_cache(maxsize=None)
def all_layers(key: str) -> dict:
    return forward_layers(backbone(key), images(key), layer_names(backbone(key)))


LAYER_CASES = [(key, layer) for key in BACKBONE_KEYS for layer in layer_names(backbone(key))]


def test_every_family_offers_a_test_backbone():
    assert FAMILIES.names(), "no feature family registered"
    for name, family in FAMILIES.items():
        assert family.test_keys, f"feature family {name!r} lists no test_keys for these contract tests"
        for key in family.test_keys:
            assert backbone(key).family == name


@pytest.mark.parametrize("key, layer", LAYER_CASES)
def test_layer_matches_its_info(key, layer):
    bb = backbone(key)
    info = layer_info(bb, layer)
    out = forward_layers(bb, images(key), [layer])
    assert list(out) == [layer]
    feats, cls = out[layer]
    assert feats.dtype == torch.float32 and tuple(feats.shape) == (2, info.channels, *info.grid)
    assert torch.isfinite(feats).all()
    if info.has_cls:
        assert cls is not None and cls.dtype == torch.float32 and tuple(cls.shape) == (2, info.channels)
        assert torch.isfinite(cls).all()
    else:
        assert cls is None
    deep_feats, deep_cls = all_layers(key)[layer]
    torch.testing.assert_close(feats, deep_feats, rtol=0, atol=0)
    if cls is not None:
        torch.testing.assert_close(cls, deep_cls, rtol=0, atol=0)


@pytest.mark.parametrize("key", BACKBONE_KEYS)
def test_layer_shapes_from_the_config_equal_the_built_model(key):
    """What the planners read without building anything (disk budget, cost plan, FLOPs, checkpoint import) is what
    the built tower gives: every layer's name, index, channels, grid, class token and meaning, and the depth."""
    bb = backbone(key)
    family = FAMILIES.get(bb.family)
    shapes = family.layer_shapes(bb.key.arch)
    assert (shapes.arch, shapes.family) == (bb.key.arch, bb.family)
    assert shapes.names == layer_names(bb) and shapes.depth == len(layer_names(bb))
    for layer in layer_names(bb):
        assert shapes[layer] == layer_info(bb, layer), layer
    assert layer_shapes(bb.key.arch) == shapes  # the module-level lookup finds the same family


@pytest.mark.parametrize("key", BACKBONE_KEYS)
def test_the_offline_key_builds_weightless_on_the_meta_device(key):
    """The cost plan times a family's offline key and counts its FLOPs on ``meta``: nothing downloaded, no memory."""
    bb = backbone(key)
    offline = FAMILIES.get(bb.family).offline_key(bb.key.arch)
    meta = load_backbone(offline, device="meta")
    assert meta.family == bb.family and meta.key.arch == bb.key.arch and meta.weights_checksum == ""
    assert all(t.is_meta for t in meta.visual.state_dict().values())
    assert layer_names(meta) == layer_names(bb)


@pytest.fixture(scope="module")
def example_manifest(tmp_path_factory):
    """Four synthetic images (not the shared tiny_dolos fixture), scanned as a Dolos tree."""
    from declip.pipeline.data.manifest import scan_dataset, write_manifest

    root = tmp_path_factory.mktemp("contract-data")
    rng = np.random.default_rng(3)
    for split, name, size in (("test", "a", (40, 24)), ("test", "b", (24, 40)), ("train", "c", (32, 32))):
        img = root / "celebahq" / "fake" / "gen" / "images" / split / f"{name}.png"
        mask = root / "celebahq" / "fake" / "gen" / "masks" / split / f"{name}.png"
        for p in (img, mask):
            p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(img)
        Image.fromarray(np.where(rng.random(size) > 0.5, 255, 0).astype(np.uint8)).save(mask)
    real = root / "celebahq" / "real" / "test" / "r.png"
    real.parent.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)).save(real)
    result = scan_dataset(root, "dolos", progress=False)
    path = root / "manifest.parquet"
    write_manifest(result.manifest, path, root, "dolos")
    return path, root, result.manifest


@pytest.mark.parametrize("key", BACKBONE_KEYS)
def test_store_round_trip_is_byte_identical(key, example_manifest, tmp_path):
    from declip.features.images import open_rgb
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
    from declip.store.feature_store import FeatureStore
    from declip.store.readers import FeatureSource

    manifest, root, samples = example_manifest
    store_url = str(tmp_path / "s.zarr")
    n = len(samples)
    run_extraction(ExtractConfig(manifest=str(manifest), store=store_url, backbone=key, layers="all",
                                 batch_size=n, workers=1, progress=False))
    store = FeatureStore(store_url, mode="r")
    dataset = store.datasets()[0]
    bb = backbone(key)
    stored_rows = store.samples(dataset)
    pixels = torch.stack([to_tensor(bb.recipe(), open_rgb(str(root / p))) for p in stored_rows["image_path"]])
    expected = forward_layers(bb, pixels, layer_names(bb))
    rows = np.arange(n)
    for layer, (feats, cls) in expected.items():
        src = FeatureSource(store, SourceKey.single(key, layer), dataset)
        info = layer_info(bb, layer)
        assert (src.channels, src.grid, src.family) == (info.channels, info.grid, bb.family)
        assert src.valid().all()
        got, got_cls = src.get(rows)
        assert got.dtype == torch.float16
        assert got.numpy().tobytes() == feats.to(torch.float16).numpy().tobytes(), layer
        if info.has_cls:
            assert got_cls.numpy().tobytes() == cls.to(torch.float16).numpy().tobytes(), layer
        else:
            assert got_cls is None


def _check_logits(decoder, feats, cls):
    logits = decoder(feats, cls)
    assert logits.dtype == torch.float32 and tuple(logits.shape) == (feats.shape[0], 1, 256, 256)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list_decoders())
@pytest.mark.parametrize("key, layer", LAYER_CASES)
def test_decoder_maps_every_layer_to_256_logits(key, layer, name):
    bb = backbone(key)
    info = layer_info(bb, layer)
    feats, cls = all_layers(key)[layer]
    decoder = build_decoder(name, in_channels=info.channels, grid=info.grid, family=bb.family, layer=layer,
                            width=DECODER_WIDTH, seed=0).eval()
    with torch.no_grad():
        _check_logits(decoder, feats, cls)


FUSION_CASES = [(v, r) for v in BACKBONE_KEYS if backbone(v).family == "vit"
                for r in BACKBONE_KEYS if backbone(r).family == "resnet"]


@pytest.mark.parametrize("name", list_decoders())
@pytest.mark.parametrize("vit_key, rn_key", FUSION_CASES)
def test_decoder_on_the_fused_source(vit_key, rn_key, name):
    vit_layer, rn_layer = layer_names(backbone(vit_key))[-1], "layer3"
    feats = fuse(all_layers(vit_key)[vit_layer][0], all_layers(rn_key)[rn_layer][0])
    channels = layer_info(backbone(vit_key), vit_layer).channels + layer_info(backbone(rn_key), rn_layer).channels
    decoder = build_decoder(name, in_channels=channels, grid=tuple(feats.shape[-2:]), family="fused",
                            layer=vit_layer, width=DECODER_WIDTH, seed=0).eval()
    with torch.no_grad():
        _check_logits(decoder, feats, None)


@pytest.mark.parametrize("name", RECIPES.names())
def test_recipe_makes_a_model_input(name):
    mean, std = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)
    recipe = make_recipe(name, 32, mean, std)
    assert recipe.name == name and json.loads(json.dumps(recipe.to_dict()))["size"] == 32
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    x = to_tensor(recipe, image)
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 32, 32) and torch.isfinite(x).all()
    assert not torch.equal(x, to_tensor(recipe, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))


def _metric_case():
    """Three fakes (box masks, noisy maps that overlap them) and two reals, at non-square native sizes."""
    rng = np.random.default_rng(7)
    items = []
    for i, (h, w) in enumerate(((20, 30), (25, 25), (30, 18))):
        gt = np.zeros((h, w), dtype=bool)
        gt[3 + i:12 + i, 4:15 - i] = True
        prob = np.clip(gt * 0.6 + rng.random((h, w)) * 0.5, 0, 1).astype(np.float32)
        items.append((prob, gt, 1))
    for h, w in ((16, 16), (22, 14)):
        items.append((rng.random((h, w)).astype(np.float32) * 0.7, None, 0))
    return items


def _references(items) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    fakes = [(p, g) for p, g, label in items if label == 1]
    ious = [100 * ((p > 0.5) & g).sum() / ((p > 0.5) | g).sum() for p, g in fakes]
    tp = sum(((p > 0.5) & g).sum() for p, g in fakes)
    fp = sum(((p > 0.5) & ~g).sum() for p, g in fakes)
    fn = sum(((p <= 0.5) & g).sum() for p, g in fakes)
    scores = np.array([p.mean() for p, _, _ in items])
    labels = np.array([label for _, _, label in items])
    return {
        "iou": np.mean(ious), "iou_empty0": np.mean(ious), "pooled_iou": 100 * tp / (tp + fp + fn),
        "pooled_f1": 2 * tp / (2 * tp + fp + fn),
        "ap": np.mean([average_precision_score(g.ravel(), p.ravel()) for p, g in fakes]),
        "pixel_auc": np.mean([roc_auc_score(g.ravel(), p.ravel()) for p, g in fakes]),
        "image_auc": roc_auc_score(labels, scores), "image_ap": average_precision_score(labels, scores),
        "image_acc": np.mean((scores > 0.5) == labels),
    }


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_is_finite_in_range_and_matches_its_reference(name):
    items = _metric_case()
    acc = MetricAccumulator([name])
    for i, (prob, gt, label) in enumerate(items):
        acc.add(prob, gt, label, f"img{i}")
    row = acc.summary().set_index("metric").loc[name]
    value = float(row["value"])
    assert np.isfinite(value)
    assert 0 <= value <= (100 if row["scale"] == "percent" else 1)
    reference = _references(items).get(name)
    if reference is not None:
        assert value == pytest.approx(reference, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", LAYOUTS.names())
def test_layout_scans_its_example_tree(name, tmp_path):
    from declip.pipeline.data.manifest import scan_dataset

    LAYOUTS.get(name).write_example(tmp_path)
    result = scan_dataset(tmp_path, name, progress=False)
    assert result.problems.empty, result.problems
    df = result.manifest
    fakes = df[(df["label"] == 1) & (df["mask_path"] != "")]
    assert len(fakes) >= 1 and (fakes["kind"] == "partial").all()
    assert (df["width"] > 0).all() and df["sha256"].str.len().eq(64).all()
    assert scan_dataset(tmp_path, "auto", progress=False).layout == name


def _photo(seed: int, size=(41, 29)) -> Image.Image:
    """A non-square (width 41, height 29) RGB image: a swapped size or a mask off by a transpose shows."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("name", VIEW_OPS.names())
def test_view_operation_keeps_its_contract(name):
    spec = VIEW_OPS.get(name)
    view = View.parse(spec.example)
    assert name in [op.name for op in view.ops] and spec.syntax.startswith(name)
    assert View.parse(view.name) == view and View.parse(view.name).name == view.name  # canonical name round-trips
    image = _photo(0)
    to_input = lambda im: im.resize((32, 32), Image.Resampling.BILINEAR)  # noqa: E731 - a recipe's resize
    first = view.apply(image, "img/a.png", to_input)
    again = View.parse(spec.example).apply(image.copy(), "img/a.png", to_input)
    assert first.mode == "RGB" and np.array_equal(np.asarray(first), np.asarray(again))
    other = view.apply(image, "img/b.png", to_input)
    assert (not np.array_equal(np.asarray(first), np.asarray(other))) == view.random  # seeded per image, if at all
    mask = np.zeros((29, 41), np.uint8)
    mask[5:20, 8:30] = 255
    moved = view.apply_mask(mask)
    if not any(op.spec.after_resize for op in view.ops):  # augment works at the model input size
        assert moved.shape == (first.size[1], first.size[0]) and view.image_size(41, 29) == first.size
    if view.geometric:
        assert set(np.unique(moved)) <= {0, 255}  # a binary mask stays binary
    else:
        assert moved is mask
    record = view.record()
    assert json.loads(json.dumps(record)) == record and record["view"] == view.name
    assert set(record["libraries"]) == {lib for op in view.ops for lib in op.spec.libraries}


def _activations() -> torch.Tensor:
    """(3, 5, 4, 6) maps: ordinary, small, huge (a ViT residual channel), all-zero and negative-only channels."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 5, 4, 6, generator=g)
    x[:, 1] *= 1e-3
    x[:, 2] *= 300.0
    x[:, 3] = 0.0
    x[:, 4] = -x[:, 4].abs() - 0.5
    return x


@pytest.mark.parametrize("name", STORAGE_DTYPES.names())
def test_storage_dtype_keeps_its_contract(name, tmp_path):
    from declip.store.feature_store import FeatureStore
    from declip.store.quantize import bytes_per_sample, compute_dtype, decode, encode
    from declip.store.readers import FeatureSource
    from tests.store.store_fixtures import BB_A, DS, make_meta, new_store

    spec = STORAGE_DTYPES.get(name)
    x = _activations()
    stored, scales = encode(x, name)
    assert stored.dtype == np.dtype(spec.disk) and (scales is not None) == spec.quantized
    scales_t = None if scales is None else torch.from_numpy(scales)
    back = decode(torch.from_numpy(stored), scales_t, name, torch.float32)
    unit = scales_t[:, :, None, None] if spec.quantized else 1.0
    bound = spec.relative_error * x.abs() + spec.absolute_error * unit + 1e-6 * x.abs()  # + float32 arithmetic
    assert torch.all((back - x).abs() <= bound), float(((back - x).abs() - bound).max())
    assert torch.all(back[:, 3] == 0)

    store, samples = new_store(tmp_path / "s.zarr", n=3, block_rows=3)
    arrays = store.open_layer(BB_A, "layer1", DS, dict(make_meta(samples, channels=5, grid=(4, 6), block_rows=3),
                                                      dtype=name))
    cls = np.random.default_rng(0).standard_normal((3, 5)).astype(arrays.cls.dtype)
    store.write_block(arrays, 0, stored, cls, np.ones(3, np.uint8), [], scales)
    per_row = sum(int(np.prod(a.shape[1:])) * a.dtype.itemsize
                  for a in (arrays.feats, arrays.scales, arrays.cls, arrays.valid) if a is not None)
    assert bytes_per_sample(name, 5, (4, 6), has_cls=True) == per_row
    chunks = [f for f in (tmp_path / "s.zarr" / "features" / BB_A / "layer1" / DS / "feats").rglob("*")
              if f.is_file() and f.name != "zarr.json"]
    assert sorted(f.stat().st_size for f in chunks) == [5 * 4 * 6 * np.dtype(spec.disk).itemsize] * 3  # on disk

    feats, got_cls = FeatureSource(FeatureStore(str(tmp_path / "s.zarr"), mode="r"), f"{BB_A}/layer1", DS).get(
        np.arange(3))
    assert feats.dtype == compute_dtype(name)
    assert torch.equal(feats, decode(torch.from_numpy(stored), scales_t, name))
    assert torch.equal(got_cls, torch.from_numpy(cls).to(got_cls.dtype))
