"""Device-resident training (features copied to the device once) equals streaming; bf16 autocast and channels_last."""
from functools import partial

import numpy as np
import pytest
import torch

from tests.fixtures import TINY_BACKBONE, TINY_DATASET, train_config
from declip.core.errors import DeclipError
from declip.pipeline.data import resident_features
from declip.pipeline.data.cached_splits import CachedSplits
from declip.pipeline.extract.extraction import ExtractConfig, run_extraction
from declip.pipeline.train.training import train, train_heads

DATASET = TINY_DATASET


_cfg = partial(train_config, batch_size=8, max_epochs=2, patience=5)


def _state(path):
    return torch.load(path / "best" / "decoder.pt", weights_only=True)["state_dict"]


def _assert_same(a, b):
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


@pytest.fixture
def resident_calls(monkeypatch):
    calls = []
    real = resident_features.ResidentRows.__init__

    def spy(self, *args, **kwargs):
        calls.append(args[1])
        real(self, *args, **kwargs)

    monkeypatch.setattr(resident_features.ResidentRows, "__init__", spy)
    return calls


def test_device_resident_heads_equal_streaming(tiny_store, tmp_path, resident_calls):
    sources = [f"{TINY_BACKBONE}/layer1", f"{TINY_BACKBONE}/layer3"]
    heads = [("linear", sources[0]), ("conv-4", sources[1])]

    def cfgs(tag, **kw):
        return [_cfg(tiny_store, tmp_path / tag / f"{d}-{s[-1]}", decoder=d, source=s, width=0.125, **kw)
                for d, s in heads]

    train_heads(cfgs("resident", device_memory_gb=1.0))
    assert len(resident_calls) == 1  # both heads' rows were put on the device once
    train_heads(cfgs("stream", memory_gb=0.0, device_memory_gb=0.0))
    assert len(resident_calls) == 1
    for d, s in heads:
        _assert_same(tmp_path / "resident" / f"{d}-{s[-1]}", tmp_path / "stream" / f"{d}-{s[-1]}")


def test_device_budget_too_small_falls_back(tiny_store, tmp_path, resident_calls):
    data = CachedSplits.open(str(tiny_store), DATASET, [f"{TINY_BACKBONE}/layer1"], None)
    data.warm(np.arange(10), "cpu", device_budget=1000)
    assert data.resident is None and not resident_calls


def test_int8_device_resident_equals_int8_streaming(tiny_manifest, tmp_path, resident_calls):
    store = tmp_path / "int8.zarr"
    run_extraction(ExtractConfig(manifest=str(tiny_manifest), store=str(store), backbone=TINY_BACKBONE, layers="1",
                                 batch_size=8, storage_dtype="int8", progress=False))
    train(_cfg(store, tmp_path / "resident", device_memory_gb=1.0))
    train(_cfg(store, tmp_path / "stream", memory_gb=0.0))
    assert len(resident_calls) == 1
    _assert_same(tmp_path / "resident", tmp_path / "stream")


def test_bf16_autocast_is_its_own_run_and_stays_close(tiny_store, tmp_path):
    fp32 = _cfg(tiny_store, tmp_path / "fp32", decoder="conv-4", width=0.125, max_epochs=1)
    bf16 = _cfg(tiny_store, tmp_path / "bf16", decoder="conv-4", width=0.125, max_epochs=1, precision="bf16")
    assert fp32.identity() != bf16.identity()
    assert _cfg(tiny_store, "x").identity() == _cfg(tiny_store, "y", channels_last=True, compile=True).identity()
    train(fp32)
    train(bf16)
    a, b = _state(tmp_path / "fp32"), _state(tmp_path / "bf16")
    assert any(not torch.equal(a[k], b[k]) for k in a)  # autocast really ran
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0.05, atol=0.02)
    with pytest.raises(DeclipError, match=r"precision \(--precision\) must be one of fp32, bf16"):
        _cfg(tiny_store, tmp_path / "bad", precision="fp8")  # refused when the config is built


def test_channels_last_conv_decoder_gives_the_same_outputs_and_gradients(tiny_store, tmp_path):
    from declip.decoders import build_decoder
    from declip.pipeline.train.precision import decoder_input, prepare_decoder, use_channels_last

    assert use_channels_last("cpu", "conv-20", None) is False and use_channels_last("cpu", "conv-20", True)
    assert use_channels_last("cuda", "conv-20", None) and not use_channels_last("cuda", "linear", None)
    x = torch.randn(2, 64, 8, 8, generator=torch.Generator().manual_seed(0))
    outs = []
    for nhwc in (False, True):
        dec = build_decoder("conv-4", in_channels=64, grid=(8, 8), family="vit", layer="layer1", width=0.125, seed=0)
        run = prepare_decoder(dec, nhwc, compile_model=False)
        inp = decoder_input(x, "cpu", nhwc)
        assert inp.is_contiguous(memory_format=torch.channels_last) == nhwc
        y = run(inp, None)
        y.square().mean().backward()
        outs.append((y.detach(), {n: p.grad.clone() for n, p in dec.named_parameters()}))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-5, atol=1e-5)
    for n in outs[0][1]:
        torch.testing.assert_close(outs[1][1][n], outs[0][1][n], rtol=1e-4, atol=1e-6)
    summary = train(_cfg(tiny_store, tmp_path / "nhwc", decoder="conv-4", width=0.125, channels_last=True))
    assert summary["epochs"] == 2
