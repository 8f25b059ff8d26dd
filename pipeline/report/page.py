"""The report's page: ``index.html`` and ``index.md`` with the headline, the tables and the figures.

Every table goes through :func:`readable` first: rounded numbers and '—' where nothing was computed, never NaN.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from declip.core.io import atomic_write_text
from declip.pipeline.report.labels import RANDOM_NOTE


def readable(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Rounded numbers, '—' for anything not computed (no NaN cells)."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].map(lambda v: "—" if pd.isna(v) else f"{v:.{digits}f}")
    return out.fillna("—").replace({"": "—"})


STYLE = ("<style>body{font-family:sans-serif;max-width:1200px;margin:auto;color:#111}"
         "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
         "th{background:#223;color:#fff;padding:4px 8px;text-align:left}"
         "td{border:1px solid #bbb;padding:3px 8px;color:#111;background:#fff}"
         "tr:nth-child(even) td{background:#f0f0f4}</style>")


def write_pages(out: Path, figures: list[Path], tables: dict, conventions: pd.DataFrame, rnd: bool, label: str,
                averages: tuple[float, float]) -> None:
    """``index.html`` and ``index.md`` in ``out`` (each replaced whole: a reader never sees half a page)."""
    banner = f'<p style="background:#fdd;padding:1em;font-size:1.3em"><b>{RANDOM_NOTE}</b></p>' if rnd else ""
    if np.isfinite(averages[0]):
        headline = f"Best cell {label} (chosen on validation): in-domain IoU {averages[0]:.2f}, " \
                   f"out-of-domain IoU {averages[1]:.2f} (test)"
    else:
        headline = f"Best cell: {label}"
    imgs = "".join(f'<h3>{p.stem.replace("_", " ")}</h3><a href="{p.name}"><img src="{p.name}" '
                   f'style="max-width:100%"></a>' for p in figures)
    tabs = "".join(f"<h3>{name}</h3>{df.to_html(index=False)}" for name, df in tables.items())
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>declip report</title>{STYLE}</head><body>"
            f"<h1>declip ablation report</h1>{banner}<h2>{headline}</h2>"
            "<p>All metrics in percent. A <b>collapsed</b> evaluation predicted near-constant maps (almost all "
            "fake, almost none, pixel AUC ≈ 0.5, or the same map for every image); it is marked everywhere and "
            "never chosen.</p>"
            f"{tabs}{imgs}<h3>metric conventions</h3>{conventions.to_html(index=False)}</body></html>")
    atomic_write_text(out / "index.html", html)
    md = ["# declip ablation report", "", f"**{RANDOM_NOTE}**" if rnd else "", "", headline, "",
          "All metrics in percent; collapsed evaluations are marked and never chosen.", ""]
    for name, df in tables.items():
        md += ["", f"## {name}", "", df.to_markdown(index=False)]
    md += [""] + [f"![{p.stem}]({p.name})" for p in figures]
    atomic_write_text(out / "index.md", "\n".join(md) + "\n")
