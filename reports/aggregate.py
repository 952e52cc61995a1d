"""Aggregate run records over seeds: one :class:`CellStats` per (task, backbone, method, ratio)."""

from __future__ import annotations

import functools
import math
import operator
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from reports.collect import RunRecord
from reports.posthoc import POSTHOC_SUFFIX

#: Methods listed first, in this order, when present; any other method follows alphabetically.
PREFERRED_METHOD_ORDER: tuple[str, ...] = ("ce", "os", "cb", "fscl", "fscl+os")

CellKey = tuple[str, str, str, float]
_status = operator.attrgetter("status")


#: Bits of the scaled square root before its one rounding to float (as :func:`statistics.stdev` does).
_SQRT_BITS = 2 * sys.float_info.mant_dig + 3


def _sqrt_of_fraction(numerator: int, denominator: int) -> float:
    """sqrt(numerator / denominator) correctly rounded to a float: an integer square root with round-to-odd in
    extra bits, then one rounding (the method of :func:`statistics.stdev`, https://bugs.python.org/msg407078)."""
    q = (numerator.bit_length() - denominator.bit_length() - _SQRT_BITS) // 2
    if q >= 0:
        return (_isqrt_round_to_odd(numerator, denominator << 2 * q) << q) / 1
    return _isqrt_round_to_odd(numerator << -2 * q, denominator) / (1 << -q)


def _isqrt_round_to_odd(numerator: int, denominator: int) -> int:
    """sqrt(numerator / denominator) as an integer, rounded to odd (the last bit set when inexact)."""
    root = math.isqrt(numerator // denominator)
    return root | (root * root * denominator != numerator)


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation (ddof=1) of at least 2 values, exactly :func:`statistics.stdev`'s float (the
    exact variance of the values, its square root correctly rounded), from integers instead of fractions.

    Each float is an integer times a power of 2, so on a common scale 2^-k the values are integers x_i and the
    variance is (n·Σx_i² - (Σx_i)²) / (n·(n-1)·4^k), exactly. Non-finite values go to :func:`statistics.stdev`.
    """
    if len(values) < 2:
        raise ValueError(f"a sample std needs at least 2 values, got {len(values)}")
    try:
        ratios = [value.as_integer_ratio() for value in values]
    except (OverflowError, ValueError):  # inf or nan: statistics.stdev's answer (nan)
        return statistics.stdev(values)
    shift = max(d for _, d in ratios).bit_length() - 1  # every denominator is a power of 2
    scaled = [n << (shift - d.bit_length() + 1) for n, d in ratios]
    count = len(scaled)
    total = sum(scaled)
    spread = count * sum(x * x for x in scaled) - total * total
    if spread == 0:
        return 0.0
    return _sqrt_of_fraction(spread, count * (count - 1) << 2 * shift)


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


@functools.lru_cache(maxsize=4096)  # a report sorts ~10^5 comparisons by a few dozen methods
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


def cell_values(groups: dict[CellKey, list[RunRecord]], metric: str) -> dict[CellKey, list[float]]:
    """Per cell of ``groups``: ``metric`` of its finished runs that report it, in run order (what :func:`aggregate` and
    :func:`reports.statistics.cell_intervals` summarise)."""
    return {
        key: [r.metrics[metric] for r in group if r.status == "finished" and metric in r.metrics]
        for key, group in groups.items()
    }


def aggregate(
    records: Sequence[RunRecord],
    metric: str,
    groups: dict[CellKey, list[RunRecord]] | None = None,
    values: dict[CellKey, list[float]] | None = None,
) -> list[CellStats]:
    """Per cell: mean/std of ``metric`` over finished runs that report it; failed runs only counted. ``groups``:
    :func:`group_records` of ``records``, when already made (for many metrics); ``values``: :func:`cell_values` of
    those groups, when already made."""
    groups = groups if groups is not None else group_records(records)
    values = values if values is not None else cell_values(groups, metric)
    cells: list[CellStats] = []
    for (task, backbone, method, ratio), group in groups.items():
        found = values[(task, backbone, method, ratio)]
        cells.append(
            CellStats(
                task=task,
                backbone=backbone,
                method=method,
                ratio=ratio,
                metric=metric,
                n=len(found),
                mean=math.fsum(found) / len(found) if found else None,  # statistics.fmean's arithmetic
                std=sample_std(found) if len(found) >= 2 else None,  # statistics.stdev's float
                n_failed=list(map(_status, group)).count("failed"),
            )
        )
    return cells
