"""P9: the extraction feed -- CPU seconds per image of everything but the forward, and what 16 cores could feed.

On a GPU the forward of ViT-L/14 is fast enough that the host decides the extraction rate: reading, sha256 check,
JPEG decode, resize, normalise (the reader's workers), the copy back of the device's stored bytes, the per-block
CRC-32, the chunk files and the block bookkeeping (the writer). This bench runs that real path --
:func:`declip.pipeline.extract.extraction.run_extraction` into a real store on disk, 256² real-photo JPEGs -- with the
model replaced by synthetic features of the real layer shapes (ViT-L/14 built on the meta device: no weights, no
forward). The device side (the cast or quantization that runs on the GPU) is replaced by a copy of precomputed stored
bytes: the host's share of the copy back.

Printed per (layers, storage dtype): CPU ms per image by thread role (reader, main, writer) and in all (process CPU
time, a no-op run's fixed cost subtracted), images per second per core, the projection for 16 cores (the lent GPU
machine's count; ideal scaling, as sharded extraction runs block ranges in separate processes), the disk bytes per
image and the disk rate that projection needs. Goal: 16 cores feed >= 1,500 img/s for 4 int8 layers.
``bench/gpu.py`` runs the same measurement with the real ViT-L/14 forward on a GPU.

Usage: python bench/p9_feed.py [--images 160] [--arch ViT-L-14] [--layers 4,24] [--dtypes float16,int8]
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import shutil
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from common import make_jpeg_manifest, workdir

GOAL_IMG_S, GOAL_CORES = 1500.0, 16
ROLES = {"reader": ("decode", "batch-reader"), "writer": ("store-writer", "zarr_io", "asyncio"),
         "main": ("MainThread",)}


class ThreadCpu:
    """CPU seconds per thread role, sampled from ``/proc/self/task`` in the background (the reader's pool threads
    come and go with each run, so they are sampled while alive; the last interval of a finished thread is lost)."""

    def __init__(self, every: float = 0.02):
        self.every, self.seen, self.names = every, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)

    def __enter__(self) -> "ThreadCpu":
        self._sample()
        self.start = dict(self.seen)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        self.names.update({t.native_id: t.name for t in threading.enumerate()})
        tick = os.sysconf("SC_CLK_TCK")
        for tid in os.listdir("/proc/self/task"):
            try:
                fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended between the listing and the read
                continue
            self.seen[int(tid)] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime

    def by_role(self) -> dict[str, float]:
        out = dict.fromkeys([*ROLES, "other"], 0.0)
        for tid, seconds in self.seen.items():
            name = self.names.get(tid, "")
            if name == "cpu-sampler":
                continue
            role = next((r for r, prefixes in ROLES.items() if name.startswith(prefixes)), "other")
            out[role] += seconds - self.start.get(tid, 0.0)
        return out


class SyntheticFamily:
    """The real family's shapes and metadata; ``forward_layers`` hands out precomputed features (no model runs)."""

    def __init__(self, real, channels: int, grid: tuple[int, int], batch: int):
        self._real = real
        gen = torch.Generator().manual_seed(0)
        self.feats = torch.randn(batch, channels, *grid, generator=gen).half()
        self.cls = torch.randn(batch, channels, generator=gen).half()

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def forward_layers(self, backbone, images: torch.Tensor, layers: list[str]) -> dict:
        b = len(images)
        return {layer: (self.feats[:b], self.cls[:b].clone()) for layer in layers}


def synthetic_backbone(arch: str, batch: int):
    """``arch`` built on the meta device (shapes, recipe, metadata; no weights), with :class:`SyntheticFamily`."""
    from declip.features.backbones import Backbone, load_backbone
    from declip.features.taps import layer_info, layer_names

    @dataclasses.dataclass
    class SyntheticBackbone(Backbone):
        synthetic: object = None

        @property
        def feature_family(self):
            return self.synthetic

        def to(self, device, dtype=torch.float32):
            return self

    meta = load_backbone(f"{arch}@random-0", "meta")
    info = layer_info(meta, layer_names(meta)[-1])
    fields = {f.name: getattr(meta, f.name) for f in dataclasses.fields(Backbone)}
    fields["weights_checksum"] = "synthetic-features"
    return SyntheticBackbone(**fields, synthetic=SyntheticFamily(meta.feature_family, info.channels, info.grid, batch))


def device_side_copy(storage: str, channels: int, grid: tuple[int, int], batch: int):
    """Stands in for :func:`store.quantize.encode` on a GPU: the stored bytes (and scales) arrive in fresh host
    buffers, so the host pays one copy of them, nothing else."""
    from declip.store.quantize import disk_dtype, is_quantized

    rng = np.random.default_rng(1)
    stored = rng.integers(-127, 128, (batch, channels, *grid)).astype(disk_dtype(storage))
    scales = rng.random((batch, channels), dtype=np.float32) + 0.01 if is_quantized(storage) else None

    def encode(feats: torch.Tensor, name: str):
        b = len(feats)
        return stored[:b].copy(), None if scales is None else scales[:b].copy()

    return encode


