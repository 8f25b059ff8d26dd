"""The grid's own checks, with intervals: does the positive control beat the best baseline, and do two random-weight
layers differ?

* **Positive control** (the SRM features, :func:`declip.pipeline.report.labels.is_control`): its decoder chosen on
  validation must beat the best feature-free baseline in-domain with room to spare: the lower bound of its 95 %
  interval above the upper bound of the baseline's. If not, the pipeline (or the data) is suspect, whatever the other
  numbers say. The baseline is the best on test in-domain, the hardest one to beat.
* **Random-weight layers**: two layers of a backbone with random weights carry no learned signal, so their
  difference should mostly come out "not significant" (a paired comparison on the same test images, in-domain, and
  per test set with Holm's correction). A significant one is not an error (random features still differ), but many
  of them on random weights would say the comparisons are too eager.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from declip.core.keys import layer_depth, source_or_none
from declip.pipeline.metrics.resampling import BootstrapOptions
from declip.pipeline.report.comparisons import ALPHA, holm, paired_comparison
from declip.pipeline.report.intervals import PerImageLoader
from declip.pipeline.report.labels import is_control, is_random_source, short_source
from declip.pipeline.report.model_intervals import with_domain
from declip.pipeline.report.ties import image_values


def _ci(value: float, low: float, high: float) -> str:
    if not np.isfinite(value):
        return "—"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]" if np.isfinite(low) else f"{value:.2f} [no interval]"


@dataclass(frozen=True)
class ControlVerdict:
    """The positive control's in-domain test IoU against the best baseline's, with both intervals."""

    source: str
    decoder: str | None
    value: float
    low: float
    high: float
    baseline: str
    baseline_value: float
    baseline_low: float
    baseline_high: float

    @property
    def passed(self) -> bool | None:
        """True: lower bound above the baseline's upper bound; False: not; None: no interval to judge by."""
        if self.decoder is None or not (np.isfinite(self.low) and np.isfinite(self.baseline_high)):
            return None
        return bool(self.low > self.baseline_high)

    @property
    def verdict(self) -> str:
        return {True: "PASSED", False: "FAILED", None: "NOT JUDGED"}[self.passed]

    def line(self) -> str:
        if self.decoder is None:
            return (f"positive control {short_source(self.source)}: NOT JUDGED, no decoder could be chosen (its "
                    "validation evaluations collapsed)")
        why = {True: "its lower bound is above the baseline's upper bound",
               False: "its interval does not clear the baseline's: the pipeline or the data may be broken",
               None: "no interval (too few test images or no per-image tables)"}[self.passed]
        return (f"positive control {self.decoder} @ {short_source(self.source)} vs best baseline {self.baseline}, "
                f"in-domain test IoU: {_ci(self.value, self.low, self.high)} vs "
                f"{_ci(self.baseline_value, self.baseline_low, self.baseline_high)}: {self.verdict} ({why})")


def control_verdicts(iou_domains: pd.DataFrame, picks: dict[str, tuple[str, str] | None]) -> list[ControlVerdict]:
    """One verdict per control source; ``iou_domains`` are the test IoU groups by (source, decoder, domain) and
    ``picks`` each source's decoder chosen on validation (None when none could be)."""
    ind = iou_domains[iou_domains["domain"] == "in-domain"]
    base = ind[ind["decoder"].astype(str).str.startswith("baseline:")]
    if base.empty:
        return []
    top = base.sort_values("value", ascending=False).iloc[0]
    out = []
    for source, pick in picks.items():
        if not is_control(source):
            continue
        row = ind[(ind["source"] == source) & (ind["decoder"] == (pick[1] if pick else None))]
        rec = row.iloc[0] if len(row) else None
        out.append(ControlVerdict(
            source, pick[1] if pick else None, float(rec["value"]) if rec is not None else float("nan"),
            float(rec["ci_low"]) if rec is not None else float("nan"),
            float(rec["ci_high"]) if rec is not None else float("nan"),
            str(top["decoder"]).removeprefix("baseline:"), float(top["value"]), float(top["ci_low"]),
            float(top["ci_high"])))
    return out


