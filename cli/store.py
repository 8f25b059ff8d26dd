"""``declip store ls|info|export|import|rm|verify``: look inside a feature store and move slices in and out."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("store", help="inspect the feature store, export/import HDF5 slices",
                       description="Inspect what a feature store caches and move (backbone, layer, dataset) "
                       "slices in and out as HDF5.")
    ssub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    ls = ssub.add_parser("ls", help="list datasets (subsets x splits) and cached feature arrays",
                         description="Each cached dataset with its subsets (generators, real) and image counts per "
                         "split: the names --dataset, --train-sets and --test-sets take. Then every cached "
                         "BACKBONE/LAYER/DATASET array with shape, rows done and size.")
    _store_flag(ls)
    ls.set_defaults(func=run_ls)
    info = ssub.add_parser("info", help="a dataset's subsets and splits, or one feature array's details",
                           description="With a dataset name: its subsets x splits and where it was scanned from. "
                           "With BACKBONE/LAYER/DATASET: shape, dtype, rows done, bytes, unreadable images, metadata.")
    info.add_argument("key", metavar="KEY", help="DATASET, or BACKBONE/LAYER/DATASET as `declip store ls` prints it")
    _store_flag(info)
    info.set_defaults(func=run_info)
    ex = ssub.add_parser("export", help="write one feature array to a file")
    ex.add_argument("key", metavar="KEY", help="BACKBONE/LAYER/DATASET")
    _store_flag(ex)
    ex.add_argument("--format", choices=["hdf5"], default="hdf5", help="file format")
    ex.add_argument("--out", required=True, metavar="FILE", help="file to write")
    ex.set_defaults(func=run_export)
    im = ssub.add_parser("import", help="read an exported file back into a store (dataset must be registered)")
    im.add_argument("file", metavar="FILE", help="a file written by `declip store export`")
    _store_flag(im)
    im.add_argument("--format", choices=["hdf5"], default="hdf5", help="file format")
    im.set_defaults(func=run_import)
    rm = ssub.add_parser("rm", help="delete one cached feature array (BACKBONE/LAYER/DATASET)")
    rm.add_argument("key", metavar="KEY", help="BACKBONE/LAYER/DATASET")
    _store_flag(rm)
    rm.set_defaults(func=run_rm)
    ve = ssub.add_parser("verify", help="check every done block against its checksums; mark damaged ones for redo",
                         description="Reads the whole store. Damaged blocks (deleted, short or changed chunks) are "
                         "named and marked not done, so `declip extract` with the same arguments redoes them.")
    _store_flag(ve)
    ve.add_argument("--check-only", action="store_true", help="name damaged blocks without marking them for redo")
    ve.set_defaults(func=run_verify)


def _store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", required=True, metavar="PATH|URL", help="feature store path or fsspec URL")


def _open(url: str, mode: str = "r"):
    from declip.store.feature_store import FeatureStore

    return FeatureStore(url, mode=mode)


def run_ls(args: argparse.Namespace) -> int:
    from declip.store.listing import dataset_subsets, list_entries

    store = _open(args.store)
    table = list_entries(store)
    print(f"store {store.url}: datasets {', '.join(store.datasets()) or 'none'}")
    for dataset in store.datasets():
        print(f"\ndataset {dataset} (use --dataset {dataset}; subsets are --train-sets/--test-sets names):")
        print(dataset_subsets(store, dataset).to_string())
    print()
    if table.empty:
        print("no cached features yet")
        return 0
    table["bytes"] = table["bytes"].map(lambda b: f"{b / 2**20:.1f} MiB")
    print(table.to_string(index=False))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from declip.store.listing import dataset_subsets, entry_info

    store = _open(args.store)
    if "/" not in args.key:
        attrs = store.dataset_attrs(args.key) if args.key in store.datasets() else {}
        table = dataset_subsets(store, args.key)
        print(f"dataset {args.key}: {int(table['total'].sum())} images"
              + (f" scanned from {attrs['root']} ({attrs.get('layout', '?')} layout)" if attrs.get("root") else ""))
        print(table.to_string())
        return 0
    print(json.dumps(entry_info(store, args.key), indent=2, default=str))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from declip.store.hdf5 import export_hdf5

    out = export_hdf5(_open(args.store), *_split(args.key), args.out)
    print(f"wrote {out}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from declip.store.hdf5 import import_hdf5

    key = import_hdf5(_open(args.store, "a"), args.file)
    print(f"imported {key} into {args.store}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    _open(args.store, "a").delete_layer(*_split(args.key))
    print(f"removed {args.key}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from declip.store.verify import verify_store

    report = verify_store(_open(args.store, "r" if args.check_only else "a"), redo=not args.check_only)
    damaged = [d for d in report if d.damaged]
    for d in report:
        if d.unchecked:
            print(f"{d.path}: {d.unchecked}")
        for problem in d.problems:
            print(f"{d.path}: {problem}")
        for block in d.blocks:
            print(f"{d.path}: block {block} damaged ({d.reasons[block]})")
    if not damaged:
        print(f"store {args.store}: {len(report)} array groups checked, no damage found")
        return 0
    total, problems = sum(len(d.blocks) for d in damaged), sum(len(d.problems) for d in damaged)
    found = " and ".join(x for x in (f"{total} damaged blocks" if total else "",
                                     f"{problems} damaged arrays" if problems else "") if x)
    then = ("re-run `declip extract` with the same arguments to redo them" if not args.check_only
            else "run without --check-only to mark them for redo")
    print(f"{found} in {len(damaged)} array groups; {then}")
    return 1


def _split(key: str) -> list[str]:
    from declip.core.keys import parse_store_key

    layer, dataset = parse_store_key(key)
    return [str(layer.backbone), layer.layer, dataset]
