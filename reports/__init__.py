"""Leaderboard reports from run folders: collect ``result.json`` files, aggregate over seeds, render.

Reads result files (and, for the figures, ``metrics.jsonl`` and ``test_outputs.npz``) only; deliberately does
not import torch. ``write_report`` (:mod:`reports.document`) adds report.md and figures (:mod:`reports.plots`).
Statistics (Student-t intervals over seeds, the exact sign-flip test and paired comparisons against a baseline,
missing runs) live in :mod:`reports.statistics`; checks that a cell's runs share hardware and the asked ratio in
:mod:`reports.checks`.
"""

from reports.aggregate import CellStats, aggregate
from reports.checks import RunChecks, check_runs
from reports.collect import Collection, RunRecord, collect_runs
from reports.document import ReportFiles, write_report
from reports.leaderboard import (
    LeaderboardFiles,
    load_collection,
    render_comparisons,
    render_csv,
    render_markdown,
    write_leaderboard,
)
from reports.statistics import (
    Interval,
    PairedComparison,
    missing_seeds,
    paired_comparisons,
    sign_flip_p_value,
    t_interval,
)

__all__ = [
    "CellStats",
    "Collection",
    "Interval",
    "LeaderboardFiles",
    "PairedComparison",
    "ReportFiles",
    "RunChecks",
    "RunRecord",
    "aggregate",
    "check_runs",
    "collect_runs",
    "load_collection",
    "missing_seeds",
    "paired_comparisons",
    "render_comparisons",
    "render_csv",
    "render_markdown",
    "sign_flip_p_value",
    "t_interval",
    "write_leaderboard",
    "write_report",
]
