"""Statistics over seeds: Student-t intervals, an exact paired sign-flip test, paired comparisons against a
baseline, missing runs.

Pure functions of run records (numpy + scipy.stats only); rendering lives in :mod:`reports.leaderboard`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from reports.aggregate import CellKey, cell_sort_key, cell_values, group_records, method_sort_key
from reports.collect import RunRecord

DEFAULT_CONFIDENCE = 0.95
DEFAULT_BASELINES: tuple[str, ...] = ("ce", "os")
DEFAULT_MIN_PAIRS = 3
#: Up to this many pairs the sign-flip test enumerates all 2^n sign assignments (2^20 sums: 8 MiB, a few ms).
EXACT_MAX_PAIRS = 20
#: Beyond it, this many seeded random sign assignments (Monte-Carlo p-value, standard error <= 0.0016).
MONTE_CARLO_DRAWS = 100_000
MONTE_CARLO_SEED = 0

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


@functools.lru_cache(maxsize=1024)
def _t_quantile(level: float, dof: int) -> float:
    """Student-t quantile at ``level`` with ``dof`` degrees of freedom (kept: a report asks for the same few)."""
    return float(stats.t.ppf(level, dof))


def t_interval(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Student-t interval for the mean: mean ± t_{(1+c)/2, n-1} · s / sqrt(n), s the sample std (ddof=1)."""
    return t_intervals([values], confidence)[0]


def t_intervals(samples: Sequence[Sequence[float]], confidence: float = DEFAULT_CONFIDENCE) -> list[Interval]:
    """:func:`t_interval` of each sample, computed together: the samples of one size as the rows of one array.

    The same arithmetic as one sample at a time (numpy's mean and ``std(ddof=1)`` along each row, then the scalar
    formula elementwise), so every number is the same to the last bit; only the Python work per sample is gone.
    """
    _check_confidence(confidence)
    found: list[Interval | None] = [None] * len(samples)
    for n, indices in _by_size(samples).items():
        if n == 0:
            for i in indices:
                found[i] = _NO_VALUES
            continue
        data = _rows(samples, indices, n)
        means = data.mean(axis=1)
        if n == 1:
            for i, mean in zip(indices, means.tolist(), strict=True):
                found[i] = Interval(n=1, mean=mean, std=None, low=None, high=None)
            continue
        stds = data.std(axis=1, ddof=1)
        half_widths = _t_quantile((1.0 + confidence) / 2.0, n - 1) * stds / math.sqrt(n)
        lows, highs = (means - half_widths).tolist(), (means + half_widths).tolist()
        for i, mean, std, low, high in zip(indices, means.tolist(), stds.tolist(), lows, highs, strict=True):
            found[i] = Interval(n=n, mean=mean, std=std, low=low, high=high)
    return found  # type: ignore[return-value]  # every index was filled above


def _by_size(samples: Sequence[Sequence[float]]) -> dict[int, list[int]]:
    """The indices of ``samples`` by the samples' sizes."""
    by_size: dict[int, list[int]] = {}
    for index, values in enumerate(samples):
        by_size.setdefault(len(values), []).append(index)
    return by_size


def _rows(samples: Sequence[Sequence[float]], indices: Sequence[int], n: int) -> np.ndarray:
    """The samples at ``indices`` (each of ``n`` values) as the rows of one C-ordered float array."""
    return np.array([samples[i] for i in indices], dtype=float).reshape(len(indices), n)


_NO_VALUES = Interval(n=0, mean=None, std=None, low=None, high=None)


def _sign_flip_sums(diffs: np.ndarray) -> np.ndarray:
    """sum_i s_i d_i for all 2^n sign vectors s (float [2^n]), built by doubling so the all-plus sum comes first."""
    sums = np.zeros(1)
    for d in diffs:
        sums = np.concatenate([sums + d, sums - d])
    return sums


