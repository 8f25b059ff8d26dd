"""Storage dtypes: quantization round-trip bounds, float32/int8 stores read back transparently, mixing refused."""
import numpy as np
import pytest
import torch

from tests.fixtures import TINY_BACKBONE
from declip.core.errors import DeclipError
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.store.feature_store import FeatureStore
from declip.store.hdf5 import export_hdf5, import_hdf5
from declip.store.quantize import bytes_per_sample, decode, encode
from declip.store.readers import FeatureSource


def _activations(seed: int = 0) -> torch.Tensor:
    """ViT-like maps: most channels small, one channel with huge values, one all-zero channel."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 6, 5, 4, generator=g)
    x[:, 2] *= 300.0
    x[:, 4] = 0.0
    return x


def test_int8_round_trip_error_is_within_half_a_step_per_channel():
    x = _activations()
    stored, scales = encode(x, "int8")
    assert stored.dtype == np.int8 and scales.shape == (3, 6)
    back = decode(torch.from_numpy(stored), torch.from_numpy(scales), "int8", torch.float32)
    step = x.abs().amax(dim=(2, 3)) / 127
    err = (back - x).abs().amax(dim=(2, 3))
    assert torch.all(err <= step / 2 + 1e-6)
    assert torch.all(back[:, 4] == 0)
    # the huge channel does not crush the small ones: their error is a fraction of their own range
    assert float(err[:, 0].max()) < 0.02


def test_float8_round_trip_error_is_within_its_mantissa():
    x = _activations(1)
    stored, scales = encode(x, "float8_e4m3")
    assert stored.dtype == np.uint8
    back = decode(torch.from_numpy(stored), torch.from_numpy(scales), "float8_e4m3", torch.float32)
    s = torch.from_numpy(scales)[:, :, None, None]
    bound = torch.maximum(x.abs() * 2.0**-4, s * 2.0**-9 + torch.zeros_like(x))
    assert torch.all((back - x).abs() <= bound + 1e-6)


def test_quantized_decode_without_scales_is_an_error():
    stored, _ = encode(_activations(), "int8")
    with pytest.raises(DeclipError, match="scales"):
        decode(torch.from_numpy(stored), None, "int8")


@pytest.fixture(scope="module")
def dtype_stores(tiny_manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("dtypes")
    out = {}
    for dtype in ("float32", "int8"):
        path = root / f"{dtype}.zarr"
        run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(path), backbone=TINY_BACKBONE,
                                     layers="1", batch_size=8, storage_dtype=dtype, progress=False))
        out[dtype] = path
    return out


def _source(path, dataset="dolos-celebahq") -> FeatureSource:
    return FeatureSource(FeatureStore(str(path), mode="r"), f"{TINY_BACKBONE}/layer1", dataset)


def test_stores_in_each_dtype_read_back_as_the_same_features(tiny_store, dtype_stores):
    fp16 = _source(tiny_store)
    rows = np.arange(fp16.readers[0].arrays.n_rows)
    ref16, cls16 = fp16.get(rows)
    f32, cls32 = _source(dtype_stores["float32"]).get(rows)
    assert f32.dtype == torch.float32 and cls32.dtype == torch.float32 and ref16.dtype == torch.float16
    # float16 is float32 rounded: agreement to fp16 precision, and float32 holds more digits
    torch.testing.assert_close(f32.half(), ref16, rtol=0, atol=0)
    assert (f32 != ref16.float()).any()
    q8 = _source(dtype_stores["int8"])
    assert q8.readers[0].arrays.feats.dtype == np.int8
    f8, cls8 = q8.get(rows)
    assert f8.dtype == torch.float16
    step = f32.abs().amax(dim=(2, 3), keepdim=True) / 127
    assert torch.all((f8.float() - f32).abs() <= step / 2 + 2e-3 * f32.abs() + 1e-3)
    torch.testing.assert_close(cls8, cls16)  # class tokens stay float16


def test_quantized_layer_in_ram_equals_streamed(dtype_stores):
    rows = np.array([5, 0, 3, 11])
    streamed = _source(dtype_stores["int8"]).get(rows)[0]
    held = _source(dtype_stores["int8"])
    held.load_into_memory()
    assert held._cache[0].feats.dtype == np.int8  # stays quantized in RAM
    torch.testing.assert_close(held.get(rows)[0], streamed, rtol=0, atol=0)


def test_int8_store_is_half_the_fp16_bytes(tiny_store, dtype_stores):
    fp16 = FeatureStore(str(tiny_store), mode="r").open_layer(TINY_BACKBONE, "layer1", "dolos-celebahq")
    q8 = FeatureStore(str(dtype_stores["int8"]), mode="r").open_layer(TINY_BACKBONE, "layer1", "dolos-celebahq")
    assert fp16.feats.nbytes == 2 * q8.feats.nbytes
    c, h, w = q8.feats.shape[1:]
    assert bytes_per_sample("int8", c, (h, w), True) < 0.6 * bytes_per_sample("float16", c, (h, w), True)


def test_mixing_storage_dtypes_is_refused(tiny_manifest, dtype_stores):
    path = dtype_stores["int8"]
    before = FeatureStore(str(path), mode="r").open_layer(TINY_BACKBONE, "layer1", "dolos-celebahq").feats[:]
    with pytest.raises(DeclipError, match="dtype: stored 'int8' vs requested 'float16'"):
        run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(path), backbone=TINY_BACKBONE,
                                     layers="1", batch_size=8, progress=False))
    after = FeatureStore(str(path), mode="r").open_layer(TINY_BACKBONE, "layer1", "dolos-celebahq").feats[:]
    np.testing.assert_array_equal(before, after)
    with pytest.raises(DeclipError, match="unknown storage dtype"):
        run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(path), backbone=TINY_BACKBONE,
                                     layers="1", storage_dtype="int4", progress=False))


def test_int8_hdf5_round_trip_keeps_dtype_and_scales(dtype_stores, tmp_path):
    src = FeatureStore(str(dtype_stores["int8"]), mode="r")
    h5 = export_hdf5(src, TINY_BACKBONE, "layer1", "dolos-celebahq", str(tmp_path / "l1.h5"))
    dst = FeatureStore(str(tmp_path / "copy.zarr"))
    dst.create_dataset("dolos-celebahq", src.samples("dolos-celebahq"), root="/x", layout="dolos", block_rows=8)
    import_hdf5(dst, h5)
    a = src.open_layer(TINY_BACKBONE, "layer1", "dolos-celebahq")
    b = dst.open_layer(TINY_BACKBONE, "layer1", "dolos-celebahq")
    assert b.storage_dtype == "int8"
    np.testing.assert_array_equal(a.feats[:], b.feats[:])
    np.testing.assert_array_equal(a.scales[:], b.scales[:])


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_verify_checks_quantized_and_float32_layers_as_stored(dtype_stores, dtype, tmp_path):
    """The per-block checksums cover the stored bytes (int8 bits, float32 values) and an int8 layer's scales."""
    import shutil

    from declip.store.readers import LayerReader
    from declip.store.verify import verify_store

    path = tmp_path / f"{dtype}.zarr"
    shutil.copytree(dtype_stores[dtype], path)
    store = FeatureStore(str(path))
    assert not [d for d in verify_store(store) if d.blocks or d.unchecked]
    dataset = store.datasets()[0]
    arrays = store.open_layer(TINY_BACKBONE, "layer1", dataset)
    if dtype == "int8":  # a changed scale (features untouched) is damage to the block's features
        arrays.scales[9] = arrays.scales[9] * 2 + 1
    else:
        arrays.feats[9] = arrays.feats[9] + 1
    report = {d.path: d for d in verify_store(FeatureStore(str(path)), redo=True)}
    damage = report[f"features/{TINY_BACKBONE}/layer1/{dataset}"]
    assert damage.blocks == [1] and "feats" in damage.reasons[1]
    assert not FeatureStore(str(path), mode="r").open_layer(TINY_BACKBONE, "layer1", dataset).complete
    with pytest.raises(DeclipError, match="incomplete"):
        LayerReader(FeatureStore(str(path), mode="r"), TINY_BACKBONE, "layer1", dataset)
