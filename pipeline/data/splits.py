"""Splits for data that has none: a seeded, grouped train/valid/test assignment, or one split for every row.

A pairs folder without split folders and every list file (CocoGlide, IMDLBenCo style) come without a split, and
training needs ``train`` and ``valid`` rows, evaluation ``test`` rows. ``declip data scan --split-ratios 0.6,0.2,0.2
--seed 0`` assigns them; ``--split test`` puts every row of a test-only set in one split.

Why grouped: a re-saved copy, a resized copy or a crop of one photo in two splits leaks the test set into training.
Rows are grouped by connected components of three relations: the same ``group_id`` (the layout's: a file stem, an
AutoSplice id), a perceptual hash within :data:`~declip.pipeline.data.perceptual.MAX_DISTANCE` bits (near-duplicates),
and, with ``--group-regex``, the same regex match on the image's file stem (crops named ``photo7_crop2``). Every
group goes whole into one split. Groups are placed largest first (the seed orders groups of one size), each into the
split whose share of its subset is furthest below its ratio, so every generator (and the reals) is split in the
given ratios as nearly as whole groups allow. The rule is recorded in the manifest (:class:`SplitRule`).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from declip.core.errors import DeclipError
from declip.pipeline.data.perceptual import MAX_DISTANCE, near_pairs

SPLITS = ("train", "valid", "test")
#: The command that fixes a dataset without splits, named by every refusal and warning.
FIX = ("re-scan with `declip data scan ROOT --out MANIFEST --split-ratios 0.6,0.2,0.2 --seed 0` (a grouped "
       "train/valid/test split) or `--split test` (a test-only set)")


@dataclass(frozen=True)
class SplitRule:
    """How a manifest's splits came about: ``folders`` (the layout's own), ``ratios``, ``single`` or ``none``."""

    rule: str
    ratios: tuple[float, ...] = ()
    seed: int | None = None
    split: str = ""
    grouping: str = ""

    def to_json(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> SplitRule:
        return cls(**{**data, "ratios": tuple(data.get("ratios", ()))})

    def describe(self) -> str:
        """One line for the scan's output and the report."""
        if self.rule == "ratios":
            shares = "/".join(f"{s} {r:g}" for s, r in zip(SPLITS, self.ratios))
            return f"assigned by --split-ratios ({shares}, seed {self.seed}), whole groups by {self.grouping}"
        if self.rule == "single":
            return f"every row in split {self.split!r} (--split {self.split})"
        if self.rule == "folders":
            return "the dataset's own (split folders or the layout's rule)"
        return "none (every row's split is empty)"


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.6,0.2,0.2"`` → train, valid, test shares; they must be three non-negative numbers summing to 1."""
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or any(not np.isfinite(v) or v < 0 for v in values) or abs(sum(values) - 1) > 1e-6 \
            or values[0] == 0:
        raise DeclipError(f"--split-ratios {text!r}: expected three shares for train,valid,test that sum to 1 with a "
                          "train share above 0, e.g. 0.6,0.2,0.2 (0.8,0.2,0 for no test split)")
    return values  # type: ignore[return-value]


def group_rows(rows: list[dict], hashes: dict[str, int | None], group_regex: str | None = None) -> list[int]:
    """A group number per row: connected components of same group id, near-identical hash, same regex match."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)

    pattern = _compile(group_regex)
    first: dict[tuple, int] = {}
    for i, row in enumerate(rows):
        keys = [("id", row["dataset"], row["group_id"])]
        if pattern is not None:
            match = pattern.search(_stem(row["image_path"]))
            if match:
                keys.append(("regex", row["dataset"], match.group(1) if pattern.groups else match.group(0)))
        for key in keys:
            union(first.setdefault(key, i), i)
    for i, j in near_pairs([hashes.get(r["image_path"]) for r in rows]):
        union(i, j)
    return [find(i) for i in range(len(rows))]


def _stem(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _compile(group_regex: str | None) -> re.Pattern | None:
    if not group_regex:
        return None
    try:
        return re.compile(group_regex)
    except re.error as exc:
        raise DeclipError(f"--group-regex {group_regex!r}: not a regular expression ({exc})") from None


def assign_splits(rows: list[dict], hashes: dict[str, int | None], ratios: tuple[float, float, float], seed: int,
                  group_regex: str | None = None) -> list[str]:
    """The split of each row under ``ratios``: whole groups, stratified by subset, deterministic for a seed."""
    groups = group_rows(rows, hashes, group_regex)
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    order = list(members)
    np.random.default_rng(seed).shuffle(order)
    order.sort(key=lambda g: -len(members[g]))  # stable: the seed orders groups of equal size
    strata = sorted({r["subset"] for r in rows})
    total = {s: sum(r["subset"] == s for r in rows) for s in strata}
    count = {(split, s): 0 for split in SPLITS for s in strata}
    open_splits = [k for k, r in enumerate(ratios) if r > 0]
    out = [""] * len(rows)
    for g in order:
        subsets = [rows[i]["subset"] for i in members[g]]
        # how far each split is below its share, summed over the group's rows, relative to each subset's size
        deficit = [sum((ratios[k] * total[s] - count[(SPLITS[k], s)]) / total[s] for s in subsets)
                   for k in open_splits]
        split = SPLITS[open_splits[int(np.argmax(deficit))]]
        for i in members[g]:
            out[i] = split
            count[(split, rows[i]["subset"])] += 1
    return out


def grouping_text(group_regex: str | None) -> str:
    extra = f", the match of --group-regex {group_regex!r}" if group_regex else ""
    return f"group id, perceptual hash within {MAX_DISTANCE} bits{extra}"


def check_resplit(rows: list[dict], flag: str) -> None:
    """Refuse to replace a dataset's own split folders: ``--split-ratios``/``--split`` are for data without any."""
    own = sorted({r["split"] for r in rows} - {""})
    if len(own) > 1:
        raise DeclipError(f"{flag}: the dataset already has the splits {', '.join(own)} (from its folders); these "
                          "options are for data with none or one. Scan without it to keep them")


def no_split_warning(df) -> str | None:
    """The scan's warning for a manifest in which no row has a split, else ``None``."""
    if len(df) == 0 or bool((df["split"] != "").any()):
        return None
    return (f"no split: none of the {len(df)} rows has a train/valid/test split, so `declip train`, `evaluate` and "
            f"`grid` will refuse this dataset; {FIX}")


def require_split(samples, split: str, dataset: str, purpose: str) -> None:
    """Raise the fix when ``samples`` has no row in ``split`` because the dataset has no usable split at all.

    Why: without this a split-less dataset failed after extraction with "no localization rows (train 0, valid 0)".
    """
    present = set(samples["split"])
    if split in present:
        return
    if present <= {""}:
        raise DeclipError(f"dataset {dataset!r} has no split (every row's split is empty: a pairs folder without "
                          f"split folders, or a list file), so there is no {split!r} split {purpose}; {FIX}, then run "
                          "`declip extract` again (cached features are kept; only the splits change)")
    if present <= {"test"} and split != "test":
        raise DeclipError(f"dataset {dataset!r} is test-only (every row is in split 'test'), so there is no {split!r} "
                          f"split {purpose}; evaluate a checkpoint trained elsewhere on it (`declip evaluate --ckpt "
                          f"...`), or re-scan with --split-ratios 0.6,0.2,0.2 --seed 0 to train on it")
