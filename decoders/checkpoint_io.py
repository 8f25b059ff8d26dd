"""Our own decoder checkpoint directory (``decoder.pt`` + ``config.json``), written atomically.

Kept apart from :mod:`decoders.declip_checkpoint`, which reads and writes DeCLIP's released ``.pth`` format.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from declip.core.errors import DeclipError
from declip.core.io import atomic_path, atomic_write_text
from declip.decoders.registry import CONFIG_KEYS, Decoder, decoder_from_config


def save_decoder(decoder: Decoder, directory: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``DIR/decoder.pt`` ({config, state_dict}) and ``DIR/config.json`` (config + ``extra``), atomically.

    Training runs and ``declip import-checkpoint`` both produce this layout, so evaluation reads one format.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    clash = [k for k in extra if k in CONFIG_KEYS and extra[k] != decoder.config[k]]
    if clash:
        raise ValueError(f"extra metadata would overwrite decoder config keys {clash}")
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in decoder.state_dict().items())
    atomic_torch_save({"config": dict(decoder.config), "state_dict": state}, directory / "decoder.pt")
    meta = {**decoder.config, "grid": list(decoder.config["grid"]), **extra}
    atomic_write_text(directory / "config.json", json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return directory


def load_decoder(directory: str | os.PathLike) -> tuple[Decoder, dict[str, Any]]:
    """Read a directory written by :func:`save_decoder`; returns the decoder (eval mode) and ``config.json``."""
    directory = Path(directory)
    weights, meta_path = directory / "decoder.pt", directory / "config.json"
    for needed in (weights, meta_path):
        if not needed.is_file():
            raise DeclipError(f"{needed} not found; {directory} is not a decoder checkpoint directory "
                              f"(train a model or run `declip import-checkpoint FILE.pth --out {directory}`)")
    try:
        blob = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DeclipError(f"{weights} is not readable ({type(exc).__name__}: {exc}); re-create the checkpoint") from exc
    if not isinstance(blob, dict) or not {"config", "state_dict"} <= set(blob):
        raise DeclipError(f"{weights} must hold {{'config', 'state_dict'}}; re-create it with save_decoder")
    decoder = decoder_from_config(blob["config"])
    try:
        decoder.load_state_dict(blob["state_dict"], strict=True)
    except RuntimeError as exc:
        raise DeclipError(f"{weights}: weights do not match its config ({exc}); re-create the checkpoint") from exc
    return decoder.eval(), json.loads(meta_path.read_text())


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`core.io.atomic_path`: readers never see half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
