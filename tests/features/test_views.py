"""Views: the perturbation registry (canonical names, determinism, masks) and views cached in the store."""
import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from tests.fixtures import TINY_BACKBONE
from declip.core.errors import DeclipError
from declip.features.backbones import load_backbone
from declip.features.views import View, augment_copies, parse_views
from declip.pipeline.data.manifest import read_manifest
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.store.feature_store import FeatureStore, split_view_key, view_dataset_key

from tests.fixtures import REPO  # noqa: E402
CLIP_NORM = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def _photo(seed=0, size=(48, 40)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _digest(image):
    return hashlib.sha256(np.asarray(image).tobytes()).hexdigest()


# ---- the registry ----

@pytest.mark.parametrize("text, canonical", [
    ("clean", "clean"), ("jpeg:75", "jpeg:75"), ("jpeg:75.0", "jpeg:75"), ("resize:0.50", "resize:0.5"),
    ("clean+blur:1", "blur:1"), ("jpeg:75+resize:0.5", "jpeg:75+resize:0.5"), ("jitter", "jitter:0.3,0.3,0.3,0.3"),
    ("jitter:0.2", "jitter:0.2,0.2,0.2,0.2"), ("augment:all+copy:2", "augment:all+copy:2"), ("noise:0.05", "noise:0.05"),
])
def test_canonical_names(text, canonical):
    assert View.parse(text).name == canonical
    assert View.parse(canonical).name == canonical


@pytest.mark.parametrize("text, words", [
    ("", "empty view"), ("jpg:75", "unknown view operation"), ("jpeg:abc", "expected a number"),
    ("jpeg:75.5", "integer"), ("resize:0", "[0.01, 8]"), ("augment:flip", "blur, color_jitter"),
    ("augment:all+jpeg:75", "must come after"),
])
def test_bad_views_are_one_clear_error(text, words):
    with pytest.raises(DeclipError, match=None) as info:
        View.parse(text)
    assert words in str(info.value)


def test_jpeg_is_pillows_default_encoder():
    image = _photo()
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=60)
    expected = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.array_equal(np.asarray(View.parse("jpeg:60").apply(image, "x")), expected)
    assert not np.array_equal(np.asarray(View.parse("jpeg:95").apply(image, "x")), expected)


def test_views_are_seeded_per_image_and_per_copy():
    image = _photo()
    for name in ("noise:0.1", "jitter", "augment:all"):
        view = View.parse(name)
        to_input = (lambda im: im.resize((32, 32), Image.BILINEAR))
        a, b = view.apply(image, "img/a.png", to_input), view.apply(image, "img/a.png", to_input)
        assert np.array_equal(np.asarray(a), np.asarray(b)), name
        assert not np.array_equal(np.asarray(a), np.asarray(view.apply(image, "img/b.png", to_input))), name
    copies = augment_copies("all", 3)
    assert [c.name for c in copies] == ["augment:all+copy:0", "augment:all+copy:1", "augment:all+copy:2"]
    outs = {_digest(c.apply(image, "img/a.png", lambda im: im.resize((32, 32)))) for c in copies}
    assert len(outs) == 3


@pytest.mark.slow
def test_views_are_deterministic_across_processes():
    code = ("import hashlib, numpy as np; from PIL import Image; from features.views import View; "
            "im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)); "
            "print(' '.join(hashlib.sha256(np.asarray(View.parse(v).apply(im, 'img/a.png', "
            "lambda x: x.resize((32, 32)))).tobytes()).hexdigest() for v in "
            "['noise:0.1', 'jitter', 'augment:all+copy:1', 'jpeg:50+resize:0.5', 'blur:1.5']))")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}).stdout
            for seed in (1, 2)]
    image = _photo(0)
    here = " ".join(_digest(View.parse(v).apply(image, "img/a.png", lambda x: x.resize((32, 32))))
                    for v in ["noise:0.1", "jitter", "augment:all+copy:1", "jpeg:50+resize:0.5", "blur:1.5"])
    assert runs[0].strip() == runs[1].strip() == here


