"""Dataset manifests (``design.md`` §3.1): scan a dataset folder into one parquet row per usable image.

A scan pairs files with a layout adapter (:mod:`pipeline.data.layouts`), reads every image and mask once (sha256, size,
full decode, mask checks; :mod:`pipeline.data.problems`), flags identical bytes in two splits, and keeps every problem
out of the manifest. The parquet records the absolute dataset root and the layout, so later stages resolve paths
without being told the root again.
"""
from __future__ import annotations

import errno
import json
import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from declip.core.errors import DeclipError
from declip.core.io import atomic_path
from declip.pipeline.data.layouts import LAYOUTS, Candidate, Problem, ScanOptions, choose_layout
from declip.pipeline.data.orientation import mismatch_detail
from declip.pipeline.data.perceptual import near_duplicates_across_splits
from declip.pipeline.data.problems import PROBLEM_COLUMNS, duplicates_across_splits, measure
from declip.pipeline.data.scan_record import DECLIP_KEEPS, MASK_CHECKS, META_SCAN, ScanRecord
from declip.pipeline.data.splits import SplitRule, assign_splits, check_resplit, grouping_text, parse_ratios

COLUMNS = ["dataset", "subset", "split", "group_id", "image_path", "mask_path", "label", "kind", "mask_polarity",
           "variant", "width", "height", "sha256"]
INT_COLUMNS = ("label", "width", "height")
SPLIT_ORDER = ("train", "valid", "val", "test")
SORT_KEY = ["dataset", "subset", "split", "variant", "image_path"]
META_ROOT, META_LAYOUT = b"declip.root", b"declip.layout"
META_OUTSIDE = b"declip.outside_root"  # set when the scan was allowed to list files outside ROOT
KEPT_PREFIX = "kept (--mask-checks declip): "
#: Problems that concern a folder, not a row (they remove no row by themselves).
_FOLDER_PROBLEMS = frozenset({"empty-split-folder", "incomplete-tree"})


@dataclass
class ScanResult:
    """A scan's output: the manifest, the problem table (path, reason, detail) and the layouts tried."""

    manifest: pd.DataFrame
    problems: pd.DataFrame
    layouts_tried: list[str] = field(default_factory=list)
    layout: str = ""
    record: ScanRecord = field(default_factory=ScanRecord)


@dataclass
class Manifest:
    """A manifest read back from parquet, with the dataset root its relative paths hang from."""

    df: pd.DataFrame
    root: Path
    layout: str
    record: ScanRecord | None = None  # None: written before scans recorded their decisions

    def abspath(self, rel: str) -> Path:
        """Absolute path of a manifest path (``image_path`` or ``mask_path``); an absolute one stays as it is."""
        return Path(os.path.normpath(self.root / rel))  # root / "/abs" is "/abs", never "root//abs"


def _progress_enabled(progress: bool) -> bool:
    return progress and sys.stderr.isatty()


def _measure_files(root: Path, candidates: list[Candidate], progress: bool) -> dict[tuple[str, bool], object]:
    """FileInfo or Problem per (relative path, is_mask), each file read once, in a small thread pool."""
    from tqdm import tqdm

    jobs = sorted({(c.image_path, False) for c in candidates} | {(c.mask_path, True) for c in candidates
                                                                 if c.mask_path})
    workers = min(8, os.cpu_count() or 2)
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda job: measure(root / job[0], job[1]), jobs)
        done = list(tqdm(results, total=len(jobs), desc="scan", unit="file", disable=not _progress_enabled(progress)))
    return dict(zip(jobs, done))


def _relative(problem: Problem, rel_path: str) -> Problem:
    return Problem(rel_path, problem.reason, problem.detail)


