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
    "p_exact",  # added later, so after the original columns
)
MARKERS: dict[str, str] = {BETTER: "▲", WORSE: "▼"}


def fmt_p(p_value: float) -> str:
    """A p-value with 3 significant digits: ``p=0.25``, ``p=0.0625``, ``p=0.00195``, ``p=1``."""
    return f"p={p_value:.3g}"


def format_comparison(comparison: PairedComparison | None) -> str:
    """``+0.120 [+0.030, +0.210] p=0.00195 ▲ (n=10)``: mean difference, t-interval, exact sign-flip p-value, and a
    marker only when that test reaches the level; ``+0.100 (n=2: too few seeds)`` (mean difference only, no interval,
    test or marker) below the minimum of pairs."""
    if comparison is None:
        return NO_DATA
    tested = comparison.verdict in (BETTER, WORSE, NO_DIFFERENCE) and comparison.p_value is not None
    if not tested or comparison.low is None or comparison.high is None:
        too_few = f"n={comparison.n_pairs}: too few seeds"
        return too_few if comparison.mean_diff is None else f"{comparison.mean_diff:+.3f} ({too_few})"
    marker = MARKERS.get(comparison.verdict)
    text = f"{comparison.mean_diff:+.3f} [{comparison.low:+.3f}, {comparison.high:+.3f}] {fmt_p(comparison.p_value)}"
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
    """One row per (task, backbone, ratio, method, baseline, metric); numbers with 6 significant digits; ``p_exact``
    is the exact sign-flip test's p-value (empty below the minimum of pairs)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COMPARISON_FIELDS)
    writer.writerows(
        (
            c.task,
            c.backbone,
            fmt_float(c.ratio),
            c.method,
            c.baseline,
            c.metric,
            c.n_pairs,
            fmt_float(c.mean_diff),
            fmt_float(c.low),
            fmt_float(c.high),
            c.verdict,
            fmt_float(c.p_value),
        )  # in COMPARISON_FIELDS order
        for c in comparisons
    )
    return buffer.getvalue()