def test_declip_augmentation_kinds_apply_declips_steps_in_declips_order():
    """declip-method §5.5: `all` is ColorJitter(0.3 x4), then JPEG q~randint[30, 100] (optimize), then GaussianBlur
    (kernel 5, sigma~U(0.4, 2)); each single kind is its one step. Rebuilt here step by step from the same draws."""
    from declip.features.view_ops import AUGMENT_KINDS, blur, jitter, jpeg

    assert list(AUGMENT_KINDS) == ["blur", "color_jitter", "jpeg_compression", "all"]
    image = _photo(3, size=(40, 40))
    steps = {"color_jitter": lambda im, rng: jitter(im, (0.3, 0.3, 0.3, 0.3), rng),
             "jpeg_compression": lambda im, rng: jpeg(im, int(rng.integers(30, 101)), optimize=True),
             "blur": lambda im, rng: blur(im, float(rng.uniform(0.4, 2.0)), kernel=5)}
    for kind, order in (("all", ("color_jitter", "jpeg_compression", "blur")), ("blur", ("blur",)),
                        ("color_jitter", ("color_jitter",)), ("jpeg_compression", ("jpeg_compression",))):
        view = View.parse(f"augment:{kind}")
        rng = np.random.Generator(np.random.PCG64(view.seed("img/a.png")))
        expected = image
        for step in order:
            expected = steps[step](expected, rng)
        assert np.array_equal(np.asarray(view.apply(image, "img/a.png", lambda im: im)), np.asarray(expected)), kind


def test_noise_is_the_documented_formula():
    image = _photo()
    view = View.parse("noise:0.05")
    rng = np.random.Generator(np.random.PCG64(view.seed("row-7")))
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    expected = np.round(np.clip(pixels + rng.normal(0, 0.05, pixels.shape), 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(view.apply(image, "row-7")), expected)


def test_masks_follow_geometric_views_only():
    image = _photo(size=(50, 30))
    mask = np.zeros((30, 50), np.uint8)
    mask[10:20, 20:40] = 255
    for name in ("resize:0.5", "jpeg:70+resize:1.5", "resize:0.33"):
        view = View.parse(name)
        out, moved = view.apply(image, "m"), view.apply_mask(mask)
        assert moved.shape == (out.size[1], out.size[0]) and view.image_size(50, 30) == out.size
        assert set(np.unique(moved)) <= {0, 255}  # nearest: binary stays binary
        # the box scales with the image: its fraction of the area is kept (up to rounding at the edges)
        assert abs((moved > 0).mean() - (mask > 0).mean()) < 0.05
    for name in ("jpeg:50", "blur:2", "noise:0.1", "jitter"):
        assert View.parse(name).apply_mask(mask) is mask


def test_record_names_definition_and_encoder_versions():
    from PIL import features

    rec = View.parse("jpeg:75+resize:0.5").record()
    assert rec["view"] == "jpeg:75+resize:0.5"
    assert [op["op"] for op in rec["ops"]] == ["jpeg:75", "resize:0.5"] and rec["ops"][1]["geometric"]
    assert rec["libraries"]["libjpeg"] == str(features.version("jpg")) and "Pillow" in rec["libraries"]
    assert "numpy" in View.parse("noise:0.1").record()["libraries"]
    assert View.parse("resize:2").strength() == ("resize scale", 2.0)
    assert View.parse("jpeg:75+resize:0.5").strength() is None


def test_view_list_parsing_dedups_canonical_names():
    views = parse_views(["jpeg:75", "jpeg:75.0;blur:1", "jitter:0.3,0.3,0.3,0.3", "jitter"])
    assert [v.name for v in views] == ["jpeg:75", "blur:1", "jitter:0.3,0.3,0.3,0.3"]
    assert view_dataset_key("dolos", "clean") == "dolos" and split_view_key("dolos@jpeg:75") == ("dolos", "jpeg:75")
    assert split_view_key("dolos") == ("dolos", "clean")


# ---- views in the store ----

@pytest.fixture(scope="module")
def view_store(tiny_manifest, tmp_path_factory):
    """Clean + two views of the tiny dataset, layers 0 and 3 only."""
    store = tmp_path_factory.mktemp("views") / "declip.features.zarr"
    for view in ("clean", "jpeg:50", "resize:0.5+noise:0.02"):
        run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(store), backbone=TINY_BACKBONE,
                                     layers="layer0,layer3", batch_size=8, progress=False, view=view))
    return store


def _hooked(images):
    backbone = load_backbone(TINY_BACKBONE)
    prep = T.Compose([T.Resize((64, 64)), T.ToTensor(), T.Normalize(*CLIP_NORM)])
    x = torch.stack([prep(im) for im in images])
    outs = {}
    hooks = [b.register_forward_hook(lambda _m, _i, o, k=k: outs.__setitem__(k, o))
             for k, b in enumerate(backbone.visual.transformer.resblocks)]
    with torch.no_grad():
        backbone.visual(x)
    for h in hooks:
        h.remove()
    return {k: o[:, 1:].reshape(len(images), 8, 8, -1).permute(0, 3, 1, 2).numpy() for k, o in outs.items()}


