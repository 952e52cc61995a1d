"""Render paired comparisons against a baseline: a Markdown table per baseline and ``comparisons.csv``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from reports.formatting import NO_DATA, fmt_float, fmt_ratio, md_escape
from reports.statistics import BETTER, NO_DIFFERENCE, WORSE, PairedComparison

COMPARISONS_FILE = "comparisons.csv"
COMPARISON_FIELDS: tuple[str, ...] = (
    "task",
    "backbone",
    "ratio",
    "method",
    "baseline",
    "metric",
    "n_pairs",
    "mean_diff",
    "low",
    "high",
    "verdict",
)
MARKERS: dict[str, str] = {BETTER: "▲", WORSE: "▼"}


def format_comparison(comparison: PairedComparison | None) -> str:
    """``+0.120 [+0.030, +0.210] ▲ (n=5)``; no marker when the interval contains 0;
    ``+0.100 (n=2: too few seeds)`` (mean difference only, no interval or marker) below the minimum of pairs."""
    if comparison is None:
        return NO_DATA
    if comparison.verdict not in (BETTER, WORSE, NO_DIFFERENCE) or comparison.low is None or comparison.high is None:
        too_few = f"n={comparison.n_pairs}: too few seeds"
        return too_few if comparison.mean_diff is None else f"{comparison.mean_diff:+.3f} ({too_few})"
    marker = MARKERS.get(comparison.verdict)
    text = f"{comparison.mean_diff:+.3f} [{comparison.low:+.3f}, {comparison.high:+.3f}]"
    return f"{text} {marker} (n={comparison.n_pairs})" if marker else f"{text} (n={comparison.n_pairs})"


def comparison_table(
    comparisons: Sequence[PairedComparison], methods: Sequence[str], ratios: Sequence[float], baseline: str
) -> list[str]:
    """Markdown table of ``method - baseline``: rows = methods other than the baseline, columns = ratios.

    ``comparisons`` must be those of one (task, backbone, metric); returns no lines if there is nothing to show.
    """
    by_cell = {(c.method, c.ratio): c for c in comparisons if c.baseline == baseline}
    rows = [m for m in methods if m != baseline]
    if not by_cell or not rows:
        return []
    lines = [
        "| method | " + " | ".join(fmt_ratio(r) for r in ratios) + " |",
        "|:---|" + "---:|" * len(ratios),
    ]
    for method in rows:
        texts = [format_comparison(by_cell.get((method, ratio))) for ratio in ratios]
        lines.append(f"| {md_escape(method)} | " + " | ".join(texts) + " |")
    return lines


def render_comparisons_csv(comparisons: Sequence[PairedComparison]) -> str:
    """One row per (task, backbone, ratio, method, baseline, metric); numbers with 6 significant digits."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COMPARISON_FIELDS), lineterminator="\n")
    writer.writeheader()
    for c in comparisons:
        writer.writerow(
            {
                "task": c.task,
                "backbone": c.backbone,
                "ratio": fmt_float(c.ratio),
                "method": c.method,
                "baseline": c.baseline,
                "metric": c.metric,
                "n_pairs": c.n_pairs,
                "mean_diff": fmt_float(c.mean_diff),
                "low": fmt_float(c.low),
                "high": fmt_float(c.high),
                "verdict": c.verdict,
            }
        )
    return buffer.getvalue()
