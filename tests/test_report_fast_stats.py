"""The batched table statistics (issue 18) give the per-cell reference computation's numbers to the last bit."""

from __future__ import annotations

import gc
import itertools
import math
import random
import statistics

import numpy as np
import pytest
from scipy import stats

from reports.aggregate import sample_std
from reports.leaderboard import gc_paused
from reports.statistics import sign_flip_p_value, sign_flip_p_values, t_interval, t_intervals


def _samples(seed: int, count: int, max_n: int) -> list[list[float]]:
    """Random samples of 0..max_n values: rounded accuracies (ties), a few repeated values, spreads over many
    magnitudes and signs."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        n = rng.randint(0, max_n)
        kind = rng.random()
        if kind < 0.3:
            values = [round(rng.random(), rng.randint(1, 4)) for _ in range(n)]
        elif kind < 0.5:
            values = [rng.choice([0.1, 0.2, 0.0, -0.1, 1 / 3]) for _ in range(n)]
        else:
            values = [rng.uniform(-1, 1) * 10 ** rng.randint(-8, 2) for _ in range(n)]
        samples.append(values)
    return samples


def _reference_interval(values: list[float], confidence: float = 0.95) -> tuple[object, ...]:
    """One sample's interval as the report computed it before batching: numpy on the sample alone."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return (0, None, None, None, None)
    mean = float(data.mean())
    if data.size == 1:
        return (1, mean, None, None, None)
    std = float(data.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, data.size - 1)) * std / math.sqrt(data.size)
    return (data.size, mean, std, mean - half, mean + half)


def _brute_force_p(diffs: list[float]) -> float:
    """Every sign pattern summed left to right (the doubling's order), counted against |sum| - tolerance."""
    observed = abs(float(np.sum(diffs)))
    tolerance = 1e-9 * max(float(np.abs(diffs).sum()), np.finfo(float).tiny)
    hits = 0
    for signs in itertools.product((1.0, -1.0), repeat=len(diffs)):
        total = 0.0
        for sign, d in zip(signs, diffs, strict=True):
            total = total + sign * d
        hits += abs(total) >= observed - tolerance
    return hits / 2 ** len(diffs)


def test_sample_std_by_hand() -> None:
    assert sample_std([1.0, 2.0, 4.0]) == math.sqrt(7 / 3)  # mean 7/3, squares 16/9 + 1/9 + 25/9 = 42/9, / 2
    assert sample_std([0.5, 0.5, 0.5]) == 0.0
    assert sample_std([1, 3]) == math.sqrt(2)
    assert sample_std([0.1, 0.2]) == statistics.stdev([0.1, 0.2])
    with pytest.raises(ValueError, match="at least 2"):
        sample_std([1.0])


def test_sample_std_is_statistics_stdev_to_the_bit() -> None:
    samples = [s for s in _samples(1, 3000, 12) if len(s) >= 2]
    samples += [[1e-300, 2e-300, 5e-301], [1e300, -1e300, 3.0], [2.0**-1074, 0.0, 1.0]]
    assert [sample_std(s) for s in samples] == [statistics.stdev(s) for s in samples]


def test_t_intervals_by_hand() -> None:
    t = float(stats.t.ppf(0.975, 2))
    (empty, one, three) = t_intervals([[], [0.4], [1.0, 2.0, 3.0]])
    assert (empty.n, empty.mean, empty.low) == (0, None, None)
    assert (one.n, one.mean, one.std, one.high) == (1, 0.4, None, None)
    assert (three.n, three.mean, three.std) == (3, 2.0, 1.0)
    assert three.low == pytest.approx(2.0 - t / math.sqrt(3)) and three.high == pytest.approx(2.0 + t / math.sqrt(3))
    assert t_interval([5.0, 5.0]).low == t_interval([5.0, 5.0]).high == 5.0  # no spread: a zero-width interval


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_t_intervals_equal_the_per_sample_reference(confidence: float) -> None:
    samples = _samples(2, 3000, 12)
    found = [(i.n, i.mean, i.std, i.low, i.high) for i in t_intervals(samples, confidence)]
    assert found == [_reference_interval(s, confidence) for s in samples]
    with pytest.raises(ValueError, match="confidence"):
        t_intervals([[1.0, 2.0]], 1.0)


def test_sign_flip_p_values_by_hand() -> None:
    found = sign_flip_p_values(
        [[], [0.1] * 3, [0.1] * 5, [0.2] * 10, [0.0, 0.0, 0.0], [0.1, -0.1, 0.0], [0.0, 0.0, 1.0]]
    )
    # identical differences: only the all-plus and all-minus patterns reach the sum; zeros and ties: every pattern
    assert found == [None, 0.25, 0.0625, 2 / 1024, 1.0, 1.0, 1.0]
    # 2 ± 1 ± 1 ± 1 reaches |5| once, and its negation once: 2 of 16; 1 + 1 - 1: every |sum| is 1 or 3
    assert sign_flip_p_values([[2.0, 1.0, 1.0, 1.0], [1.0, 1.0, -1.0]]) == [0.125, 1.0]


def test_sign_flip_p_values_equal_the_reference() -> None:
    samples = [s for s in _samples(3, 4000, 10) if s]
    samples += [[0.1, 0.1, -0.1, 0.0, 0.2, 0.2, 0.0, -0.3, 0.1, 0.1], [1e-12, 0.0, -1e-12, 1e-12]]
    found = sign_flip_p_values(samples)
    assert found == [sign_flip_p_value(s) for s in samples]
    small = [s for s in samples if len(s) <= 7][:300]
    assert sign_flip_p_values(small) == [_brute_force_p(s) for s in small]


def test_sign_flip_p_values_past_the_exact_limit_draw() -> None:
    diffs = [0.01 * (i % 5) - 0.015 for i in range(23)]
    assert sign_flip_p_values([diffs]) == [sign_flip_p_value(diffs)]


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_restores_the_collector(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        with gc_paused():
            assert not gc.isenabled()
            with gc_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), gc_paused():
            raise RuntimeError("a failing table")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
