"""`declip data scan` (dataset folder → manifest + problem table) and `declip data demo` (build the demo dataset)."""
from __future__ import annotations

import argparse
from pathlib import Path

POLARITIES = ("fake_is_white", "fake_is_black")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``data scan`` and ``data demo``."""
    data = sub.add_parser("data", help="scan datasets into manifests; build the demo dataset",
                          description="Dataset manifests: one row per image with label, mask, split and sha256.")
    inner = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    _register_scan(inner)
    _register_demo(inner)


def _register_scan(inner: argparse._SubParsersAction) -> None:
    p = inner.add_parser(
        "scan", help="scan a dataset folder into a parquet manifest and a problem table",
        description="Pair images with masks by a layout's rules, read every file once (size, sha256, full decode, "
        "mask checks), write the manifest (problem files are left out), print counts per subset x split and every "
        "problem.")
    p.add_argument("root", metavar="ROOT", help="dataset folder; manifest paths are relative to it")
    from declip.pipeline.data.layouts import LAYOUTS, auto_order, layout_choices

    p.add_argument("--layout", choices=layout_choices(), default="auto",
                   help="; ".join(f"{name}: {LAYOUTS.get(name).SUMMARY}" for name in auto_order())
                   + "; auto: the first that matches")
    p.add_argument("--out", required=True, metavar="PARQUET", help="manifest to write")
    p.add_argument("--dataset", metavar="NAME", help="dataset name that extract/train/evaluate/grid will use "
                   "(default: dolos-<tree>, autosplice, or ROOT's folder name; printed at the end)")
    p.add_argument("--polarity", choices=POLARITIES,
                   help="mask colour meaning fake (default: the layout's; pairs and list: fake_is_white)")
    p.add_argument("--list-file", metavar="FILE", help="list layout: the image,mask file (default ROOT/list.txt); "
                   "quote a file name that holds a comma (\"a,b.png\",mask.png)")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="list layout: accept paths outside ROOT, also through symlinks")
    p.add_argument("--split-ratios", metavar="TRAIN,VALID,TEST",
                   help="for data without split folders: assign train/valid/test in these shares (e.g. 0.6,0.2,0.2), "
                   "keeping each group (same group id, near-duplicate images by perceptual hash, --group-regex) in "
                   "one split; recorded in the manifest")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="with --split-ratios: the seed of the assignment")
    p.add_argument("--split", choices=("train", "valid", "test"),
                   help="put every row in this split, e.g. --split test for a test-only list (CocoGlide style)")
    p.add_argument("--group-regex", metavar="REGEX",
                   help="with --split-ratios: images whose file stems give the same match (its first group, if it "
                   "has one) stay in one split, e.g. '^(.*)_crop\\d+$' for crops of one photo")
    p.add_argument("--mask-checks", choices=("strict", "declip"), default="strict",
                   help="strict: leave out fakes whose mask has another size than the image, is not binary, or is "
                   "empty; declip: keep them as DeCLIP does (binarised at 0.5, resized to the image; an empty mask "
                   "scores IoU 100, F1 1, AP 0), so a reproduction counts the same images. Recorded in the manifest")
    p.add_argument("--unmasked-real", action="store_true",
                   help="pairs layout: images without a mask are authentic (default: a missing-mask problem)")
    p.add_argument("--problems", metavar="CSV", help="problem table CSV (default: <out stem>.problems.csv next to --out)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any problem was found")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=scan_command)


def _register_demo(inner: argparse._SubParsersAction) -> None:
    p = inner.add_parser(
        "demo", help="build the demo dataset (scikit-image/scikit-learn photos, classical inpainting)",
        description="Write a small Dolos-layout dataset under OUT/demo: 256x256 crops of the photos shipped in "
        "scikit-image and scikit-learn, with random masks filled by OpenCV Telea/NS, biharmonic and splicing. "
        "Classical inpainting, not deep generators. Scan it with `declip data scan --layout dolos OUT`.")
    p.add_argument("out", metavar="OUT", help="output folder")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed; same seed, same bytes")
    p.add_argument("--size", type=int, default=60, metavar="N", help="fake images per generator, split 60/20/20")
    p.set_defaults(func=demo_command)


def _problems_path(out: str, given: str | None) -> Path:
    if given:
        return Path(given)
    out_path = Path(out)
    return out_path.with_name(f"{out_path.stem}.problems.csv")


def _print_problems(problems, in_manifest: set[str]) -> None:
    """Every problem; the count says how many files were left out and how many were kept and only reported."""
    if problems.empty:
        print("problems: none")
        return
    kept = int(problems["path"].isin(in_manifest).sum())
    out = len(problems) - kept
    print(f"problems: {out} file(s) left out of the manifest" + (f", {kept} kept and reported" if kept else ""))
    for row in problems.itertuples(index=False):
        print(f"  {row.path}: {row.reason}: {row.detail}")


def scan_command(args: argparse.Namespace) -> int:
    """Scan, write manifest and problem CSV, print counts and problems; 1 under --strict with problems."""
    from declip.pipeline.data.manifest import counts_table, scan_dataset, write_manifest

    from declip.pipeline.data.splits import no_split_warning

    result = scan_dataset(args.root, args.layout, dataset=args.dataset, polarity=args.polarity,
                          list_file=args.list_file, allow_outside_root=args.allow_outside_root,
                          unmasked_real=args.unmasked_real, progress=not args.no_progress,
                          split_ratios=args.split_ratios, seed=args.seed, split=args.split,
                          group_regex=args.group_regex, mask_checks=args.mask_checks)
    out = write_manifest(result.manifest, args.out, args.root, result.layout)
    problems_csv = _problems_path(args.out, args.problems)
    problems_csv.parent.mkdir(parents=True, exist_ok=True)
    result.problems.to_csv(problems_csv, index=False)
    print(f"layout: {result.layout} (tried {', '.join(result.layouts_tried)})")
    print(f"manifest: {out} ({len(result.manifest)} images)")
    if len(result.manifest):
        print(counts_table(result.manifest).to_string())
    print(f"splits: {result.record.split_rule.describe()}")
    _print_problems(result.problems, set(result.manifest["image_path"]) | set(result.manifest["mask_path"]))
    print(result.record.removed_line())
    print(f"problem table: {problems_csv}")
    warning = no_split_warning(result.manifest)
    if warning:
        print(f"WARNING: {warning}")
    rescan = f"--layout {result.layout} {args.root}" if warning else None
    _print_next_steps(result.manifest, out, rescan)
    return 1 if args.strict and len(result.problems) else 0


def _print_next_steps(manifest, out, rescan: str | None = None) -> None:
    """The dataset name and subset names every later command needs, and the next command to run (for a dataset
    without splits, ``rescan`` given: the scan that gives it splits)."""
    if manifest.empty:
        return
    if rescan is not None:
        print(f"next: declip data scan {rescan} --out {out} --split-ratios 0.6,0.2,0.2 --seed 0   "
              "(or --split test for a test-only set)")
        return
    names = sorted(manifest["dataset"].unique())
    fakes = sorted(manifest.loc[manifest["label"] == 1, "subset"].unique())
    uses = "to evaluate: a test-only set" if set(manifest["split"]) == {"test"} else "to train, evaluate and grid"
    print(f"dataset: {', '.join(names)}   (pass --dataset {names[0]} {uses})")
    if fakes:
        print(f"generators: {', '.join(fakes)}   (the names --train-sets and --test-sets take)")
    print(f"next: declip extract --manifest {out} --store feats.zarr --backbone ViT-L-14@openai --layers layer20")


def demo_command(args: argparse.Namespace) -> int:
    """Build the demo dataset and print its counts."""
    from declip.pipeline.grid.demo_data import build_demo_dataset, demo_counts

    root = build_demo_dataset(args.out, seed=args.seed, size=args.size)
    print(f"demo dataset: {root} (dataset dolos-demo; classical inpainting, not deep generators)")
    print(demo_counts(args.size).to_string())
    print(f"next: declip data scan --layout dolos {root} --out {Path(root) / 'manifest.parquet'}")
    return 0