def _mask_problem(c: Candidate, image, mask) -> Problem | None:
    """Why ``c``'s mask does not fit its image under the strict rules (size, binary, empty), or ``None``."""
    if mask.mask_issue:
        return Problem(c.mask_path, "mask-not-binary", mask.mask_issue)
    if (mask.width, mask.height) != (image.width, image.height):
        return Problem(c.image_path, "mask-size-mismatch", mismatch_detail(
            (image.width, image.height), (mask.width, mask.height), c.mask_path, image.orientation))
    white = mask.white_fraction
    fake = None if white is None else (white if c.mask_polarity == "fake_is_white" else 1.0 - white)
    if c.kind == "partial" and fake == 0.0:
        return Problem(c.mask_path, "empty-mask", f"marks no pixel as fake ({c.mask_polarity}) for a partially "
                       "manipulated image; fix the mask, or the polarity with --polarity")
    return None


def _row_or_problem(c: Candidate, files: dict, mask_checks: str = "strict") -> tuple[dict | None, Problem | None]:
    """(manifest row, problem) for ``c``: a row, the problem that keeps it out, or under ``mask_checks="declip"`` a
    row kept despite a mask problem DeCLIP ignores (the problem then says so)."""
    image = files[(c.image_path, False)]
    if isinstance(image, Problem):
        return None, _relative(image, c.image_path)
    row = dict(asdict(c), width=image.width, height=image.height, sha256=image.sha256)
    if not c.mask_path:
        return row, None
    mask = files[(c.mask_path, True)]
    if isinstance(mask, Problem):
        if mask.reason == "missing-file":
            return None, Problem(c.image_path, "missing-mask", f"mask {c.mask_path} does not exist")
        return None, _relative(mask, c.mask_path)
    problem = _mask_problem(c, image, mask)
    if problem is None:
        return row, None
    if mask_checks == "declip" and problem.reason in DECLIP_KEEPS:
        return row, Problem(problem.path, problem.reason, f"{KEPT_PREFIX}{problem.detail}")
    return None, problem


def _frame(rows: list[dict], by_split: bool = True) -> pd.DataFrame:
    """Rows in manifest order. Splits assigned by the scan (``by_split=False``) do not move rows: the manifest keeps
    the order of the same data scanned without them, so a store that cached it takes the new splits as they are."""
    df = pd.DataFrame(rows, columns=COLUMNS)
    key = SORT_KEY if by_split else [k for k in SORT_KEY if k != "split"]
    df = df.sort_values(key, kind="mergesort").reset_index(drop=True)
    return normalize(df)


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Columns in manifest order with fixed dtypes (int64 for label/width/height, str elsewhere)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DeclipError(f"manifest lacks columns {missing}; re-run `declip data scan`")
    out = df[COLUMNS].copy()
    for col in COLUMNS:
        out[col] = out[col].astype("int64") if col in INT_COLUMNS else out[col].fillna("").astype(str)
    return out


def _problem_frame(problems: list[Problem]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(p) for p in problems], columns=PROBLEM_COLUMNS).drop_duplicates()
    return df.sort_values(["path", "reason", "detail"], kind="mergesort").reset_index(drop=True)


def dataset_root(root: str | os.PathLike) -> Path:
    """ROOT resolved to a folder, or one clear error: missing, a file, or a symlink loop."""
    try:
        base = Path(root).resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop this way
        raise DeclipError(f"{root}: a symlink loop; point ROOT at the real dataset folder") from None
    except FileNotFoundError:
        raise DeclipError(f"{root}: no such dataset folder; pass the folder that holds the images") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DeclipError(f"{root}: a symlink loop; point ROOT at the real dataset folder") from None
        raise DeclipError(f"{root}: cannot be read ({exc.strerror}); pass the folder that holds the images") from None
    if not base.is_dir():
        raise DeclipError(f"{root}: a file, not a folder; pass the folder that holds the images")
    return base


