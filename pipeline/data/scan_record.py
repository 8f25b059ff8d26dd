"""What a scan decided beside its rows: the split rule, the mask rules, the rows each rule removed, EXIF orientations.

Written into the manifest's parquet metadata (``declip.scan``) by ``declip data scan``; ``declip extract`` copies it
into the store, as the dataset's ``scan`` attribute, so the report (and anyone reading the store) can say how the rows
came about. :func:`read_scan_record` is the reader for both places.

Mask rules (``--mask-checks``):

- ``strict`` (default): a fake whose mask has another size than its image, is not binary, or marks nothing is left
  out (``mask-size-mismatch``, ``mask-not-binary``, ``empty-mask``).
- ``declip``: keep them, as DeCLIP's loader does: masks are binarised at 0.5 (so a 0/1 label map reads as all-real),
  a mask of another size is resized to its image (nearest; DeCLIP scores at the mask's size instead), and an empty
  mask is scored like any other (DeCLIP's IoU 100 for an empty prediction, F1 1, pixel AP 0). A reproduction then
  counts the same images as DeCLIP.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from declip.pipeline.data.splits import SplitRule

MASK_CHECKS = ("strict", "declip")
#: The problems ``--mask-checks declip`` keeps in the manifest instead of leaving the row out.
DECLIP_KEEPS = ("mask-size-mismatch", "mask-not-binary", "empty-mask")
META_SCAN = b"declip.scan"


@dataclass(frozen=True)
class ScanRecord:
    """One scan's decisions. ``removed``: rows left out per problem reason; ``kept``: rows the strict rules would
    have left out that ``--mask-checks declip`` kept; ``exif_orientations``: image path -> EXIF orientation (only
    those other than 1)."""

    split_rule: SplitRule = field(default_factory=lambda: SplitRule("none"))
    mask_checks: str = "strict"
    removed: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    exif_orientations: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {**asdict(self), "split_rule": self.split_rule.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> ScanRecord:
        return cls(split_rule=SplitRule.from_json(data.get("split_rule") or {"rule": "none"}),
                   mask_checks=data.get("mask_checks", "strict"), removed=dict(data.get("removed", {})),
                   kept=dict(data.get("kept", {})),
                   exif_orientations={k: int(v) for k, v in data.get("exif_orientations", {}).items()})

    def encoded(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True).encode()

    def removed_line(self) -> str:
        """``rows left out: missing-mask 2, empty-mask 1`` (and what DeCLIP's rules kept), for the scan output."""
        parts = [f"{reason} {n}" for reason, n in sorted(self.removed.items()) if n]
        line = f"rows left out by rule: {', '.join(parts) if parts else 'none'} (mask checks: {self.mask_checks})"
        kept = [f"{reason} {n}" for reason, n in sorted(self.kept.items()) if n]
        return line + (f"; kept as DeCLIP keeps them: {', '.join(kept)}" if kept else "")


def read_scan_record(store: str, dataset: str) -> ScanRecord | None:
    """The scan record a dataset in ``store`` was registered with; ``None`` for datasets registered before it existed.

    For the report: ``record.removed`` (rows left out per rule), ``record.kept``, ``record.mask_checks`` and
    ``record.split_rule.describe()``.
    """
    from declip.store.feature_store import FeatureStore

    data = FeatureStore(store, mode="r").dataset_attrs(dataset).get("scan")
    return None if data is None else ScanRecord.from_json(data)
