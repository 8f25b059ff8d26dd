"""Where a report's numbers come from: when it was written, by which code, from which grid config, on how many
images, by which command. A reader who finds the page in a folder months later can tell what it is.
"""
from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pandas as pd

from declip.core.versions import code_version

#: Grid settings worth a line on the page (the whole grid.json is linked beside them).
SETTINGS = ("dataset", "store", "backbones", "layers", "fused", "extra_sources", "decoders", "train_sets",
            "test_sets", "seeds", "eval_splits", "test_views", "metrics")
TRAINING = ("max_epochs", "patience", "batch_size", "lr", "width", "device", "min_steps_per_epoch")


def _text(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "—"
    return "—" if value is None else str(value)


def dataset_sizes(grid: dict, table: pd.DataFrame) -> str:
    """Images per split (fake + real) from the store's sample table; the test sets' from the results when the
    store cannot be read (moved, or a report built elsewhere)."""
    try:
        from declip.store.feature_store import FeatureStore

        samples = FeatureStore(grid["store"], mode="r").samples(grid["dataset"])
        parts = []
        for split, part in samples.groupby("split", sort=False):
            fake = int((part["label"] == 1).sum())
            parts.append(f"{split or '(no split)'} {fake} fake + {len(part) - fake} real")
        return f"{len(samples)} images: " + ", ".join(parts)
    except Exception:  # noqa: BLE001 - provenance never stops a report
        iou = table[(table["metric"] == "iou") & (table["split"] == "test")]
        sizes = iou.groupby("test_set")["n_images"].max()
        return "test fakes per test set (store not readable here): " + ", ".join(
            f"{t} {int(n)}" for t, n in sizes.items() if pd.notna(n))


def provenance(table: pd.DataFrame, grid: dict, results: Path, command: str | None = None) -> pd.DataFrame:
    """(item, value) rows: date, code versions, command, results file, grid config and its main settings, sizes."""
    versions = sorted(set(table["code_version"].dropna().astype(str))) if "code_version" in table else []
    written = datetime.datetime.fromtimestamp(results.stat().st_mtime).isoformat(timespec="seconds")
    rows = [
        ("report written", datetime.datetime.now().isoformat(timespec="seconds")),
        ("report code version", code_version()),
        ("command", command or " ".join(["declip" if Path(sys.argv[0]).name == "declip" else sys.argv[0],
                                         *sys.argv[1:]])),
        ("results table", f"{results} (written {written})"),
        ("code version(s) of the results", ", ".join(versions) or "not recorded"),
        ("grid config", str(results.parent / "grid.json") if grid else "no grid.json beside the results"),
    ]
    rows += [(key, _text(grid[key])) for key in SETTINGS if key in grid and grid[key] not in (None, [], ())]
    options = grid.get("options", grid)
    rows += [(f"training {key}", _text(options[key])) for key in TRAINING if isinstance(options, dict)
             and key in options]
    if grid.get("store") and grid.get("dataset"):
        rows.append(("dataset size", dataset_sizes(grid, table)))
    return pd.DataFrame(rows, columns=["item", "value"])