def scan_dataset(root: str | os.PathLike, layout: str = "auto", *, dataset: str | None = None,
                 polarity: str | None = None, list_file: str | None = None, allow_outside_root: bool = False,
                 unmasked_real: bool = False, progress: bool = True, split_ratios: str | None = None, seed: int = 0,
                 split: str | None = None, group_regex: str | None = None, mask_checks: str = "strict") -> ScanResult:
    """Scan ``root`` with ``layout`` (or ``"auto"``) into a manifest plus a problem table; never crashes on a file.

    Args:
        root: dataset folder; manifest paths are relative to it.
        layout: ``dolos``, ``autosplice``, ``pairs``, ``list`` or ``auto``.
        dataset: dataset name instead of the layout's default.
        polarity: ``fake_is_white`` / ``fake_is_black`` instead of the layout's default.
        list_file: the list layout's file (default ``ROOT/list.txt``).
        allow_outside_root: let a list file point outside ROOT (also through symlinks).
        unmasked_real: in the pairs layout, images without a mask are authentic instead of a problem.
        progress: show a progress bar (only on a terminal).
        split_ratios: ``"0.6,0.2,0.2"``: assign train/valid/test by whole groups (:mod:`.splits`), seeded by ``seed``.
        split: put every row in this split (a test-only set).
        group_regex: with ``split_ratios``, rows whose file stems give the same match stay in one split.
        mask_checks: ``strict`` leaves out fakes with a mismatched, non-binary or empty mask; ``declip`` keeps them.
    """
    from declip.pipeline.data.masks import check_polarity

    base = dataset_root(root)
    if polarity is not None:
        try:
            check_polarity(polarity)
        except ValueError as exc:
            raise DeclipError(str(exc)) from None
    if mask_checks not in MASK_CHECKS:
        raise DeclipError(f"--mask-checks {mask_checks!r}: choose one of {', '.join(MASK_CHECKS)}")
    ratios = None if split_ratios is None else parse_ratios(split_ratios)
    if ratios is not None and split:
        raise DeclipError("--split-ratios and --split exclude each other: ratios split the rows, --split puts every "
                          "row in one split")
    if group_regex and ratios is None:
        raise DeclipError("--group-regex groups rows for --split-ratios; pass both")
    opts = ScanOptions(dataset, polarity, list_file, allow_outside_root, unmasked_real)
    name, tried = choose_layout(base, layout, opts)
    collected = LAYOUTS.get(name).collect(base, opts)
    files = _measure_files(base, collected.candidates, progress)
    rows, problems = [], list(collected.problems)
    removed = Counter(p.reason for p in collected.problems if p.reason not in _FOLDER_PROBLEMS)
    kept: Counter = Counter()
    for c in collected.candidates:
        row, problem = _row_or_problem(c, files, mask_checks)
        if row is not None:
            rows.append(row)
        if problem is not None:
            problems.append(problem)
            (kept if row is not None else removed)[problem.reason] += 1
    hashes = {r["image_path"]: files[(r["image_path"], False)].dhash for r in rows}
    rule = _apply_split(rows, hashes, ratios, seed, split, group_regex)
    dups = duplicates_across_splits(rows)
    leaked = {p.path for p in dups}
    removed["duplicate-across-splits"] += sum(r["image_path"] in leaked for r in rows)
    rows = [r for r in rows if r["image_path"] not in leaked]
    near = near_duplicates_across_splits(rows, hashes)
    turned = {r["image_path"]: files[(r["image_path"], False)].orientation for r in rows}
    record = ScanRecord(rule, mask_checks, {k: v for k, v in removed.items() if v}, dict(kept),
                        {path: o for path, o in turned.items() if o != 1})
    return ScanResult(_frame(rows, by_split=rule.rule != "ratios"), _problem_frame(problems + dups + near), tried,
                      name, record)


def _apply_split(rows: list[dict], hashes: dict, ratios: tuple | None, seed: int, split: str | None,
                 group_regex: str | None) -> SplitRule:
    """Set every row's split as ``--split-ratios`` / ``--split`` ask (in place) and say how the splits came about."""
    if ratios is not None:
        check_resplit(rows, "--split-ratios")
        for row, value in zip(rows, assign_splits(rows, hashes, ratios, seed, group_regex)):
            row["split"] = value
        return SplitRule("ratios", tuple(ratios), seed, grouping=grouping_text(group_regex))
    if split:
        check_resplit(rows, "--split")
        for row in rows:
            row["split"] = split
        return SplitRule("single", split=split)
    return SplitRule("folders" if any(r["split"] for r in rows) else "none")