def test_view_features_equal_an_independent_computation(view_store, tiny_manifest):
    manifest = read_manifest(tiny_manifest)
    dataset = manifest.df["dataset"].iloc[0]
    store = FeatureStore(str(view_store), mode="r")
    rows = [0, 9, len(manifest.df) - 1]
    originals = [Image.open(manifest.abspath(manifest.df["image_path"][r])).convert("RGB") for r in rows]
    # jpeg:50 with the library call itself
    jpegs = []
    for im in originals:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=50)
        jpegs.append(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    # resize:0.5 then noise:0.02, the seeded generator drawn once for the whole composition
    view = View.parse("resize:0.5+noise:0.02")
    noisy = []
    for r, im in zip(rows, originals):
        small = im.resize((round(im.width * 0.5), round(im.height * 0.5)), Image.Resampling.BICUBIC)
        rng = np.random.Generator(np.random.PCG64(view.seed(manifest.df["image_path"][r])))
        px = np.asarray(small, dtype=np.float64) / 255.0
        noisy.append(Image.fromarray(np.round(np.clip(px + rng.normal(0, 0.02, px.shape), 0, 1) * 255)
                                     .astype(np.uint8)))
    clean_expected = _hooked(originals)
    for name, images in (("jpeg:50", jpegs), ("resize:0.5+noise:0.02", noisy)):
        expected = _hooked(images)
        for k in (0, 3):
            arrays = store.open_layer(TINY_BACKBONE, f"layer{k}", f"{dataset}@{name}")
            got = np.stack([arrays.feats[r] for r in rows]).astype(np.float32)
            np.testing.assert_allclose(got, expected[k], rtol=2e-3, atol=2e-3)
            assert not np.allclose(got, clean_expected[k], rtol=2e-3, atol=2e-3)  # the view did something
            assert arrays.meta["view"]["view"] == name
    clean = store.open_layer(TINY_BACKBONE, "layer3", dataset)
    assert "view" not in clean.meta  # clean features are where and what they were


def test_geometric_view_moves_masks_photometric_view_shares_them(view_store, tiny_manifest):
    df = read_manifest(tiny_manifest).df
    dataset = df["dataset"].iloc[0]
    store = FeatureStore(str(view_store), mode="r")
    fake = int(np.flatnonzero(df["label"].to_numpy() == 1)[0])
    h, w = int(df["height"][fake]), int(df["width"][fake])
    clean_native = store.native_mask(dataset, fake, (h, w))
    # photometric: same masks, read from the clean dataset (no second copy)
    jpeg_key = f"{dataset}@jpeg:50"
    assert store.dataset_attrs(jpeg_key)["masks_of"] == dataset
    assert "soft_masks" not in store.root[f"datasets/{jpeg_key}"]
    assert np.array_equal(store.native_mask(jpeg_key, fake, (h, w)), clean_native)
    # geometric: the view's sizes and masks are those of the resized image
    geo_key = f"{dataset}@resize:0.5+noise:0.02"
    samples = store.samples(geo_key)
    assert (int(samples["width"][fake]), int(samples["height"][fake])) == (round(w * 0.5), round(h * 0.5))
    moved = store.native_mask(geo_key, fake, (int(samples["height"][fake]), int(samples["width"][fake])))
    expected = np.asarray(Image.fromarray(clean_native.astype(np.uint8) * 255).resize(
        (round(w * 0.5), round(h * 0.5)), Image.Resampling.NEAREST)) > 127
    assert np.array_equal(moved, expected)
    assert store.soft_masks(geo_key, np.array([fake])).shape == (1, 256, 256)
    assert store.dataset_attrs(geo_key)["view"]["view"] == "resize:0.5+noise:0.02"


def test_rerun_of_a_view_encodes_nothing(view_store, tiny_manifest):
    stats = run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(view_store), backbone=TINY_BACKBONE,
                                         layers="layer0,layer3", batch_size=8, progress=False, view="jpeg:50.0"))
    assert stats.blocks_run == 0 and stats.images_encoded == 0 and stats.dataset.endswith("@jpeg:50")


def test_view_made_by_another_encoder_is_refused(view_store, tiny_manifest, tmp_path):
    import shutil

    copy = tmp_path / "copy.zarr"
    shutil.copytree(view_store, copy)
    store = FeatureStore(str(copy))
    dataset = read_manifest(tiny_manifest).df["dataset"].iloc[0]
    group = store.root[f"datasets/{dataset}@jpeg:50"]
    record = dict(group.attrs["view"])
    record["libraries"] = dict(record["libraries"], libjpeg="9.9")
    group.attrs["view"] = record
    before = np.asarray(store.open_layer(TINY_BACKBONE, "layer3", f"{dataset}@jpeg:50").feats[0])
    with pytest.raises(DeclipError, match="made differently"):
        run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(copy), backbone=TINY_BACKBONE,
                                     layers="layer0,layer3", batch_size=8, progress=False, view="jpeg:50"))
    after = np.asarray(FeatureStore(str(copy)).open_layer(TINY_BACKBONE, "layer3", f"{dataset}@jpeg:50").feats[0])
    assert np.array_equal(before, after)