def split_manifest(n: int, root: Path, warm: int) -> Path:
    """``n`` JPEGs; the first ``warm`` rows in split ``warm`` (created and encoded first), the rest in ``feed``."""
    from declip.pipeline.data.manifest import read_manifest, write_manifest

    path = make_jpeg_manifest(n, root)
    m = read_manifest(path)
    df = m.df.copy()
    df["split"] = ["warm" if i < warm else "feed" for i in range(len(df))]
    write_manifest(df, path, m.root, m.layout)
    return path


def measure_feed(backbone, manifest: Path, store: Path, layers: str, storage: str, batch: int, workers: int,
                 device: str = "cpu", half: bool = False, synthetic: bool = True) -> dict:
    """One feed measurement: CPU per image of the ``feed`` split's extraction (fixed costs measured apart)."""
    from declip.pipeline.extract.extraction import ExtractConfig, run_extraction

    extraction = importlib.import_module("declip.pipeline.extract.extraction")
    info = backbone.feature_family.layer_info(backbone, backbone.feature_family.layer_names(backbone)[-1])
    patch = (mock.patch.object(extraction, "encode", device_side_copy(storage, info.channels, info.grid, batch))
             if synthetic else nullcontext())

    def run(split: str):
        cfg = ExtractConfig(manifest=str(manifest), store=str(store), backbone=str(backbone.key), layers=layers,
                            batch_size=batch, device=device, half=half, workers=workers, progress=False,
                            storage_dtype=storage, splits=(split,))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        stats = run_extraction(cfg, backbone=backbone)
        return stats, time.process_time() - cpu0, time.perf_counter() - wall0

    with patch:
        run("warm")  # creates every array and encodes the first block
        _, noop_cpu, _ = run("warm")  # nothing left to do: the fixed cost of one call
        with ThreadCpu() as threads:
            stats, cpu, wall = run("feed")
    n = stats.images_encoded
    roles = {k: 1e3 * v / n for k, v in threads.by_role().items()}
    per_image = (cpu - noop_cpu) / n
    n_layers = len(stats.layers)
    disk = sum(f.stat().st_size for f in (store / "features").rglob("*") if f.is_file()) / stats.rows
    return {"layers": n_layers, "storage": storage, "images": n, "cpu_ms_per_image": 1e3 * per_image,
            "roles_ms_per_image": roles, "img_per_s_per_core": 1 / per_image, "wall_img_per_s": n / wall,
            "cores_busy": cpu / wall, "disk_bytes_per_image": disk, "stage_seconds": stats.seconds,
            f"img_per_s_{GOAL_CORES}_cores": GOAL_CORES / per_image}


def render(r: dict) -> str:
    roles = ", ".join(f"{k} {v:.2f}" for k, v in r["roles_ms_per_image"].items())
    cores = r[f"img_per_s_{GOAL_CORES}_cores"]
    return (f"{r['layers']:>2} layers {r['storage']:<8} CPU {r['cpu_ms_per_image']:6.2f} ms/img ({roles}) | "
            f"{r['img_per_s_per_core']:7.1f} img/s/core | {GOAL_CORES} cores {cores:8.0f} img/s | "
            f"disk {r['disk_bytes_per_image'] / 1e6:6.2f} MB/img, {cores * r['disk_bytes_per_image'] / 1e9:5.2f} GB/s "
            f"at that rate | this run {r['wall_img_per_s']:.0f} img/s on {r['cores_busy']:.2f} cores")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=160, help="JPEGs (the first batch warms up, the rest is measured)")
    ap.add_argument("--arch", default="ViT-L-14")
    ap.add_argument("--layers", default="4,24", help="comma list of layer counts (the deepest N layers)")
    ap.add_argument("--dtypes", default="float16,int8")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2, help="reader threads")
    args = ap.parse_args()
    torch.set_num_threads(1)  # no forward runs here; torch threads would only add noise
    root = workdir("p9")
    manifest = split_manifest(args.images, root, args.batch)
    backbone = synthetic_backbone(args.arch, args.batch)
    from declip.features.taps import layer_names

    names = layer_names(backbone)
    print(f"extraction feed, {args.arch} layer shapes, synthetic features (no weights, no forward), "
          f"{args.images - args.batch} JPEGs 256² measured, batch {args.batch}, {args.workers} reader threads, "
          f"{os.cpu_count()} cores here, load average {os.getloadavg()[0]:.2f}")
    results = []
    for count in (int(c) for c in args.layers.split(",")):
        for storage in args.dtypes.split(","):
            store = root / f"s-{count}-{storage}.zarr"
            layers = ",".join(names[-count:])
            results.append(measure_feed(backbone, manifest, store, layers, storage, args.batch, args.workers))
            print("  " + render(results[-1]), flush=True)
            shutil.rmtree(store)
    goal = next((r for r in results if r["layers"] == 4 and r["storage"] == "int8"), None)
    if goal:
        got = goal[f"img_per_s_{GOAL_CORES}_cores"]
        print(f"P9 {GOAL_CORES} cores feed, 4 int8 layers: {got:.0f} img/s (goal >= {GOAL_IMG_S:.0f}): "
              f"{'met' if got >= GOAL_IMG_S else 'NOT met'}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
