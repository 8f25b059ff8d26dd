"""Mutants of the data floor's issue 19/21 work (areas ``splits``, ``orientation``, ``mask-rules``, ``list-layout``):
realistic slips in split assignment, EXIF orientation of masks, DeCLIP's keep rules and the list layout.

In their own file, like ``interval_mutants.py``: ``mutants.py`` appends them to ``MUTANTS`` as ``Mutant(*fields)``
(id, area, what, file, old, new, tests), so this file imports nothing from it.
"""
from __future__ import annotations


def M(*fields: object) -> tuple:  # noqa: N802 - reads like mutants.py's table
    return fields


SPLITS = ("tests/pipeline/data/test_splits.py",)
DOWNSTREAM = ("tests/pipeline/data/test_splits_downstream.py",)
STORE_SPLITS = ("tests/store/test_datasets.py",)
ORIENTATION = ("tests/pipeline/data/test_orientation.py",)
RECORD = ("tests/pipeline/data/test_scan_record.py",)
LISTS = ("tests/pipeline/data/layouts/test_listfile.py",)

DATA_MUTANTS: list[tuple] = [
    M("DS1", "splits", "rows of one group id split apart", "pipeline/data/splits.py",
      'keys = [("id", row["dataset"], row["group_id"])]', 'keys = [("id", row["dataset"], row["image_path"])]',
      SPLITS),
    M("DS2", "splits", "near-duplicates (perceptual hash) not grouped", "pipeline/data/splits.py",
      'for i, j in near_pairs([hashes.get(r["image_path"]) for r in rows]):',
      'for i, j in near_pairs([None for r in rows]):', SPLITS),
    M("DS3", "splits", "--group-regex groups by the whole match, not its group", "pipeline/data/splits.py",
      "match.group(1) if pattern.groups else match.group(0)", "match.group(0)", SPLITS),
    M("DS4", "splits", "groups go to the split with the smallest deficit", "pipeline/data/splits.py",
      "split = SPLITS[open_splits[int(np.argmax(deficit))]]", "split = SPLITS[open_splits[int(np.argmin(deficit))]]",
      SPLITS),
    M("DS5", "splits", "the seed does not change the assignment", "pipeline/data/splits.py",
      "np.random.default_rng(seed).shuffle(order)", "np.random.default_rng(0).shuffle(order)", SPLITS),
    M("DS6", "splits", "a split-less dataset is not refused", "pipeline/data/splits.py",
      "    if present <= {\"\"}:\n", "    if present <= {\"no split\"}:\n", SPLITS + DOWNSTREAM),
    M("DS7", "splits", "assigned splits re-sort the rows (a cached store no longer matches)", "pipeline/data/manifest.py",
      '_frame(rows, by_split=rule.rule != "ratios")', "_frame(rows)", DOWNSTREAM),
    M("DS8", "splits", "the store keeps the old splits of the same files", "store/datasets.py",
      "            if not changed:\n                return", "            if True:\n                return",
      STORE_SPLITS + DOWNSTREAM),
    M("DS9", "splits", "a change the cached masks depend on is taken silently", "store/datasets.py",
      "fixed = [c for c in changed if c in MASK_COLUMNS]", "fixed = []", STORE_SPLITS),
    M("DO1", "orientation", "+exif leaves the mask as stored", "pipeline/data/orientation.py",
      "return orient_mask(mask, orientation) if exif else mask", "return mask", ORIENTATION),
    M("DO2", "orientation", "+exif registers the stored sizes", "pipeline/data/orientation.py",
      "    if not exif or not orientations:\n        return df", "    if True:\n        return df", ORIENTATION),
    M("DO3", "orientation", "the scanner measures images upright", "pipeline/data/problems.py",
      "image = decode_rgb(data, path, exif=False)", "image = decode_rgb(data, path, exif=True)", ORIENTATION),
    M("DO4", "orientation", "orientation 6 turns the mask the wrong way", "pipeline/data/orientation.py",
      "6: Image.Transpose.ROTATE_270", "6: Image.Transpose.ROTATE_90", ORIENTATION),
    M("DO5", "orientation", "an old manifest's upright sizes are registered as stored", "pipeline/data/orientation.py",
      "        df = registered_rows(df, record.exif_orientations, True)", "        df = df", ORIENTATION),
    M("DK1", "mask-rules", "--mask-checks declip keeps nothing", "pipeline/data/manifest.py",
      'if mask_checks == "declip" and problem.reason in DECLIP_KEEPS:', "if False:", RECORD),
    M("DK2", "mask-rules", "rows kept by DeCLIP's rules counted as removed", "pipeline/data/manifest.py",
      "(kept if row is not None else removed)[problem.reason] += 1", "removed[problem.reason] += 1", RECORD),
    M("DK3", "mask-rules", "a kept mask of another size is not fitted to its image", "pipeline/data/orientation.py",
      'fit=record.mask_checks == "declip"', "fit=False", RECORD),
    M("DK4", "mask-rules", "the scan record never reaches the store", "pipeline/extract/registration.py",
      "store.set_dataset_attrs(key, scan=record.to_json())", "store.set_dataset_attrs(key)", RECORD),
    M("DL1", "list-layout", "a symlink out of ROOT is followed", "pipeline/data/layouts/listfile.py",
      "    if not _inside(root, real):\n", "    if False:\n", LISTS),
    M("DL2", "list-layout", "list lines split at every comma (no CSV quoting)", "pipeline/data/layouts/listfile.py",
      "parts = [p.strip() for p in next(csv.reader([line], skipinitialspace=True, strict=True))]",
      'parts = [p.strip() for p in line.split(",")]', LISTS),
    M("DL3", "list-layout", "a name split at a comma gets no word about quoting", "pipeline/data/layouts/listfile.py",
      "if len(parts) <= 2 and not any((root / j).is_file() for j in joined):", "if True:", LISTS),
]