def sign_flip_p_value(
    diffs: Sequence[float],
    *,
    exact_max_n: int = EXACT_MAX_PAIRS,
    draws: int = MONTE_CARLO_DRAWS,
    seed: int = MONTE_CARLO_SEED,
) -> float | None:
    """Two-sided p-value of the paired sign-flip (permutation) test of mean difference 0; None for no pairs.

    Under the null hypothesis that the method and the baseline are exchangeable within a seed (the same seed trains
    on the same subset), each paired difference d_i is as likely to be +|d_i| as -|d_i|. p = the share of the 2^n sign
    assignments s whose |sum_i s_i d_i| is at least the observed |sum_i d_i| (the mean, scaled by n). It is exact
    for n <= ``exact_max_n`` (all assignments); beyond, ``draws`` seeded random assignments give (1 + hits) /
    (1 + draws), which is itself a valid p-value.

    Why this test: it tests the mean, the number the report shows, using the sizes of the differences, needs no
    normality, and stays valid when the differences have no spread (identical differences give p = 2 / 2^n: 0.25
    for 3 pairs, 0.0625 for 5, so at least 6 pairs are needed to reach 5%), where the t-interval has zero width.
    Zero differences keep their place (flipping them changes nothing: the conditional test stays exact), and ties
    need no special case — unlike ``scipy.stats.wilcoxon(method="exact")``, which ranks the differences, drops
    zeros and is not exact with tied ranks. Sums within a relative 1e-9 of the observed one count as reaching it,
    so rounding in the differences does not decide the outcome.
    """
    data = np.asarray(diffs, dtype=float)
    n = int(data.size)
    if n == 0:
        return None
    observed = abs(float(data.sum()))
    tolerance = 1e-9 * max(float(np.abs(data).sum()), np.finfo(float).tiny)
    if n <= exact_max_n:
        sums = _sign_flip_sums(data)
        return float(np.count_nonzero(np.abs(sums) >= observed - tolerance)) / sums.size
    generator = np.random.default_rng(seed)
    hits, done, chunk = 0, 0, max(1, 2_000_000 // n)
    while done < draws:
        size = min(chunk, draws - done)
        signs = generator.choice(np.array([-1.0, 1.0]), size=(size, n))
        hits += int(np.count_nonzero(np.abs(signs @ data) >= observed - tolerance))
        done += size
    return (1 + hits) / (1 + draws)


#: Rows of sign-flip sums made at once by :func:`sign_flip_p_values` (times 2^(n-1) sums of 8 bytes: <= 32 MiB).
_BATCH_SUMS = 1 << 22


def sign_flip_p_values(samples: Sequence[Sequence[float]]) -> list[float | None]:
    """:func:`sign_flip_p_value` (default settings) of each sample of differences, computed together.

    Samples of one size n <= :data:`EXACT_MAX_PAIRS` are the rows of one array, and their 2^n signed sums are built
    by the same doubling, column block by column block, so every sum, and so every p-value, is the same to the last
    bit. Only the half whose first sign is + is built: the other half is its exact negation (IEEE rounding is
    symmetric), so it reaches the observed |sum| as often. Larger samples go one by one (Monte-Carlo).
    """
    found: list[float | None] = [None] * len(samples)
    for n, indices in _by_size(samples).items():
        if n == 0:
            continue
        if n > EXACT_MAX_PAIRS:
            for i in indices:
                found[i] = sign_flip_p_value(samples[i])
            continue
        data = _rows(samples, indices, n)
        rows = max(1, _BATCH_SUMS >> (n - 1))
        for start in range(0, len(indices), rows):
            block = data[start : start + rows]
            observed = np.abs(block.sum(axis=1))
            tolerance = 1e-9 * np.maximum(np.abs(block).sum(axis=1), np.finfo(float).tiny)
            sums = block[:, :1] + 0.0  # 0 + d_1, as the doubling starts
            for column in range(1, n):
                d = block[:, column : column + 1]
                sums = np.concatenate([sums + d, sums - d], axis=1)
            hits = np.count_nonzero(np.abs(sums) >= (observed - tolerance)[:, None], axis=1)
            for i, count in zip(indices[start : start + rows], hits.tolist(), strict=True):
                found[i] = float(2 * count) / (1 << n)
    return found


@dataclass(frozen=True)
class PairedComparison:
    """``method`` minus ``baseline`` on ``metric``, paired by seed within one (task, backbone, ratio).

    ``mean_diff``/``low``/``high`` describe the t-interval of the per-seed differences (low/high None below 2 pairs).
    ``p_value`` is the exact sign-flip test's (:func:`sign_flip_p_value`; None below ``min_pairs``). ``verdict`` is
    :data:`BETTER` / :data:`WORSE` when that test reaches the level (p <= 1 - confidence) and the mean difference is
    above / below 0, :data:`NO_DIFFERENCE` otherwise, or ``"too few seeds (n=k)"`` when fewer than ``min_pairs``
    seeds could be paired. The t-interval describes the difference; it does not decide the verdict (a zero-width
    interval from identical differences is no evidence).
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
    p_value: float | None = None


def too_few_verdict(n_pairs: int) -> str:
    return f"too few seeds (n={n_pairs})"


def _verdict(interval: Interval, p_value: float | None, min_pairs: int, confidence: float) -> str:
    if interval.n < min_pairs or interval.mean is None or p_value is None:
        return too_few_verdict(interval.n)
    if p_value > 1.0 - confidence:
        return NO_DIFFERENCE
    return BETTER if interval.mean > 0 else WORSE


def _values_by_seed(records: Sequence[RunRecord], metric: str) -> dict[int, float]:
    """Seed -> metric value over the finished runs that report ``metric``."""
    return {r.seed: r.metrics[metric] for r in records if r.status == "finished" and metric in r.metrics}


def comparison_groups(records: Sequence[RunRecord]) -> dict[tuple[str, str, float], dict[str, list[RunRecord]]]:
    """The records by (task, backbone, ratio), then by method: what :func:`paired_comparisons` pairs within."""
    groups: dict[tuple[str, str, float], dict[str, list[RunRecord]]] = {}
    for record in records:
        group = groups.setdefault((record.task, record.backbone, record.ratio), {})
        group.setdefault(record.method, []).append(record)
    return groups


def paired_comparisons(
    records: Sequence[RunRecord],
    metric: str,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    min_pairs: int = DEFAULT_MIN_PAIRS,
    confidence: float = DEFAULT_CONFIDENCE,
    groups: dict[tuple[str, str, float], dict[str, list[RunRecord]]] | None = None,
) -> list[PairedComparison]:
    """Compare every method with each baseline, per (task, backbone, ratio), on seeds both finished.

    The same seed trains on the same subset, so differences d_s = method_s - baseline_s are paired; a seed that
    only one side finished is not used. Each comparison gets the t-interval of the differences and the exact
    sign-flip p-value, which alone decides better / worse at the level 1 - ``confidence``. Groups without any
    baseline run are skipped. Sorted by task, backbone, baseline (in ``baselines`` order), method (preferred order),
    ratio descending. ``groups``: :func:`comparison_groups` of ``records``, when already made (for many metrics).
    """
    _check_confidence(confidence)
    if min_pairs < 2:
        raise ValueError(f"min_pairs must be at least 2 (an interval needs 2 values), got {min_pairs!r}")
    groups = groups if groups is not None else comparison_groups(records)

    pairs: list[tuple[str, str, float, str, str]] = []
    samples: list[list[float]] = []
    for (task, backbone, ratio), by_method in groups.items():
        present = [baseline for baseline in dict.fromkeys(baselines) if baseline in by_method]
        by_seed = {method: _values_by_seed(found, metric) for method, found in by_method.items()} if present else {}
        for baseline in present:
            base = by_seed[baseline]
            base_seeds = sorted(base)  # the seeds both finished, in order: these, where the method has them
            for method, values in by_seed.items():
                if method == baseline:
                    continue
                pairs.append((task, backbone, ratio, method, baseline))
                samples.append([values[seed] - base[seed] for seed in base_seeds if seed in values])
    intervals = t_intervals(samples, confidence)
    tested = [i for i, diffs in enumerate(samples) if len(diffs) >= min_pairs]
    p_values: list[float | None] = [None] * len(samples)
    for i, p_value in zip(tested, sign_flip_p_values([samples[i] for i in tested]), strict=True):
        p_values[i] = p_value
    comparisons = [
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
            verdict=_verdict(interval, p_value, min_pairs, confidence),
            p_value=p_value,
        )
        for (task, backbone, ratio, method, baseline), interval, p_value in zip(pairs, intervals, p_values, strict=True)
    ]
    order = {b: i for i, b in enumerate(dict.fromkeys(baselines))}
    comparisons.sort(key=lambda c: (c.task, c.backbone, order[c.baseline], method_sort_key(c.method), -c.ratio))
    return comparisons


def missing_seeds(records: Sequence[RunRecord]) -> dict[CellKey, tuple[int, ...]]:
    """Per (task, backbone, method, ratio) cell: the expected seeds that have no run record (finished or failed).

    Expected seeds of a (task, backbone) group = every seed seen in it (any method, ratio or status). Cells cover the
    full grid of methods x ratios seen in the group, so a cell without any record misses all expected seeds.
    Sorted in :func:`reports.aggregate.cell_sort_key` order; cells missing nothing map to ``()``. Derived rows
    (ensembles, post-hoc adjustments: :attr:`RunRecord.derived`) are left out: they trained nothing, so nothing of
    theirs can be missing, and their seeds are not expected of the runs.
    """
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        if not record.derived:
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
    records: Sequence[RunRecord],
    metric: str,
    confidence: float = DEFAULT_CONFIDENCE,
    groups: dict[CellKey, list[RunRecord]] | None = None,
    values: dict[CellKey, list[float]] | None = None,
) -> dict[CellKey, Interval]:
    """Per (task, backbone, method, ratio) cell with records: :func:`t_interval` of ``metric`` over finished runs.
    ``groups``: :func:`reports.aggregate.group_records` of ``records``, when already made (for many metrics);
    ``values``: :func:`reports.aggregate.cell_values` of those groups, when already made."""
    if values is None:
        values = cell_values(groups if groups is not None else group_records(records), metric)
    return dict(zip(values, t_intervals(list(values.values()), confidence), strict=True))
