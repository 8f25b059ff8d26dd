"""One-GPU throughput check for the full DeCLIP ablation: ViT-L/14 extraction and conv-20 training, with MFU.

Measures, on random weights (same speed as trained ones):
  * extraction: ViT-L/14 forward through all 24 taps (fp16 on CUDA), quantized/cast for storage and copied to the
    host as extraction does -- img/s and MFU at 162 GFLOP/img (24 blocks, 224 px);
  * conv-20 training from device-resident features: bf16 autocast, channels_last, AdamW -- img/s and MFU at the
    counted FLOPs of a training step (~236 GFLOP/img; 81 GFLOP forward); evaluation forward img/s;
  * the extraction feed (bench/p9_feed.py's measurement): the whole extraction path into a real store -- read, sha256
    check, decode, preprocess, forward, cast/quantize, copy back, CRC-32, chunk files -- for 4 int8 and 24 float16
    layers: wall img/s and host CPU ms per image (without a GPU the forward is p9's synthetic features, said so);
  * peak device memory;
  * the projected hours of DeCLIP's full ablation (24 ViT-L/14 + 4 RN50 layers × 5 decoders × 4 train sets × 4 test
    sets, ~40k Dolos images) from these rates (declip.pipeline.grid.cost_plan), with its disk plan.
``--json FILE`` writes the rates for ``declip grid --dry-run --throughputs FILE``.

On CUDA it runs in well under 5 minutes. Without a GPU (``--small``, the default on CPU) it runs the same code at a
small size -- demo-vit-small and a width-0.25 conv-20 -- so the script itself is exercised; CPU MFU is against
``--peak-tflops`` when given.

Usage: python bench/gpu.py [--device cuda] [--small] [--batch 64] [--iters 20] [--compile] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from common import workdir  # noqa: F401  (puts the repository on sys.path, offline settings)

# Dense fp16/bf16 tensor-core peaks (FLOP/s), from the vendors' data sheets (without sparsity).
PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}


def _peak(device: str, given: float | None) -> float | None:
    if given:
        return given * 1e12
    if torch.device(device).type != "cuda":
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    return next((v for k, v in PEAKS.items() if k in name), None)


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _rate(fn, iters: int, device: str, warmup: int = 2) -> float:
    """Seconds per call of ``fn`` after warm-up."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


def bench_extraction(arch: str, device: str, batch: int, iters: int, storage: str) -> dict:
    from declip.features.backbones import load_backbone
    from declip.features.taps import forward_layers, layer_names
    from declip.pipeline.grid.model_flops import encode_flops
    from declip.store.quantize import encode

    cuda = torch.device(device).type == "cuda"
    backbone = load_backbone(f"{arch}@random-0", device)
    dtype = torch.float16 if cuda else torch.float32
    backbone.to(device, dtype)
    layers = layer_names(backbone)
    host = torch.randn(batch, 3, backbone.image_size, backbone.image_size)
    if cuda:
        host = host.pin_memory()

    def step():
        x = host.to(device, dtype, non_blocking=cuda)
        for feats, _ in forward_layers(backbone, x, layers).values():
            encode(feats, storage)  # cast/quantize on the device, copy to the host, as extraction writes it

    seconds = _rate(step, iters, device)
    flops = encode_flops(arch, layers[-1])
    del backbone
    return {"model": arch, "layers": len(layers), "batch": batch, "img_per_s": batch / seconds,
            "flops_per_img": flops, "flops_per_s": batch * flops / seconds, "storage_dtype": storage,
            "precision": "fp16" if cuda else "fp32"}


def bench_conv20(device: str, batch: int, iters: int, width: float, channels: int, grid: tuple[int, int],
                 compile_model: bool) -> dict:
    from declip.decoders import build_decoder
    from declip.pipeline.train.precision import autocast, decoder_input, prepare_decoder, use_channels_last
    from declip.pipeline.grid.model_flops import decoder_flops

    model = build_decoder("conv-20", in_channels=channels, grid=grid, family="vit", layer="layer20", width=width,
                          seed=0).to(device)
    nhwc = use_channels_last(device, "conv-20", None)
    run = prepare_decoder(model, nhwc, compile_model)
    resident = torch.randn(batch * 4, channels, *grid, device=device).half()  # device-resident fp16 features
    masks = (torch.rand(batch * 4, 256, 256, device=device) * 255).to(torch.uint8)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-3, weight_decay=0.0)
    precision = "bf16"
    counter = {"i": 0}

    def step():
        i = counter["i"] % 4
        counter["i"] += 1
        idx = torch.arange(i * batch, (i + 1) * batch, device=device)
        x = decoder_input(resident.index_select(0, idx), device, nhwc)
        target = masks.index_select(0, idx).float() / 255.0
        with autocast(device, precision):
            logits = run(x, None)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float()[:, 0], target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    train_s = _rate(step, iters, device)
    model.eval()
    x = decoder_input(resident[:batch], device, nhwc)

    @torch.no_grad()
    def forward():
        with autocast(device, precision):
            run(x, None)

    eval_s = _rate(forward, iters, device)
    fwd, train = decoder_flops("conv-20", channels, grid, "vit", width)
    return {"width": width, "batch": batch, "precision": precision, "channels_last": nhwc, "compile": compile_model,
            "train_img_per_s": batch / train_s, "eval_img_per_s": batch / eval_s, "flops_fwd_per_img": fwd,
            "flops_train_per_img": train, "train_flops_per_s": batch * train / train_s,
            "eval_flops_per_s": batch * fwd / eval_s}