@dataclass(frozen=True)
class LayerCheck:
    """Two random-weight layers (same backbone and decoder) compared on the same in-domain test images."""

    a: tuple[str, str]
    b: tuple[str, str]
    difference: float
    low: float
    high: float
    p_value: float
    n_images: int
    per_test_set: int  # comparisons per test set
    significant_per_test_set: int  # of those, significant after Holm

    def line(self) -> str:
        verdict = "not significant" if not self.p_value < ALPHA else "SIGNIFICANT"
        return (f"random-weight layers {self.a[1]} @ {short_source(self.a[0])} − {self.b[1]} @ "
                f"{short_source(self.b[0])}, in-domain test IoU: {self.difference:+.2f} [{self.low:+.2f}, "
                f"{self.high:+.2f}], p = {self.p_value:.3g} over {self.n_images} images: {verdict} (expected: not "
                f"significant); per test set {self.significant_per_test_set} of {self.per_test_set} significant after "
                "Holm")


def random_layer_pair(models: list[tuple[str, str]], collapsed: dict[tuple[str, str], float] | None = None
                      ) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """The two shallowest single layers of a random-weight backbone and decoder that has two: of those groups, the one
    whose two layers collapsed least (``collapsed``: share of collapsed evaluations per model), so that two collapsed
    models, whose difference is trivially nil, never make the check pass vacuously."""
    groups: dict[tuple[str, str], list[str]] = {}
    for source, decoder in models:
        key = source_or_none(source)
        if key is None or key.fused or is_control(source) or not is_random_source(source):
            continue
        groups.setdefault((str(key.backbone), decoder), []).append(source)
    pairs = []
    for (_, decoder), sources in sorted(groups.items()):
        if len(sources) >= 2:
            a, b = sorted(sources, key=lambda s: layer_depth(source_or_none(s).layer))[:2]
            pairs.append(((a, decoder), (b, decoder)))
    share = collapsed or {}
    return min(pairs, key=lambda p: share.get(p[0], 0.0) + share.get(p[1], 0.0), default=None)


def layer_check(rows: pd.DataFrame, load: PerImageLoader, options: BootstrapOptions = BootstrapOptions()
                ) -> LayerCheck | None:
    """The random-weight layer-vs-layer comparison on the test split's in-domain IoU rows ``rows``; None when the
    grid has no two random-weight layers of one backbone and decoder."""
    rows = with_domain(rows)
    rows = rows[rows["domain"] == "in-domain"]
    flags = rows["collapsed"].fillna(False).astype(bool) if "collapsed" in rows else pd.Series(False, rows.index)
    share = {(str(s), str(d)): float(v) for (s, d), v in flags.groupby([rows["source"], rows["decoder"]]).mean().items()}
    pair = random_layer_pair(sorted({(str(s), str(d)) for s, d in zip(rows["source"], rows["decoder"])}), share)
    if pair is None:
        return None
    a, b = pair
    both = rows[[(s, d) in pair for s, d in zip(rows["source"], rows["decoder"])]]
    values = image_values(both, load, "iou")
    if a not in values or b not in values or not len(values[a]):
        return None
    overall = paired_comparison(values[a], values[b], options)
    p_sets = []
    for _, part in both.groupby("test_set"):
        v = image_values(part, load, "iou")
        if a in v and b in v and np.isfinite(v[a] - v[b]).sum() >= 2:
            p_sets.append(float(paired_comparison(v[a], v[b], options).p_value[0]))
    adjusted = holm(p_sets) if p_sets else np.zeros(0)
    return LayerCheck(a, b, float(overall.difference[0]), float(overall.ci_low[0]), float(overall.ci_high[0]),
                      float(overall.p_value[0]), int(overall.n_images[0]), len(p_sets),
                      int(np.sum(adjusted < ALPHA)))
