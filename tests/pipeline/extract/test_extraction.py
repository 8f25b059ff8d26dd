"""Extraction into the store: equality with an independent computation, resume, refusal, bad images, kill -9."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms as T
import zarr
from PIL import Image

from tests.fixtures import TINY_BACKBONE, TINY_SIZE
from declip.features.backbones import load_backbone
from declip.core.errors import DeclipError
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.pipeline.data.manifest import read_manifest, scan_dataset, write_manifest
from declip.store.feature_store import FeatureStore

from tests.fixtures import REPO  # noqa: E402


def test_cached_features_equal_hooked_forward(tiny_store, tiny_manifest):
    store = FeatureStore(str(tiny_store), mode="r")
    manifest = read_manifest(tiny_manifest)
    dataset = manifest.df["dataset"].iloc[0]
    backbone = load_backbone(TINY_BACKBONE)
    v = backbone.visual
    prep = T.Compose([T.Resize((64, 64)), T.ToTensor(),
                      T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])
    rows = [0, 7, len(manifest.df) - 1]
    x = torch.stack([prep(Image.open(manifest.abspath(manifest.df["image_path"][r])).convert("RGB")) for r in rows])
    outs = {}
    hooks = [b.register_forward_hook(lambda _m, _i, o, k=k: outs.__setitem__(k, o))
             for k, b in enumerate(v.transformer.resblocks)]
    with torch.no_grad():
        v(x)
    for h in hooks:
        h.remove()
    for k in (0, 2, 3):
        arrays = store.open_layer(TINY_BACKBONE, f"layer{k}", dataset)
        got = np.stack([arrays.feats[r] for r in rows]).astype(np.float32)
        expected = outs[k][:, 1:].reshape(len(rows), 8, 8, -1).permute(0, 3, 1, 2).numpy()
        np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3)  # fp16 storage
        cls = np.stack([arrays.cls[r] for r in rows]).astype(np.float32)
        np.testing.assert_allclose(cls, outs[k][:, 0].numpy(), rtol=2e-3, atol=2e-3)
        assert arrays.meta["random_weights"] and arrays.meta["recipe"]["name"] == "declip"


def test_masks_cached_with_declip_polarity(tiny_store, tiny_manifest):
    store = FeatureStore(str(tiny_store), mode="r")
    df = read_manifest(tiny_manifest).df
    dataset = df["dataset"].iloc[0]
    fake = int(np.flatnonzero(df["label"].to_numpy() == 1)[0])
    real = int(np.flatnonzero(df["label"].to_numpy() == 0)[0])
    soft = store.soft_masks(dataset, np.array([fake, real]))
    mask_file = np.asarray(Image.open(read_manifest(tiny_manifest).abspath(df["mask_path"][fake])).convert("L"))
    native = store.native_mask(dataset, fake, mask_file.shape)
    np.testing.assert_array_equal(native, mask_file < 128)  # black = fake in Dolos, 1 = fake here
    assert soft[0].max() == 255 and soft[1].max() == 0
    assert native.shape == TINY_SIZE  # (height, width) of the 48×80 fixture, not swapped
    assert store.native_mask(dataset, real, TINY_SIZE) is None


def test_rerun_does_no_work_and_new_layer_only_computes_that_layer(tiny_manifest, tmp_path):
    cfg = ExtractConfig(manifest=str(tiny_manifest), store=str(tmp_path / "s.zarr"), backbone=TINY_BACKBONE,
                        layers="layer0,layer1", batch_size=8, progress=False)
    first = run_extraction(cfg)
    assert first.blocks_run == first.blocks_total > 0
    again = run_extraction(cfg)
    assert again.blocks_run == 0 and again.images_encoded == 0
    more = run_extraction(ExtractConfig(**{**cfg.__dict__, "layers": "layer0-2"}))
    assert more.blocks_run == first.blocks_total and more.layers == ["layer0", "layer1", "layer2"]
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    assert {layer for b, layer, d in store.iter_layers()} == {"layer0", "layer1", "layer2"}


def test_metadata_mismatch_is_refused(tiny_store, tiny_dolos, tmp_path):
    store = FeatureStore(str(tiny_store))
    backbone, layer, dataset = next(store.iter_layers())
    meta = dict(store.open_layer(backbone, layer, dataset).meta, weights_checksum="0" * 64)
    with pytest.raises(DeclipError, match="weights_checksum") as err:
        store.open_layer(backbone, layer, dataset, meta)
    assert "Nothing was changed" in str(err.value)
    # a different file list under the same dataset name is refused too
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dolos, copy)
    next((copy / "celebahq" / "real" / "train").glob("*.png")).unlink()
    result = scan_dataset(copy, "dolos", progress=False)
    write_manifest(result.manifest, tmp_path / "m.parquet", copy, "dolos")
    with pytest.raises(DeclipError, match="registered from different files"):
        run_extraction(ExtractConfig(manifest=str(tmp_path / "m.parquet"), store=str(tiny_store),
                                     backbone=TINY_BACKBONE, layers="layer0", progress=False))


@pytest.fixture()
def broken_manifest(tiny_dolos, tmp_path):
    """A valid manifest whose image file is truncated after the scan (decoding fails only at extraction)."""
    copy = tmp_path / "data"
    shutil.copytree(tiny_dolos, copy)
    result = scan_dataset(copy, "dolos", progress=False)
    write_manifest(result.manifest, tmp_path / "m.parquet", copy, "dolos")
    victim = copy / result.manifest["image_path"][3]
    victim.write_bytes(victim.read_bytes()[:60])
    return tmp_path / "m.parquet", 3


def test_unreadable_images_are_recorded_and_skipped(broken_manifest, tmp_path):
    manifest, row = broken_manifest
    cfg = ExtractConfig(manifest=str(manifest), store=str(tmp_path / "s.zarr"), backbone=TINY_BACKBONE,
                        layers="layer1", batch_size=8, progress=False)
    stats = run_extraction(cfg)
    assert stats.bad_images == 1
    store = FeatureStore(str(tmp_path / "s.zarr"), mode="r")
    arrays = store.open_layer(TINY_BACKBONE, "layer1", next(iter(store.datasets())))
    valid = arrays.valid[:]
    assert valid[row] == 0 and valid.sum() == len(valid) - 1 and arrays.complete
    problems = store.layer_problems(arrays)
    assert [p["row"] for p in problems] == [row] and problems[0]["reason"]
    with pytest.raises(DeclipError, match="drop --strict"):
        run_extraction(ExtractConfig(**{**cfg.__dict__, "store": str(tmp_path / "t.zarr"), "strict": True}))


def _extract_cmd(manifest, store, batch):
    return [sys.executable, "-m", "declip.cli", "extract", "--manifest", str(manifest), "--store", str(store),
            "--backbone", "demo-vit-small@random-0", "--layers", "all", "--batch-size", str(batch), "--no-flow",
            "--no-progress"]


@pytest.mark.slow
def test_killed_extraction_resumes_to_identical_bytes(tiny_manifest, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    full, killed = tmp_path / "full.zarr", tmp_path / "killed.zarr"
    subprocess.run(_extract_cmd(tiny_manifest, full, 2), check=True, env=env, cwd=REPO, capture_output=True)
    proc = subprocess.Popen(_extract_cmd(tiny_manifest, killed, 2), env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_path = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        layers = list((killed / "features").glob("*/layer7/*/done")) if killed.exists() else []
        if layers:
            done_path = layers[0]
            done = zarr.open_array(str(done_path), mode="r")[:]
            if 1 <= done.sum() < len(done) - 2:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "extraction finished before it could be interrupted"
    subprocess.run(_extract_cmd(tiny_manifest, killed, 2), check=True, env=env, cwd=REPO, capture_output=True)
    a, b = FeatureStore(str(full), mode="r"), FeatureStore(str(killed), mode="r")
    keys = list(a.iter_layers())
    assert keys == list(b.iter_layers()) and len(keys) == 8
    for key in keys:
        x, y = a.open_layer(*key), b.open_layer(*key)
        assert y.complete
        assert x.feats[:].tobytes() == y.feats[:].tobytes()
        assert x.cls[:].tobytes() == y.cls[:].tobytes()