def bench_feed(arch: str, device: str, batch: int) -> tuple[list[dict], str]:
    """bench/p9_feed.py's measurement with the real forward on ``device`` (CUDA: fp16, the real weights' shapes
    at random values); on the CPU the forward is replaced by synthetic features of ``arch``'s shapes, as in p9 --
    a CPU forward would say nothing about what feeds a GPU."""
    import os

    from p9_feed import measure_feed, split_manifest, synthetic_backbone

    from declip.features.backbones import load_backbone
    from declip.features.taps import layer_names

    cuda = torch.device(device).type == "cuda"
    root = workdir("gpu-feed")
    manifest = split_manifest(5 * batch if cuda else 3 * batch, root, batch)
    backbone = load_backbone(f"{arch}@random-0", device) if cuda else synthetic_backbone(arch, batch)
    names, results = layer_names(backbone), []
    for count, storage in ((4, "int8"), (24, "float16")):
        results.append(measure_feed(backbone, manifest, root / f"s-{count}-{storage}.zarr",
                                    ",".join(names[-min(count, len(names)):]), storage, batch,
                                    min(8, os.cpu_count() or 1), device=device, half=cuda, synthetic=not cuda))
    how = "real forward on the GPU" if cuda else "NO GPU: synthetic features stand in for the forward (bench/p9_feed)"
    return results, how


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="small models (default without CUDA)")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--storage-dtype", default="int8", help="what extraction writes (cast/quantize cost included)")
    ap.add_argument("--compile", action="store_true", help="torch.compile conv-20")
    ap.add_argument("--peak-tflops", type=float, help="device peak for MFU (default: known GPUs)")
    ap.add_argument("--disk-gb", type=float, default=56.0, help="disk for the full ablation's features")
    ap.add_argument("--json", help="write the rates and figures here")
    args = ap.parse_args()
    device = args.device
    small = args.small or torch.device(device).type != "cuda"
    batch = args.batch or (4 if small else 64)
    iters = args.iters or (2 if small else 20)
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    arch = "demo-vit-small" if small else "ViT-L-14"
    ext = bench_extraction(arch, device, batch, iters, args.storage_dtype)
    conv = bench_conv20(device, batch, iters, 0.25 if small else 1.0, 192 if small else 1024, (16, 16),
                        args.compile)
    cuda = torch.device(device).type == "cuda"
    feed, feed_how = bench_feed(arch if cuda else "ViT-L-14", device, batch if cuda else 8)
    peak = _peak(device, args.peak_tflops)
    memory = (torch.cuda.max_memory_allocated() if torch.device(device).type == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    from declip.pipeline.grid.cost_plan import Rates, declip_full_ablation, estimate, render

    rates = Rates(ext["flops_per_s"], conv["train_flops_per_s"], conv["eval_flops_per_s"],
                  f"bench/gpu.py on {device}{' (small models)' if small else ''}")
    plan = None
    for dtype in ("float16", "int8"):
        try:
            plan = estimate(declip_full_ablation(dtype, int(args.disk_gb * 2**30)), rates)
            break
        except Exception:  # noqa: BLE001 - float16 may not fit the disk; int8 is the fallback
            continue
    name = torch.cuda.get_device_name(torch.device(device)) if torch.device(device).type == "cuda" else "CPU"
    print(f"device: {name}; {'SMALL models (no GPU): figures exercise the script, not the GPU' if small else ''}")
    mfu = (lambda r: f"{100 * r / peak:.1f}%") if peak else (lambda r: "n/a (no --peak-tflops)")
    print(f"extraction  {ext['model']} {ext['layers']} taps, {ext['precision']}, batch {batch}, store "
          f"{ext['storage_dtype']}: {ext['img_per_s']:.1f} img/s, {ext['flops_per_s'] / 1e12:.3g} TFLOP/s, "
          f"MFU {mfu(ext['flops_per_s'])} ({ext['flops_per_img'] / 1e9:.1f} GFLOP/img)")
    print(f"conv-20     width {conv['width']}, bf16 autocast, channels_last {conv['channels_last']}, batch {batch}: "
          f"train {conv['train_img_per_s']:.1f} img/s ({conv['train_flops_per_s'] / 1e12:.3g} TFLOP/s, MFU "
          f"{mfu(conv['train_flops_per_s'])}; {conv['flops_train_per_img'] / 1e9:.1f} GFLOP/img/step), "
          f"eval {conv['eval_img_per_s']:.1f} img/s")
    from p9_feed import render as render_feed

    print(f"extraction feed ({feed_how}):")
    for r in feed:
        print("  " + render_feed(r))
    print(f"peak memory {memory / 2**30:.2f} GiB ({'device' if torch.device(device).type == 'cuda' else 'host RSS'})")
    if plan:
        s = plan["seconds"]
        print(f"projected full DeCLIP ablation: {s['total'] / 3600:.3g} h (encode {s['encode'] / 3600:.3g} h, "
              f"train {s['train'] / 3600:.3g} h, evaluate {s['evaluate'] / 3600:.3g} h; {plan['epochs_assumed']} epochs "
              f"per cell assumed; features {plan['storage_dtype']}, {len(plan['groups'])} groups on {args.disk_gb} GB)")
        print(next(line for line in render(plan).splitlines() if line.strip().startswith("store:")))
    print(f"bench wall time {time.perf_counter() - start:.1f} s")
    if args.json:
        out = {"device": name, "small": small, "extraction": ext, "conv20": conv, "feed": feed, "peak_memory_bytes": memory,
               "peak_flops": peak, "rates": {"encode_flops_per_s": rates.encode, "train_flops_per_s": rates.train,
                                             "eval_flops_per_s": rates.eval},
               "full_ablation_hours": None if plan is None else plan["seconds"]["total"] / 3600}
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
        print(f"written: {args.json}")


if __name__ == "__main__":
    main()
