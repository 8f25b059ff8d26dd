"""Our decoder checkpoint directory is written atomically: a save killed mid-write keeps the previous checkpoint."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from declip.decoders import build_decoder, load_decoder, save_decoder


def _linear(seed: int):
    return build_decoder("linear", in_channels=8, grid=(4, 4), family="vit", layer="layer1", seed=seed)


def test_a_save_killed_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    first = _linear(0)
    save_decoder(first, tmp_path / "ck", {"epoch": 1})
    before = {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()}

    def killed(obj, f):  # half a file, then the process is interrupted
        Path(f).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        save_decoder(_linear(1), tmp_path / "ck", {"epoch": 2})
    assert {p.name: p.read_bytes() for p in (tmp_path / "ck").iterdir()} == before  # no temp file either
    monkeypatch.undo()
    loaded, meta = load_decoder(tmp_path / "ck")
    assert meta["epoch"] == 1
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), first.state_dict().values()))
