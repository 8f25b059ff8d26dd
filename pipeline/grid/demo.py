"""The embedded demo: real photos shipped in scikit-image/scikit-learn, classical inpainting as the "generators",
a random-weight ViT (no weights can be downloaded offline), and the full pipeline on top.

Random weights carry no usable signal, so the grid also runs the SRM noise-residual positive control
(``srm@fixed/layer0``, :mod:`features.srm`): it must clearly beat the feature-free baselines, or the pipeline is
broken. Budgets are set in optimizer steps (``min_steps_per_epoch``), since an epoch of 24 images is one or two
steps. The settings finish in minutes on 2 CPU cores (decoders 1/8 wide there, as every command's unset width is on
the CPU); ``--backbone ViT-L-14@openai`` (with network access) runs the same job with DeCLIP's real backbone, at
DeCLIP's width on a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from declip.core.configs import JsonConfig, nested
from declip.pipeline.train.options import TrainOptions

#: The demo's training options: DeCLIP's recipe scaled to 24 training images per generator and a 10-minute budget.
DEMO_TRAINING = TrainOptions(
    max_epochs=8, patience=3, batch_size=8,
    min_steps_per_epoch=20,  # 24 training images per generator: 20 steps of 8, about 7 passes per epoch
    collapse_patience=6,  # SRM conv-4 on Telea predicts nothing for 4 epochs before it learns
)


@dataclass(frozen=True)
class DemoConfig(JsonConfig):
    out: str = "demo-out"
    backbone: str = "demo-vit-small@random-0"
    size: int = 40  # fake images per generator
    seed: int = 0
    layers: tuple[str, ...] = ("layer4", "layer7")  # layer1 collapsed for every decoder; 2 layers keep it ≤ 10 min
    decoders: tuple[str, ...] = ("linear", "conv-4")
    controls: tuple[str, ...] = ("srm@fixed/layer0",)  # positive-control sources beside the backbone's layers
    max_workers: int = 2
    task_runner: str = "threads"
    options: TrainOptions = nested(TrainOptions, factory=lambda: DEMO_TRAINING,
                                   help="the training options of every grid cell (width unset: 0.125 on the CPU)")

    @property
    def data_dir(self) -> Path:
        return Path(self.out) / "data"

    @property
    def manifest(self) -> Path:
        return Path(self.out) / "manifest.parquet"

    @property
    def store(self) -> Path:
        return Path(self.out) / "declip.store.zarr"


def layers_for(cfg: DemoConfig, num_blocks: int) -> tuple[str, ...]:
    """The demo's layers, or an early/middle/late spread when the backbone is deeper (e.g. ViT-L-14: 24 blocks)."""
    wanted = [int(layer.removeprefix("layer")) for layer in cfg.layers]
    if max(wanted) < num_blocks:
        return cfg.layers
    return tuple(f"layer{k}" for k in sorted({num_blocks // 8, num_blocks // 2, num_blocks - 4}))


def grid_config(cfg: DemoConfig, dataset: str, generators: list[str], layers: tuple[str, ...]) -> dict:
    from declip.pipeline.grid.config import GridConfig

    return GridConfig(
        store=str(cfg.store), dataset=dataset, out=str(Path(cfg.out) / "grid"), backbones=(cfg.backbone,),
        layers=layers, decoders=cfg.decoders, train_sets=tuple(generators), test_sets=tuple(generators),
        seeds=(cfg.seed,), manifest=str(cfg.manifest), max_workers=cfg.max_workers, task_runner=cfg.task_runner,
        save_maps=1, extra_sources=cfg.controls, options=cfg.options,
    ).to_json()
