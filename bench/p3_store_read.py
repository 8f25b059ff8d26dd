"""P3: reading a cached layer as the trainer does ÷ a raw numpy memmap read of the same bytes (target ≥ 0.70).

Both sides: (a) whole-layer load, (b) shuffled streaming batches of 64 (per-index reads), warm page cache. The store
side runs with its checksum checks on (what every read does: each row's CRC-32 against its per-row sum, computed on
the bytes where they landed, in the reading threads) and, to state their cost, off (``verify=False``), side by side.
Each side is timed ``--passes`` times after one warm-up pass; the best pass counts.
Usage: python bench/p3_store_read.py [--rows 2000] [--channels 1024] [--grid 16] [--passes 3]
"""
from __future__ import annotations

import argparse
import shutil

import numpy as np
from common import report, timed, workdir


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--channels", type=int, default=1024)
    ap.add_argument("--grid", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()

    import pandas as pd

    from declip.store.feature_store import FeatureStore
    from declip.store.readers import FeatureSource

    root = workdir("p3")
    shape = (args.rows, args.channels, args.grid, args.grid)
    rng = np.random.default_rng(0)
    data = rng.standard_normal(shape, dtype=np.float32).astype(np.float16)
    store = FeatureStore(str(root / "s.zarr"))
    samples = pd.DataFrame({"image_path": [f"{i}.png" for i in range(args.rows)], "mask_path": "", "sha256": "x",
                            "width": 1, "height": 1, "label": 0})
    store.create_dataset("d", samples, str(root), "bench", block_rows=64)
    meta = {"backbone": "b@random-0", "layer": "layer0", "channels": args.channels, "grid": [args.grid] * 2,
            "has_cls": False, "n_rows": args.rows, "block_rows": 64, "family": "vit", "weights_checksum": "x",
            "dataset_checksum": "x", "recipe": {}, "random_weights": True}
    arrays = store.open_layer("b@random-0", "layer0", "d", meta)
    for b in arrays.pending_blocks():
        lo, hi = arrays.block_range(int(b))
        store.write_block(arrays, int(b), data[lo:hi], None, np.ones(hi - lo, bool), [])
    mm_path = root / "raw.npy"
    mm = np.lib.format.open_memmap(mm_path, mode="w+", dtype=np.float16, shape=shape)
    mm[:] = data
    mm.flush()
    del mm
    nbytes = data.nbytes / 2**20
    order = rng.permutation(args.rows)
    batches = [order[i:i + args.batch] for i in range(0, args.rows, args.batch)]
    t: dict[str, float] = {}
    best: dict[str, float] = {}
    for p in range(args.passes + 1):  # pass 0 warms the page cache and is not counted
        for verify, tag in ((True, ""), (False, "_off"))[:: 1 if p % 2 else -1]:  # alternate which goes first
            src = FeatureSource(FeatureStore(str(root / "s.zarr"), mode="r"), "b@random-0/layer0", "d", verify=verify)
            with timed(t, "store_load" + tag):
                src.load_into_memory()
            del src
            src = FeatureSource(FeatureStore(str(root / "s.zarr"), mode="r"), "b@random-0/layer0", "d", verify=verify)
            with timed(t, "store_stream" + tag):
                for rows, feats, _ in src.iter_batches(order, args.batch, shuffle=False, seed=0):
                    pass
        raw = np.load(mm_path, mmap_mode="r")
        with timed(t, "mm_load"):
            full = np.array(raw)
        buf = np.empty((args.batch, *shape[1:]), np.float16)
        with timed(t, "mm_stream"):
            for b in batches:
                np.take(raw, np.sort(b), axis=0, out=buf[: len(b)])
        del full
        if p:
            best = {k: min(v, best.get(k, v)) for k, v in t.items()}
    shutil.rmtree(root, ignore_errors=True)
    print(f"{args.rows} rows × {shape[1:]} fp16 = {nbytes:.0f} MiB, batches of {args.batch}, best of {args.passes}")
    report("P3a whole-layer load (MiB/s), checksums verified", ("raw memmap", nbytes / best["mm_load"]),
           ("store", nbytes / best["store_load"]), best["mm_load"] / best["store_load"], "≥ 0.70")
    report("P3b shuffled batches of 64 (MiB/s), checksums verified", ("raw memmap np.take", nbytes / best["mm_stream"]),
           ("store per-index + prefetch", nbytes / best["store_stream"]), best["mm_stream"] / best["store_stream"],
           "≥ 0.70")
    print("cost of verification (same run; store seconds, verified vs not):")
    for name, key in (("P3a whole-layer load", "store_load"), ("P3b shuffled batches", "store_stream")):
        on, off = best[key], best[key + "_off"]
        print(f"  {name:<24s} on {on:7.3f} s  off {off:7.3f} s  (+{100 * (on / off - 1):.1f} %);  ratio vs memmap "
              f"on {best['mm' + key[5:]] / on:.3f}  off {best['mm' + key[5:]] / off:.3f}")


if __name__ == "__main__":
    main()