def write_manifest(df: pd.DataFrame, path: str | os.PathLike, root: str | os.PathLike, layout: str,
                   record: ScanRecord | None = None) -> Path:
    """Write ``df`` as parquet with ``declip.root`` (absolute), ``declip.layout`` and ``declip.scan`` (the scan's
    :class:`ScanRecord`; without one, one inferred from the rows and the images' EXIF tags) metadata, atomically.
    Sizes in ``df`` are as stored (as :func:`scan_dataset` measures them)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(normalize(df), preserve_index=False)
    if record is None:
        record = _inferred_record(df, Path(root))
    meta = dict(table.schema.metadata or {})
    meta.update({META_ROOT: str(Path(root).resolve()).encode(), META_LAYOUT: layout.encode(),
                 META_SCAN: record.encoded()})
    if outside_root_rows(df):
        meta[META_OUTSIDE] = b"1"
    with atomic_path(out) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
    return out


def _inferred_record(df: pd.DataFrame, root: Path) -> ScanRecord:
    """The record of rows written without their scan's: the split rule from the rows, EXIF tags from the files."""
    from declip.pipeline.data.orientation import exif_orientation

    found = {p: exif_orientation(Path(os.path.normpath(root / p))) for p in df["image_path"].astype(str)}
    rule = SplitRule("folders" if bool((df["split"].astype(str) != "").any()) else "none")
    return ScanRecord(rule, exif_orientations={p: o for p, o in found.items() if o != 1})


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read a manifest written by :func:`write_manifest`; refuses parquet files without the declip metadata."""
    import pyarrow.parquet as pq

    src = Path(path)
    if not src.is_file():
        raise DeclipError(f"{src}: no such manifest; create it with `declip data scan --out {src} ROOT`")
    try:
        table = pq.read_table(src)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DeclipError(f"{src}: not a readable parquet file ({exc}); re-run `declip data scan`") from None
    meta = table.schema.metadata or {}
    if META_ROOT not in meta:
        raise DeclipError(f"{src}: not a declip manifest (no declip.root metadata); re-run `declip data scan`")
    df = normalize(table.to_pandas())
    outside = outside_root_rows(df)
    if outside and META_OUTSIDE not in meta:
        shown = "; ".join(outside[:3])
        raise DeclipError(f"{src}: {len(outside)} row(s) point outside the dataset root ({shown}); the manifest was "
                          "edited after the scan. Re-run `declip data scan` (with --allow-outside-root if intended)")
    record = ScanRecord.from_json(json.loads(meta[META_SCAN])) if META_SCAN in meta else None
    return Manifest(df, Path(meta[META_ROOT].decode()), meta.get(META_LAYOUT, b"").decode(), record)


def _leaves_root(rel: str) -> bool:
    if not rel:
        return False
    if rel.startswith(("/", "\\")) or (len(rel) > 1 and rel[1] == ":"):
        return True
    return ".." in Path(rel.replace("\\", "/")).parts


def outside_root_rows(df: pd.DataFrame) -> list[str]:
    """``row N: PATH`` for every image or mask path that is absolute or climbs out of ROOT with ``..``."""
    found = []
    for col in ("image_path", "mask_path"):
        if col in df:
            for i, value in df[col].items():
                if isinstance(value, str) and _leaves_root(value):
                    found.append(f"row {i}: {value}")
    return found


def counts_table(df: pd.DataFrame) -> pd.DataFrame:
    """Image counts, one row per subset (``dataset:subset`` when several datasets) and one column per split."""
    label = df["subset"] if df["dataset"].nunique() <= 1 else df["dataset"] + ":" + df["subset"]
    split = df["split"].replace("", "-")
    table = pd.crosstab(label.rename("subset"), split.rename("split"))
    known = [s for s in SPLIT_ORDER if s in table.columns]
    table = table[known + sorted(c for c in table.columns if c not in known)]
    table["total"] = table.sum(axis=1)
    return table
