"""Aggregate run records over seeds: one :class:`CellStats` per (task, backbone, method, ratio)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from reports.collect import RunRecord
from reports.posthoc import POSTHOC_SUFFIX

#: Methods listed first, in this order, when present; any other method follows alphabetically.
PREFERRED_METHOD_ORDER: tuple[str, ...] = ("ce", "os", "cb", "fscl", "fscl+os")

CellKey = tuple[str, str, str, float]


@dataclass(frozen=True)
class CellStats:
    """Mean and sample std (ddof=1) of one metric over the finished seeds of one cell."""

    task: str
    backbone: str
    method: str
    ratio: float
    metric: str
    n: int
    mean: float | None
    std: float | None
    n_failed: int


def _number_first(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def method_sort_key(method: str) -> tuple[int, str, tuple[tuple[str, tuple[int, float, str]], ...], bool]:
    """Sort key putting :data:`PREFERRED_METHOD_ORDER` first, then the rest alphabetically, ensemble rows
    (``ens(...)``) last; a method's swept settings (``fscl+os[sim_weight=0.3]``, numbers by value) follow it, and a
    post-hoc row (``ce+posthoc``) comes right after its method."""
    name, posthoc = (method.removesuffix(POSTHOC_SUFFIX), True) if method.endswith(POSTHOC_SUFFIX) else (method, False)
    base, _, settings = name.partition("[")
    pairs = [pair.partition("=") for pair in settings.removesuffix("]").split(",")] if settings else []
    variant = tuple((key, _number_first(value)) for key, _, value in pairs)
    if base in PREFERRED_METHOD_ORDER:
        return (PREFERRED_METHOD_ORDER.index(base), "", variant, posthoc)
    return (len(PREFERRED_METHOD_ORDER) + base.startswith("ens("), base, variant, posthoc)


def cell_sort_key(key: CellKey) -> tuple[str, str, tuple[object, ...], float]:
    """Order cells by task, backbone, method (preferred order) and ratio descending."""
    task, backbone, method, ratio = key
    return (task, backbone, method_sort_key(method), -ratio)


def group_records(records: Sequence[RunRecord]) -> dict[CellKey, list[RunRecord]]:
    """Group records by (task, backbone, method, ratio), in :func:`cell_sort_key` order."""
    groups: dict[CellKey, list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.task, record.backbone, record.method, record.ratio), []).append(record)
    return {key: groups[key] for key in sorted(groups, key=cell_sort_key)}


def aggregate(
    records: Sequence[RunRecord], metric: str, groups: dict[CellKey, list[RunRecord]] | None = None
) -> list[CellStats]:
    """Per cell: mean/std of ``metric`` over finished runs that report it; failed runs only counted. ``groups``:
    :func:`group_records` of ``records``, when already made (for many metrics)."""
    cells: list[CellStats] = []
    for (task, backbone, method, ratio), group in (groups if groups is not None else group_records(records)).items():
        values = [r.metrics[metric] for r in group if r.status == "finished" and metric in r.metrics]
        cells.append(
            CellStats(
                task=task,
                backbone=backbone,
                method=method,
                ratio=ratio,
                metric=metric,
                n=len(values),
                mean=statistics.fmean(values) if values else None,
                std=statistics.stdev(values) if len(values) >= 2 else None,
                n_failed=sum(1 for r in group if r.status == "failed"),
            )
        )
    return cells
