"""``--device auto`` for the commands whose device is not a training option (extract, evaluate, predict): CUDA when
present, else the CPU, as ``declip train``/``grid`` resolve theirs (:meth:`TrainOptions.on_device`); resolved here,
before a config is built, so every config and record holds the concrete device."""
from __future__ import annotations

import argparse

AUTO = "auto"
HELP = "auto (CUDA when present, else the CPU), cpu or cuda[:N]"


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=AUTO, metavar="DEVICE", help=HELP)


def resolved(device: str) -> str:
    """``auto`` → ``cuda`` or ``cpu``; anything else as given."""
    if device != AUTO:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
