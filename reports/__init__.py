"""Leaderboard reports from run folders: collect ``result.json`` files, aggregate over seeds, render.

Reads result files only; deliberately does not import torch.
"""

from reports.aggregate import CellStats, aggregate
from reports.collect import Collection, RunRecord, collect_runs
from reports.leaderboard import LeaderboardFiles, render_csv, render_markdown, write_leaderboard

__all__ = [
    "CellStats",
    "Collection",
    "LeaderboardFiles",
    "RunRecord",
    "aggregate",
    "collect_runs",
    "render_csv",
    "render_markdown",
    "write_leaderboard",
]
