"""Statistics over seeds: Student-t intervals, paired comparisons against a baseline, missing runs.

Pure functions of run records (numpy + scipy.stats only); rendering lives in :mod:`reports.leaderboard`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from reports.aggregate import CellKey, cell_sort_key, method_sort_key
from reports.collect import RunRecord

DEFAULT_CONFIDENCE = 0.95
DEFAULT_BASELINES: tuple[str, ...] = ("ce", "os")
DEFAULT_MIN_PAIRS = 3

BETTER = "better"
WORSE = "worse"
NO_DIFFERENCE = "no difference shown"


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with a Student-t confidence interval; ``std`` is the sample std (ddof=1).

    ``n == 1``: only the mean (std, low, high are None); ``n == 0``: everything None.
    """

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def t_interval(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Student-t interval for the mean: mean ± t_{(1+c)/2, n-1} · s / sqrt(n), s the sample std (ddof=1)."""
    _check_confidence(confidence)
    data = np.asarray(values, dtype=float)
    n = int(data.size)
    if n == 0:
        return Interval(n=0, mean=None, std=None, low=None, high=None)
    mean = float(data.mean())
    if n == 1:
        return Interval(n=1, mean=mean, std=None, low=None, high=None)
    std = float(data.std(ddof=1))
    half_width = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
    return Interval(n=n, mean=mean, std=std, low=mean - half_width, high=mean + half_width)


@dataclass(frozen=True)
class PairedComparison:
    """``method`` minus ``baseline`` on ``metric``, paired by seed within one (task, backbone, ratio).

    ``mean_diff``/``low``/``high`` describe the t-interval of the per-seed differences (low/high None below 2 pairs).
    ``verdict`` is :data:`BETTER` (low > 0), :data:`WORSE` (high < 0), :data:`NO_DIFFERENCE` (interval contains 0),
    or ``"too few seeds (n=k)"`` when fewer than ``min_pairs`` seeds could be paired.
    """

    task: str
    backbone: str
    ratio: float
    method: str
    baseline: str
    metric: str
    n_pairs: int
    mean_diff: float | None
    low: float | None
    high: float | None
    verdict: str


def too_few_verdict(n_pairs: int) -> str:
    return f"too few seeds (n={n_pairs})"


def _verdict(interval: Interval, min_pairs: int) -> str:
    if interval.n < min_pairs or interval.low is None or interval.high is None:
        return too_few_verdict(interval.n)
    if interval.low > 0:
        return BETTER
    if interval.high < 0:
        return WORSE
    return NO_DIFFERENCE


def _values_by_seed(records: Sequence[RunRecord], metric: str) -> dict[int, float]:
    """Seed -> metric value over the finished runs that report ``metric``."""
    return {r.seed: r.metrics[metric] for r in records if r.status == "finished" and metric in r.metrics}


def paired_comparisons(
    records: Sequence[RunRecord],
    metric: str,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    min_pairs: int = DEFAULT_MIN_PAIRS,
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[PairedComparison]:
    """Compare every method with each baseline, per (task, backbone, ratio), on seeds both finished.

    The same seed trains on the same subset, so differences d_s = method_s - baseline_s are paired; a seed that
    only one side finished is not used. Groups without any baseline run are skipped. Sorted by task, backbone,
    baseline (in ``baselines`` order), method (preferred order), ratio descending.
    """
    _check_confidence(confidence)
    if min_pairs < 2:
        raise ValueError(f"min_pairs must be at least 2 (an interval needs 2 values), got {min_pairs!r}")
    groups: dict[tuple[str, str, float], dict[str, list[RunRecord]]] = {}
    for record in records:
        group = groups.setdefault((record.task, record.backbone, record.ratio), {})
        group.setdefault(record.method, []).append(record)

    comparisons: list[PairedComparison] = []
    for (task, backbone, ratio), by_method in groups.items():
        for baseline in dict.fromkeys(baselines):
            if baseline not in by_method:
                continue
            base = _values_by_seed(by_method[baseline], metric)
            for method, method_records in by_method.items():
                if method == baseline:
                    continue
                values = _values_by_seed(method_records, metric)
                diffs = [values[seed] - base[seed] for seed in sorted(values.keys() & base.keys())]
                interval = t_interval(diffs, confidence)
                comparisons.append(
                    PairedComparison(
                        task=task,
                        backbone=backbone,
                        ratio=ratio,
                        method=method,
                        baseline=baseline,
                        metric=metric,
                        n_pairs=interval.n,
                        mean_diff=interval.mean,
                        low=interval.low,
                        high=interval.high,
                        verdict=_verdict(interval, min_pairs),
                    )
                )
    order = {b: i for i, b in enumerate(dict.fromkeys(baselines))}
    comparisons.sort(key=lambda c: (c.task, c.backbone, order[c.baseline], method_sort_key(c.method), -c.ratio))
    return comparisons


def missing_seeds(records: Sequence[RunRecord]) -> dict[CellKey, tuple[int, ...]]:
    """Per (task, backbone, method, ratio) cell: the expected seeds that have no run record (finished or failed).

    Expected seeds of a (task, backbone) group = every seed seen in it (any method, ratio or status). Cells cover the
    full grid of methods x ratios seen in the group, so a cell without any record misses all expected seeds.
    Sorted in :func:`reports.aggregate.cell_sort_key` order; cells missing nothing map to ``()``.
    """
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.task, record.backbone), []).append(record)

    missing: dict[CellKey, tuple[int, ...]] = {}
    for (task, backbone), group in groups.items():
        expected = {r.seed for r in group}
        present: dict[tuple[str, float], set[int]] = {}
        for r in group:
            present.setdefault((r.method, r.ratio), set()).add(r.seed)
        for method in {r.method for r in group}:
            for ratio in {r.ratio for r in group}:
                seen = present.get((method, ratio), set())
                missing[(task, backbone, method, ratio)] = tuple(sorted(expected - seen))
    return {key: missing[key] for key in sorted(missing, key=cell_sort_key)}


def cell_intervals(
    records: Sequence[RunRecord], metric: str, confidence: float = DEFAULT_CONFIDENCE
) -> dict[CellKey, Interval]:
    """Per (task, backbone, method, ratio) cell with records: :func:`t_interval` of ``metric`` over finished runs."""
    values: dict[CellKey, list[float]] = {}
    for r in records:
        cell = values.setdefault((r.task, r.backbone, r.method, r.ratio), [])
        if r.status == "finished" and metric in r.metrics:
            cell.append(r.metrics[metric])
    return {key: t_interval(values[key], confidence) for key in sorted(values, key=cell_sort_key)}
