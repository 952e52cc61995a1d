"""Tests for ``reports.statistics`` and its use in the leaderboard: t-intervals, paired comparisons, missing runs.

Expected numbers are worked out by hand; t quantiles are written as constants (from a t table).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from test_reports import result_dict, write_run

from reports import (
    Interval,
    PairedComparison,
    collect_runs,
    missing_seeds,
    paired_comparisons,
    render_csv,
    render_markdown,
    sign_flip_p_value,
    t_interval,
    write_leaderboard,
)

T_975_2 = 4.302653  # t_{0.975, 2}: 95% two-sided, 3 values
T_95_2 = 2.919986  # t_{0.95, 2}: 90% two-sided, 3 values
MINORITY = "test_minority_acc"

# Minority accuracy at ratio 0.01 per method and seed. ce is the baseline; differences method - ce per seed:
CE = {0: 0.5, 1: 0.6, 2: 0.7}
PAIRED_VALUES: dict[str, dict[int, float]] = {
    "ce": CE,
    "small": {0: 0.6, 1: 0.8, 2: 1.0},  # +0.1, +0.2, +0.3: mean 0.2, s 0.1
    "sure": {0: 0.7, 1: 0.81, 2: 0.92},  # +0.2, +0.21, +0.22: mean 0.21, s 0.01
    "worse": {0: 0.3, 1: 0.39, 2: 0.48},  # -0.2, -0.21, -0.22: mean -0.21, s 0.01
    "extra": {0: 0.7, 1: 0.81, 2: 0.92, 3: 0.0},  # as "sure", plus seed 3 that ce does not have
    "partial": {0: 0.6, 1: 0.7},  # +0.1, +0.1 and a failed seed 2: only 2 pairs
}


@pytest.fixture()
def paired_dir(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for method, values in PAIRED_VALUES.items():
        for seed, value in values.items():
            write_run(root, f"{method}_r0.01_s{seed}", result_dict(method, 0.01, seed, value))
    write_run(root, "partial_r0.01_s2", result_dict("partial", 0.01, 2, None, status="failed"))
    for seed in range(3):  # ratio 1: no ce run at all, so nothing is compared there
        write_run(root, f"sure_r1_s{seed}", result_dict("sure", 1.0, seed, 0.9))
    return root


def comparison(comparisons: list[PairedComparison], method: str, baseline: str = "ce") -> PairedComparison:
    (match,) = [c for c in comparisons if c.method == method and c.baseline == baseline]
    return match


def paired_row(markdown: str, baseline: str, method: str) -> list[str]:
    """Cells of row ``method`` in the first "Paired difference vs baseline" table."""
    table = markdown.split(f"#### Paired difference vs {baseline}\n\n", 1)[1].split("\n\n", 1)[0]
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == method:
            return cells[1:]
    raise AssertionError(f"no row {method!r} vs {baseline!r}")


# --- t_interval ----------------------------------------------------------------------------------------------------


def test_t_interval_three_values() -> None:
    interval = t_interval([0.5, 0.7, 0.9])
    half_width = T_975_2 * 0.2 / math.sqrt(3)  # = 0.496827
    assert half_width == pytest.approx(0.496827, abs=1e-6)
    assert interval.n == 3
    assert interval.mean == pytest.approx(0.7)
    assert interval.std == pytest.approx(0.2)
    assert interval.low == pytest.approx(0.7 - 0.496827, abs=1e-6)
    assert interval.high == pytest.approx(0.7 + 0.496827, abs=1e-6)


def test_t_interval_other_confidence() -> None:
    interval = t_interval([0.5, 0.7, 0.9], confidence=0.90)
    half_width = T_95_2 * 0.2 / math.sqrt(3)  # = 0.337171
    assert interval.low == pytest.approx(0.7 - half_width, abs=1e-6)
    assert interval.high == pytest.approx(0.7 + half_width, abs=1e-6)


def test_t_interval_one_and_zero_values() -> None:
    assert t_interval([0.6]) == Interval(n=1, mean=0.6, std=None, low=None, high=None)
    assert t_interval([]) == Interval(n=0, mean=None, std=None, low=None, high=None)


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95])
def test_t_interval_rejects_bad_confidence(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence"):
        t_interval([0.1, 0.2], confidence=confidence)


# --- exact sign-flip test -----------------------------------------------------------------------------------------
# p = share of the 2^n sign assignments s with |sum s_i d_i| >= |sum d_i|, counted by hand below.


@pytest.mark.parametrize(
    ("diffs", "p_value"),
    [
        ([0.02] * 3, 2 / 8),  # identical differences: only all-plus and all-minus reach the observed sum
        ([0.02] * 5, 2 / 32),  # 0.0625: still above 5%
        ([0.02] * 10, 2 / 1024),
        ([-0.02] * 10, 2 / 1024),  # two-sided
        ([0.62 - 0.60, 0.72 - 0.70, 0.82 - 0.80], 2 / 8),  # the same, with the rounding of real differences
        ([0.1, 0.1, 0.0], 4 / 8),  # a zero difference: its sign does not matter, the two others must agree
        ([0.0, 0.0, 0.0], 1.0),  # no difference at all
        ([0.1, -0.2, 0.3], 6 / 8),  # sum 0.2; |sums| of the 8 assignments: 0.6 0 0.2 0.4 0.4 0.2 0 0.6
        # sum 0.95; flipping a set F subtracts 2 sum_F d: reaching +0.95 needs sum_F d <= 0 (F empty or {-0.05}),
        # reaching -0.95 is the mirror image: 4 of 32
        ([0.4, 0.3, 0.2, 0.1, -0.05], 4 / 32),
        ([0.1] * 9 + [-0.05], 4 / 1024),  # the same argument with nine equal differences: 4 of 1024
        # ties: five +0.1 and one -0.1, sum 0.4. +0.4 or more: F empty, {-0.1}, or {-0.1, one +0.1} (5): 7;
        # -0.4 or less: four or five +0.1 without the -0.1 (5 + 1), or all six (1): 7. 14 of 64
        ([0.1, 0.1, 0.1, -0.1, 0.1, 0.1], 14 / 64),
    ],
)
def test_sign_flip_p_value_by_hand(diffs: list[float], p_value: float) -> None:
    assert sign_flip_p_value(diffs) == pytest.approx(p_value, abs=1e-12)


def test_sign_flip_p_value_monte_carlo_beyond_the_exact_limit() -> None:
    assert sign_flip_p_value([]) is None
    drawn = sign_flip_p_value([0.1, -0.2, 0.3], exact_max_n=2, draws=20_000)
    assert drawn == pytest.approx(0.75, abs=0.02)  # standard error 0.003
    assert sign_flip_p_value([0.1, -0.2, 0.3], exact_max_n=2, draws=20_000) == drawn  # seeded
    # 30 identical differences: the exact p (2 / 2^30) is below anything 100,000 draws can show, so (1 + 0) / (1 + N)
    assert sign_flip_p_value([0.02] * 30) == pytest.approx(1 / 100_001)


def _write_paired(root: Path, diffs: list[float], method: str = "m") -> None:
    """ce at 0.5 + 0.01 * seed and ``method`` = ce + diffs[seed], at ratio 0.01."""
    for seed, diff in enumerate(diffs):
        write_run(root, f"ce_s{seed}", result_dict("ce", 0.01, seed, 0.5 + 0.01 * seed))
        write_run(root, f"{method}_s{seed}", result_dict(method, 0.01, seed, 0.5 + 0.01 * seed + diff))


@pytest.mark.parametrize(
    ("diffs", "p_value", "verdict", "cell"),
    [
        ([0.02] * 3, 0.25, "no difference shown", "+0.020 [+0.020, +0.020] p=0.25 (n=3)"),
        ([0.02] * 5, 0.0625, "no difference shown", "+0.020 [+0.020, +0.020] p=0.0625 (n=5)"),
        ([0.02] * 10, 2 / 1024, "better", "+0.020 [+0.020, +0.020] p=0.00195 ▲ (n=10)"),
        ([-0.02] * 10, 2 / 1024, "worse", "-0.020 [-0.020, -0.020] p=0.00195 ▼ (n=10)"),
        ([0.1] * 9 + [-0.05], 4 / 1024, "better", "+0.085 [+0.051, +0.119] p=0.00391 ▲ (n=10)"),
        ([0.1, 0.1, 0.1, -0.1, 0.1, 0.1], 14 / 64, "no difference shown", "+0.067 [-0.019, +0.152] p=0.219 (n=6)"),
    ],
)
def test_only_the_exact_test_marks_a_difference(
    tmp_path: Path, diffs: list[float], p_value: float, verdict: str, cell: str
) -> None:
    _write_paired(tmp_path, diffs)
    (found,) = paired_comparisons(collect_runs(tmp_path).records, MINORITY, baselines=("ce",))
    assert found.p_value == pytest.approx(p_value) and found.verdict == verdict
    assert paired_row(render_markdown(collect_runs(tmp_path), metrics=[MINORITY]), "ce", "m") == [cell]
    files = write_leaderboard(tmp_path, tmp_path / "out")
    rows = list(csv.DictReader(io.StringIO(files.comparisons_path.read_text(encoding="utf-8"))))
    (row,) = [r for r in rows if r["method"] == "m" and r["metric"] == MINORITY]
    assert row["verdict"] == verdict and float(row["p_exact"]) == pytest.approx(p_value, rel=1e-5)


def test_the_exact_level_follows_the_confidence(tmp_path: Path) -> None:
    _write_paired(tmp_path, [0.02] * 5)  # p = 0.0625: not at 5%, but at 10%
    records = collect_runs(tmp_path).records
    (at_90,) = paired_comparisons(records, MINORITY, baselines=("ce",), confidence=0.90)
    assert at_90.verdict == "better"
    legend = render_markdown(collect_runs(tmp_path), metrics=[MINORITY]).split("## ", 1)[0]
    assert "exact sign-flip" in legend and "p ≤ 0.05" in legend and "below 6 paired seeds" in legend


# --- paired comparisons --------------------------------------------------------------------------------------------


def test_paired_comparison_intervals_and_verdicts(paired_dir: Path) -> None:
    comparisons = paired_comparisons(collect_runs(paired_dir).records, MINORITY)
    # ratio 1 has no ce run and there is no os run anywhere: only ratio 0.01 vs ce
    assert {(c.ratio, c.baseline) for c in comparisons} == {(0.01, "ce")}
    assert [c.method for c in comparisons] == ["extra", "partial", "small", "sure", "worse"]

    small = comparison(comparisons, "small")
    assert (small.task, small.backbone, small.metric, small.n_pairs) == ("fine", "resnet18", MINORITY, 3)
    assert small.mean_diff == pytest.approx(0.2)
    assert small.low == pytest.approx(0.2 - 0.248414, abs=1e-6)  # 4.302653 * 0.1 / sqrt(3) = 0.248414
    assert small.high == pytest.approx(0.2 + 0.248414, abs=1e-6)
    assert small.verdict == "no difference shown"

    sure = comparison(comparisons, "sure")
    assert sure.mean_diff == pytest.approx(0.21)
    assert sure.low == pytest.approx(0.21 - 0.0248414, abs=1e-6)  # 4.302653 * 0.01 / sqrt(3) = 0.0248414
    assert sure.high == pytest.approx(0.21 + 0.0248414, abs=1e-6)
    # a narrow interval above 0, but 3 pairs cannot reach 5%: all positive is 2 of the 8 sign assignments
    assert sure.p_value == pytest.approx(0.25)
    assert sure.verdict == "no difference shown"

    worse = comparison(comparisons, "worse")
    assert worse.mean_diff == pytest.approx(-0.21)
    assert worse.high == pytest.approx(-0.21 + 0.0248414, abs=1e-6)
    assert worse.p_value == pytest.approx(0.25)
    assert worse.verdict == "no difference shown"


def test_paired_comparison_pairs_only_matching_seeds(paired_dir: Path) -> None:
    comparisons = paired_comparisons(collect_runs(paired_dir).records, MINORITY)
    extra = comparison(comparisons, "extra")  # seed 3 has no ce run: left out, so identical to "sure"
    sure = comparison(comparisons, "sure")
    assert extra.n_pairs == 3
    assert (extra.mean_diff, extra.low, extra.high, extra.p_value) == (sure.mean_diff, sure.low, sure.high, 0.25)
    assert extra.verdict == sure.verdict


def test_paired_comparison_too_few_seeds(paired_dir: Path) -> None:
    partial = comparison(paired_comparisons(collect_runs(paired_dir).records, MINORITY), "partial")
    assert partial.n_pairs == 2  # the failed seed 2 is not paired
    assert partial.mean_diff == pytest.approx(0.1)
    assert partial.verdict == "too few seeds (n=2)" and partial.p_value is None
    # with min_pairs=2 the same two pairs are tested: identical differences give a zero-width interval above 0, but
    # the sign-flip test's p is 2 of 4 assignments = 0.5, so no difference is shown
    relaxed = comparison(paired_comparisons(collect_runs(paired_dir).records, MINORITY, min_pairs=2), "partial")
    assert relaxed.low == pytest.approx(0.1) and relaxed.high == pytest.approx(0.1)
    assert relaxed.p_value == pytest.approx(0.5) and relaxed.verdict == "no difference shown"


def test_paired_comparison_against_os_and_both_directions(tmp_path: Path) -> None:
    for seed, (ce, os_) in enumerate([(0.5, 0.6), (0.6, 0.8), (0.7, 1.0)]):
        write_run(tmp_path, f"ce_s{seed}", result_dict("ce", 0.1, seed, ce))
        write_run(tmp_path, f"os_s{seed}", result_dict("os", 0.1, seed, os_))
    comparisons = paired_comparisons(collect_runs(tmp_path).records, MINORITY)
    assert [(c.method, c.baseline) for c in comparisons] == [("os", "ce"), ("ce", "os")]
    os_vs_ce, ce_vs_os = comparisons
    assert os_vs_ce.mean_diff == pytest.approx(0.2) and ce_vs_os.mean_diff == pytest.approx(-0.2)
    assert ce_vs_os.low == pytest.approx(-os_vs_ce.high) and ce_vs_os.high == pytest.approx(-os_vs_ce.low)

    markdown = render_markdown(collect_runs(tmp_path), metrics=[MINORITY])
    assert paired_row(markdown, "ce", "os") == ["+0.200 [-0.048, +0.448] p=0.25 (n=3)"]
    assert paired_row(markdown, "os", "ce") == ["-0.200 [-0.448, +0.048] p=0.25 (n=3)"]


# --- missing runs --------------------------------------------------------------------------------------------------


def test_missing_seeds_counts_expected_but_absent(tmp_path: Path) -> None:
    for seed in range(3):
        write_run(tmp_path, f"ce_r1_s{seed}", result_dict("ce", 1.0, seed, 0.8))
    for seed in range(2):  # seed 2 never ran
        write_run(tmp_path, f"ce_r0.1_s{seed}", result_dict("ce", 0.1, seed, 0.5))
    write_run(tmp_path, "os_r1_s0", result_dict("os", 1.0, 0, 0.9))
    write_run(tmp_path, "os_r1_s1", result_dict("os", 1.0, 1, None, status="failed"))  # failed: not missing
    # os at ratio 0.1: no run at all; another backbone with seed 5 only must not affect resnet18
    write_run(tmp_path, "vit_s5", result_dict("ce", 1.0, 5, 0.7, backbone="vit_tiny"))
    collection = collect_runs(tmp_path)

    assert missing_seeds(collection.records) == {
        ("fine", "resnet18", "ce", 1.0): (),
        ("fine", "resnet18", "ce", 0.1): (2,),
        ("fine", "resnet18", "os", 1.0): (2,),
        ("fine", "resnet18", "os", 0.1): (0, 1, 2),
        ("fine", "vit_tiny", "ce", 1.0): (),
    }

    markdown = render_markdown(collection, metrics=[MINORITY])
    resnet = markdown.split("## fine — vit_tiny", 1)[0]
    assert "| ce | 0.800 ± 0.000 (n=3) | **0.500 ± 0.000 (n=2)** ?1 |" in resnet
    assert "| os | **0.900 (n=1)** ✗1 ?1 | — ?3 |" in resnet
    assert "missing runs: 5" in markdown

    rows = list(csv.DictReader(io.StringIO(render_csv(collection, metrics=[MINORITY]))))
    by_cell = {(r["backbone"], r["method"], r["ratio"]): r for r in rows}
    assert [by_cell[("resnet18", m, r)]["n_missing"] for m in ("ce", "os") for r in ("1", "0.1")] == [
        "0",
        "1",
        "1",
        "3",
    ]
    absent = by_cell[("resnet18", "os", "0.1")]  # a cell without runs still gets a row
    assert (absent["n"], absent["n_failed"], absent["test_minority_acc_mean"]) == ("0", "0", "")
    assert (absent["majority_class"], absent["minority_class"]) == ("1", "8")
    assert by_cell[("resnet18", "os", "1")]["n_failed"] == "1"
    assert by_cell[("vit_tiny", "ce", "1")]["n_missing"] == "0"


# --- report integration --------------------------------------------------------------------------------------------


def test_markdown_paired_tables(paired_dir: Path) -> None:
    markdown = render_markdown(collect_runs(paired_dir))
    assert markdown.count("Intervals: 95% Student-t interval over seeds") == 2  # under each metric table
    assert markdown.count("#### Paired difference vs ce") == 1  # minority accuracy only
    assert "#### Paired difference vs os" not in markdown  # no os runs
    minority = markdown.split("### Minority-class accuracy", 1)[1].split("### Balanced accuracy", 1)[0]
    assert "#### Paired difference vs ce" in minority

    # columns: ratio 1 (no ce there), ratio 0.01
    assert paired_row(markdown, "ce", "small") == ["—", "+0.200 [-0.048, +0.448] p=0.25 (n=3)"]
    assert paired_row(markdown, "ce", "sure") == ["—", "+0.210 [+0.185, +0.235] p=0.25 (n=3)"]  # 3 pairs: no marker
    assert paired_row(markdown, "ce", "worse") == ["—", "-0.210 [-0.235, -0.185] p=0.25 (n=3)"]
    assert paired_row(markdown, "ce", "extra") == ["—", "+0.210 [+0.185, +0.235] p=0.25 (n=3)"]
    assert paired_row(markdown, "ce", "partial") == ["—", "+0.100 (n=2: too few seeds)"]  # diffs +0.1, +0.1
    with pytest.raises(AssertionError):
        paired_row(markdown, "ce", "ce")  # the baseline has no row of its own
    assert "▲" in markdown.split("## ", 1)[0] and "▼" in markdown.split("## ", 1)[0]  # explained in the legend


def test_write_leaderboard_writes_comparisons_csv(paired_dir: Path, tmp_path: Path) -> None:
    files = write_leaderboard(paired_dir, tmp_path / "out")
    assert files.comparisons_path == tmp_path / "out" / "comparisons.csv"
    reader = csv.DictReader(io.StringIO(files.comparisons_path.read_text(encoding="utf-8")))
    assert reader.fieldnames == [
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
        "p_exact",
    ]
    rows = list(reader)
    assert {r["metric"] for r in rows} == {"test_minority_acc", "test_balanced_acc"}
    by_key = {(r["method"], r["metric"]): r for r in rows}
    sure = by_key[("sure", MINORITY)]
    assert (sure["task"], sure["backbone"], sure["ratio"], sure["baseline"]) == ("fine", "resnet18", "0.01", "ce")
    assert sure["n_pairs"] == "3" and sure["verdict"] == "no difference shown" and sure["p_exact"] == "0.25"
    assert float(sure["mean_diff"]) == pytest.approx(0.21, abs=1e-6)
    assert float(sure["low"]) == pytest.approx(0.21 - 0.0248414, abs=1e-6)
    assert float(sure["high"]) == pytest.approx(0.21 + 0.0248414, abs=1e-6)
    balanced = by_key[("small", "test_balanced_acc")]  # balanced = (minority + 1) / 2: differences halve
    assert float(balanced["mean_diff"]) == pytest.approx(0.1, abs=1e-6)
    assert float(balanced["low"]) == pytest.approx(0.1 - 0.248414 / 2, abs=1e-6)
    assert balanced["verdict"] == "no difference shown"
    partial = by_key[("partial", MINORITY)]
    assert partial["n_pairs"] == "2" and partial["verdict"] == "too few seeds (n=2)" and partial["p_exact"] == ""
