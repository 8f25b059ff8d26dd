"""The report's page: ``index.html`` and ``index.md`` with the headline, the tables and the figures.

The headline's first line is the page's title, the others its bullet points; every table goes through
:func:`readable` first: rounded numbers and '—' where nothing was computed, never NaN.
"""
from __future__ import annotations

from html import escape
from pathlib import Path

import pandas as pd

from declip.core.io import atomic_write_text
from declip.pipeline.report.labels import COLLAPSED, NOT_CHOSEN_RULE, RANDOM_NOTE


def readable(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Rounded numbers, '—' for anything not computed (no NaN cells), and no name on the columns (a pivot's would
    become an empty first column on the page)."""
    out = df.copy()
    out.columns.name = None
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
            out[col] = out[col].map(lambda v: "—" if pd.isna(v) else f"{v:.{digits}f}")
    return out.fillna("—").replace({"": "—"})


STYLE = ("<style>body{font-family:sans-serif;max-width:1200px;margin:auto;color:#111}"
         "table{border-collapse:collapse;font-size:13px;margin-bottom:1em}"
         "th{background:#223;color:#fff;padding:4px 8px;text-align:left}"
         "td{border:1px solid #bbb;padding:3px 8px;color:#111;background:#fff}"
         "tr:nth-child(even) td{background:#f0f0f4}</style>")


READING = ("<p>All metrics in percent. Numbers in brackets are <b>95 % intervals</b>: bootstrap over the test "
           "images (and over seeds first, when several seeds ran); a model's in-domain or out-of-domain mean "
           "resamples each test set's images separately. <b>Tied with best</b>: the model's per-image difference "
           "from the chosen one on the same test images is not significant at 0.05 (Wilcoxon signed-rank, Holm's "
           "correction over the models compared).</p>")


def write_pages(out: Path, figures: list[Path], tables: dict, conventions: pd.DataFrame, rnd: bool,
                headline: list[str], provenance: pd.DataFrame | None = None) -> None:
    """``index.html`` and ``index.md`` in ``out`` (each replaced whole: a reader never sees half a page)."""
    banner = f'<p style="background:#fdd;padding:1em;font-size:1.3em"><b>{RANDOM_NOTE}</b></p>' if rnd else ""
    head = "".join(f"<li>{escape(line)}</li>" for line in headline[1:])
    title = escape(headline[0]) if headline else "no results"
    imgs = "".join(f'<h3>{p.stem.replace("_", " ")}</h3><a href="{p.name}"><img src="{p.name}" '
                   f'style="max-width:100%"></a>' for p in figures)
    tabs = "".join(f"<h3>{escape(name)}</h3>{df.to_html(index=False)}" for name, df in tables.items())
    prov = "" if provenance is None else f"<h3>provenance</h3>{provenance.to_html(index=False)}"
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>declip report</title>{STYLE}</head><body>"
            f"<h1>declip ablation report</h1>{banner}<h2>{title}</h2><ul>{head}</ul>{READING}"
            f"<p>{escape(COLLAPSED)}. {escape(NOT_CHOSEN_RULE)}.</p>"
            f"{tabs}{imgs}<h3>metric conventions</h3>{conventions.to_html(index=False)}{prov}</body></html>")
    atomic_write_text(out / "index.html", html)
    md = ["# declip ablation report", "", f"**{RANDOM_NOTE}**" if rnd else "", "", f"**{headline[0]}**"
          if headline else "", "", *[f"- {line}" for line in headline[1:]], "",
          "All metrics in percent, with 95 % bootstrap intervals in brackets (test images; seeds first when several "
          "ran). " + COLLAPSED + ". " + NOT_CHOSEN_RULE + ".", ""]
    for name, df in tables.items():
        md += ["", f"## {name}", "", df.to_markdown(index=False)]
    md += [""] + [f"![{p.stem}]({p.name})" for p in figures]
    if provenance is not None:
        md += ["", "## provenance", "", provenance.to_markdown(index=False)]
    atomic_write_text(out / "index.md", "\n".join(md) + "\n")
