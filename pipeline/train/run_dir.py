"""A training run's directory: ``config.json`` (written once, checked on resume), ``state.pt`` (the resumable state
after every epoch), ``epochs.csv`` (the per-epoch log) and ``summary.json``, each replaced atomically.

Why its own module: the loop (:mod:`declip.pipeline.train.training`) decides what to save; this module decides how it
lands on disk, so a run killed at any instant leaves either the previous file or the new one, never half of one.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import torch

from declip.core.errors import DeclipError
from declip.core.io import atomic_write_text, remove_leftovers
from declip.decoders.checkpoint_io import atomic_torch_save
from declip.pipeline.train.config import TrainConfig


def open_run_dir(out: Path, cfg: TrainConfig) -> dict | None:
    """Write config.json (or check that the one there is this run's); return the saved state to resume from, or None
    for a fresh run. Leftover temporary files of a killed writer are removed first (the real files are intact)."""
    out.mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "best"):
        remove_leftovers(folder)
    cfg_path = out / "config.json"
    cfg_json = dict(cfg.to_json(), identity=cfg.identity())
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old.get("identity") != cfg_json["identity"]:
            raise DeclipError(f"{out} holds a run with a different config; choose another --out or delete it")
    else:
        atomic_write_text(cfg_path, json.dumps(cfg_json, indent=2))
    state_path = out / "state.pt"
    if not state_path.exists():
        return None
    return torch.load(state_path, map_location=cfg.options.device, weights_only=True)


def save_epoch(out: Path, state: dict, history: list[dict]) -> None:
    """The resumable state, then the epoch log rewritten from the saved history (after it: a kill in between cannot
    record an epoch twice)."""
    atomic_torch_save(state, out / "state.pt")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(out / "epochs.csv", buf.getvalue())


def write_summary(out: Path, summary: dict) -> dict:
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
