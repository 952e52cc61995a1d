"""Leaderboard reports from run folders: collect ``result.json`` files, aggregate over seeds, render.

Reads result files (and, for the figures, ``metrics.jsonl`` and ``test_outputs.npz``) only; deliberately does
not import torch. ``write_report`` (:mod:`reports.document`) adds report.md and figures (:mod:`reports.plots`).
Statistics (Student-t intervals over seeds, the exact sign-flip test and paired comparisons against a baseline,
missing runs) live in :mod:`reports.statistics`; checks that a cell's runs share hardware and the asked ratio in
:mod:`reports.checks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.lazy_names import lazy_names

# imported now: the function ``aggregate`` must win over the submodule of that name, which Python binds on the
# package when the submodule is first imported (any later ``from reports import aggregate`` then gets the function)
from reports.aggregate import CellStats, aggregate

if TYPE_CHECKING:  # for type checkers and editors; at run time each name is imported on first use
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

#: Where each public name lives. Imported lazily (PEP 562): ``bench run`` prints its leaderboard without the figures'
#: matplotlib, which :mod:`reports.document` imports.
_HOMES: dict[str, str] = {
    "Collection": "collect",
    "Interval": "statistics",
    "LeaderboardFiles": "leaderboard",
    "PairedComparison": "statistics",
    "ReportFiles": "document",
    "RunChecks": "checks",
    "RunRecord": "collect",
    "check_runs": "checks",
    "collect_runs": "collect",
    "load_collection": "leaderboard",
    "missing_seeds": "statistics",
    "paired_comparisons": "statistics",
    "render_comparisons": "leaderboard",
    "render_csv": "leaderboard",
    "render_markdown": "leaderboard",
    "sign_flip_p_value": "statistics",
    "t_interval": "statistics",
    "write_leaderboard": "leaderboard",
    "write_report": "document",
}

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
]  # CellStats, aggregate and the names of _HOMES


__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())
