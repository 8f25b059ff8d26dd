"""``declip store ls|info|export|import|rm``: look inside a feature store and move slices in and out."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="inspect the feature store, export/import HDF5 slices",
                       description="Inspect what a feature store caches and move (backbone, layer, dataset) "
                       "slices in and out as HDF5.")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    ls = ssub.add_parser("ls", help="list cached feature arrays")
    ls.add_argument("--store", required=True)
    ls.set_defaults(func=run_ls)
    info = ssub.add_parser("info", help="shape, dtype, rows done, bytes and metadata of one key")
    info.add_argument("key", help="BACKBONE/LAYER/DATASET, as `declip store ls` prints it")
    info.add_argument("--store", required=True)
    info.set_defaults(func=run_info)
    ex = ssub.add_parser("export", help="write one key to a file")
    ex.add_argument("key")
    ex.add_argument("--store", required=True)
    ex.add_argument("--format", choices=["hdf5"], default="hdf5")
    ex.add_argument("--out", required=True)
    ex.set_defaults(func=run_export)
    im = ssub.add_parser("import", help="read an exported file back into a store (dataset must be registered)")
    im.add_argument("file")
    im.add_argument("--store", required=True)
    im.add_argument("--format", choices=["hdf5"], default="hdf5")
    im.set_defaults(func=run_import)
    rm = ssub.add_parser("rm", help="delete one cached key (BACKBONE/LAYER/DATASET)")
    rm.add_argument("key")
    rm.add_argument("--store", required=True)
    rm.set_defaults(func=run_rm)


def _open(url: str, mode: str = "r"):
    from store.feature_store import FeatureStore

    return FeatureStore(url, mode=mode)


def run_ls(args: argparse.Namespace) -> int:
    from store.listing import list_entries

    store = _open(args.store)
    table = list_entries(store)
    print(f"store {store.url}: datasets {', '.join(store.datasets()) or 'none'}")
    if table.empty:
        print("no cached features yet")
        return 0
    table["bytes"] = table["bytes"].map(lambda b: f"{b / 2**20:.1f} MiB")
    print(table.to_string(index=False))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from store.listing import entry_info

    print(json.dumps(entry_info(_open(args.store), args.key), indent=2, default=str))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from store.hdf5 import export_hdf5

    out = export_hdf5(_open(args.store), *_split(args.key), args.out)
    print(f"wrote {out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from store.hdf5 import import_hdf5

    key = import_hdf5(_open(args.store, "a"), args.file)
    print(f"imported {key} into {args.store}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    _open(args.store, "a").delete_layer(*_split(args.key))
    print(f"removed {args.key}")
    return 0


def _split(key: str) -> list[str]:
    from core.keys import parse_store_key

    layer, dataset = parse_store_key(key)
    return [str(layer.backbone), layer.layer, dataset]
