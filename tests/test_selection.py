"""Sweeps chosen on validation (reports.selection): a made-up result set where validation and test disagree."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from test_reports import result_dict, write_run

from reports import collect_runs, paired_comparisons
from reports.collect import variant_label, variant_text
from reports.selection import (
    SweepCandidate,
    choose,
    parse_select_metric,
    select_variants,
    sweep_table,
    variant_sort_key,
)

# fscl+os at ratio 0.1, seeds 0, 1, 2: (validation minority accuracy, test minority accuracy) per seed.
# Validation means: 0.03 -> 0.7, 0.1 -> (0.8 + 0.8 + 0.9) / 3 = 0.8333, 0.3 -> 0.8: validation chooses 0.1.
# Test means:       0.03 -> 0.9, 0.1 -> 0.6,                            0.3 -> 0.8: test would choose 0.03.
SWEEP: dict[float, list[tuple[float, float]]] = {
    0.03: [(0.6, 0.9), (0.7, 0.9), (0.8, 0.9)],
    0.1: [(0.8, 0.5), (0.8, 0.6), (0.9, 0.7)],
    0.3: [(0.7, 0.8), (0.8, 0.8), (0.9, 0.8)],
}


def sweep_run(
    root: Path,
    method: str,
    ratio: float,
    seed: int,
    val: float | None,
    test: float,
    val_balanced: float | None = None,
    **sweep: Any,
) -> None:
    """A finished binary run with minority accuracy ``test`` and validation minority accuracy ``val`` (None: the
    run has no validation split), validation balanced accuracy ``val_balanced`` (default (val + 1) / 2: the majority
    always right); ``sweep`` its swept settings."""
    payload = result_dict(method, ratio, seed, test, sweep=sweep)
    if val is not None:
        payload["metrics"]["val_minority_acc"] = val
        payload["metrics"]["val_balanced_acc"] = (val + 1.0) / 2 if val_balanced is None else val_balanced
    name = variant_label(method, tuple(sorted(sweep.items())))
    write_run(root, f"fine__resnet18__{name}__r{ratio:g}__s{seed}", payload)


def write_sweep(root: Path, ratio: float = 0.1, validation: bool = True) -> None:
    for weight, pairs in SWEEP.items():
        for seed, (val, test) in enumerate(pairs):
            sweep_run(root, "fscl+os", ratio, seed, val if validation else None, test, sim_weight=weight)
    for seed in range(3):
        sweep_run(root, "ce", ratio, seed, 0.5 if validation else None, 0.5)  # no sweep: passes through


def test_collect_reads_the_sweep_and_keeps_settings_apart(tmp_path: Path) -> None:
    write_sweep(tmp_path)
    collection = collect_runs(tmp_path)
    assert collection.warnings == []  # same seed, other setting: no duplicate
    assert len(collection.records) == 12
    record = next(r for r in collection.records if r.variant)
    assert record.method == "fscl+os"
    assert record.variant == (("sim_weight", 0.03),)
    assert record.label == "fscl+os[sim_weight=0.03]"
    assert variant_text((("b", 1e-05), ("a", "x"))) == "b=1e-05,a=x"  # as given: collect sorts


def test_a_bad_sweep_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    write_run(tmp_path, "a", result_dict("ce", 1.0, 0, 0.5, sweep=[1, 2]))
    write_run(tmp_path, "b", result_dict("ce", 1.0, 1, 0.5, sweep={"lr": [1, 2]}))
    collection = collect_runs(tmp_path)
    assert collection.records == []
    assert "'sweep' must be an object" in collection.warnings[0]
    assert "'sweep' value of 'lr'" in collection.warnings[1]


def test_the_choice_follows_validation_not_test(tmp_path: Path) -> None:
    write_sweep(tmp_path)
    selection = select_variants(collect_runs(tmp_path))
    (choice,) = selection.choices
    assert (choice.method, choice.ratio, choice.val_metric, choice.test_metric) == (
        "fscl+os",
        0.1,
        "val_minority_acc",
        "test_minority_acc",
    )
    assert choice.chosen == (("sim_weight", 0.1),)
    by_weight = {c.variant[0][1]: c for c in choice.candidates}
    assert list(by_weight) == [0.03, 0.1, 0.3]
    assert by_weight[0.1].val_mean == pytest.approx(2.5 / 3)
    assert by_weight[0.1].test_mean == pytest.approx(0.6)
    assert by_weight[0.03].val_mean == pytest.approx(0.7) and by_weight[0.03].test_mean == pytest.approx(0.9)
    assert by_weight[0.3].n == 3 and by_weight[0.3].n_failed == 0
    rows = [r for r in selection.collection.records if r.method == "fscl+os"]
    assert sorted(r.metrics["test_minority_acc"] for r in rows) == [0.5, 0.6, 0.7]  # the chosen setting's runs
    assert {r.variant for r in rows} == {(("sim_weight", 0.1),)}
    assert len(selection.left_out) == 6 and len(selection.collection.records) == 6  # 3 ce + 3 chosen
    assert selection.collection.warnings == []


def test_paired_comparisons_use_the_chosen_setting(tmp_path: Path) -> None:
    write_sweep(tmp_path)
    records = select_variants(collect_runs(tmp_path)).collection.records
    (comparison,) = [c for c in paired_comparisons(records, "test_minority_acc") if c.method == "fscl+os"]
    # chosen sim_weight=0.1 minus ce (0.5 each seed): 0.0, 0.1, 0.2 -> mean 0.1
    assert comparison.n_pairs == 3 and comparison.mean_diff == pytest.approx(0.1)


def test_another_select_metric_and_a_choice_per_ratio(tmp_path: Path) -> None:
    write_sweep(tmp_path, ratio=0.1)
    # ratio 1, validation minority / balanced accuracy: 0.03 -> 0.9 / 0.6, 0.1 -> 0.9 / 0.6, 0.3 -> 0.2 / 0.95
    for weight in SWEEP:
        for seed in range(2):
            val, balanced = (0.2, 0.95) if weight == 0.3 else (0.9, 0.6)
            sweep_run(tmp_path, "fscl+os", 1.0, seed, val, 0.7, balanced, sim_weight=weight)
    for seed in range(2):
        sweep_run(tmp_path, "ce", 1.0, seed, 0.5, 0.5)
    chosen = {c.ratio: c.chosen for c in select_variants(collect_runs(tmp_path)).choices}
    assert chosen == {1.0: (("sim_weight", 0.03),), 0.1: (("sim_weight", 0.1),)}  # 0.03 ties 0.1 at 0.9: first
    by_balanced = select_variants(collect_runs(tmp_path), "val_balanced_acc").choices
    # ratio 0.1: val_balanced_acc = (val_minority + 1) / 2 is monotone in it, so the same choice
    assert {c.ratio: c.chosen for c in by_balanced} == {1.0: (("sim_weight", 0.3),), 0.1: (("sim_weight", 0.1),)}
    assert {c.test_metric for c in by_balanced} == {"test_balanced_acc"}
    assert [c.n for c in by_balanced[0].candidates] == [2, 2, 2]


def test_ties_go_to_the_first_setting_in_numeric_order() -> None:
    # 1e-05 < 0.001 as numbers though "0.001" < "1e-05" as text
    variants = sorted([(("lr", 0.001),), (("lr", 1e-05),)], key=variant_sort_key)
    assert variants == [(("lr", 1e-05),), (("lr", 0.001),)]
    tied = [SweepCandidate(v, 3, 0, 0.5, test) for v, test in zip(variants, (0.1, 0.9), strict=True)]
    assert choose(tied) == (("lr", 1e-05),)
    assert choose([SweepCandidate((("lr", 1.0),), 0, 3, None, None)]) is None
    # means equal in decimals but not in floats: fmean([0.1, 0.2]) = 0.15000000000000002 > fmean([0.15, 0.15])
    first, second = statistics.fmean([0.15, 0.15]), statistics.fmean([0.1, 0.2])
    assert second > first
    assert choose([SweepCandidate(v, 2, 0, mean, None) for v, mean in zip(variants, (first, second), strict=True)]) == (
        ("lr", 1e-05),
    )


def test_without_validation_each_setting_is_its_own_row(tmp_path: Path) -> None:
    write_sweep(tmp_path, validation=False)
    selection = select_variants(collect_runs(tmp_path))
    assert selection.choices == () and selection.left_out == ()
    methods = sorted({r.method for r in selection.collection.records})
    assert methods == ["ce", "fscl+os[sim_weight=0.03]", "fscl+os[sim_weight=0.1]", "fscl+os[sim_weight=0.3]"]
    (warning,) = selection.collection.warnings
    assert warning.startswith("fine — resnet18, fscl+os: settings sim_weight=0.03, sim_weight=0.1, sim_weight=0.3")
    assert "no validation metric val_minority_acc" in warning
    (note,) = (selection.notes or {})[("fine", "resnet18")]
    assert "no setting chosen" in note


def test_a_ratio_where_every_setting_failed_keeps_the_failures(tmp_path: Path) -> None:
    write_sweep(tmp_path)
    for weight in (0.03, 0.1):
        write_run(
            tmp_path,
            f"fine__resnet18__fscl+os[sim_weight={weight:g}]__r0.01__s0",
            result_dict("fscl+os", 0.01, 0, None, status="failed", sweep={"sim_weight": weight}),
        )
    selection = select_variants(collect_runs(tmp_path))
    failed = {c.ratio: c for c in selection.choices}[0.01]
    assert failed.chosen is None and [c.n_failed for c in failed.candidates] == [1, 1]
    assert sum(r.status == "failed" for r in selection.collection.records) == 2


@pytest.mark.parametrize(
    ("name", "expected"),
    [("balanced_acc", "val_balanced_acc"), ("val_minority_acc", "val_minority_acc"), (" map5 ", "val_map5")],
)
def test_parse_select_metric(name: str, expected: str) -> None:
    assert parse_select_metric(name) == expected


@pytest.mark.parametrize(("name", "message"), [("test_balanced_acc", "never on test"), ("loss", "unknown")])
def test_parse_select_metric_refuses_test_and_unknown_names(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        parse_select_metric(name)
    assert "\n" not in str(error.value)


def test_sweep_table_marks_the_chosen_setting(tmp_path: Path) -> None:
    write_sweep(tmp_path)
    lines = sweep_table(select_variants(collect_runs(tmp_path)).choices, ["ce", "fscl+os"])
    assert lines[0].startswith("| method | ratio | setting | validation mean (`val_minority_acc`) |")
    assert lines[2:] == [
        "| fscl+os | 0.1 | sim_weight=0.03 | 0.700 | 0.900 | 3 |  |",
        "| fscl+os | 0.1 | **sim_weight=0.1** | 0.833 | 0.600 | 3 | ✓ |",
        "| fscl+os | 0.1 | sim_weight=0.3 | 0.800 | 0.800 | 3 |  |",
    ]


def test_a_sweep_recorded_only_in_the_config_is_still_the_variant(tmp_path: Path) -> None:
    """The first swept runs wrote ``sweep`` inside ``config`` only: two values of one method are two variants, not
    duplicates of one run."""
    for beta in (0.99, 0.999):
        payload = result_dict("cb", 0.1, 0, 0.5)
        payload["config"] = {"sweep": {"cb_beta": beta}, "cb_beta": beta}
        folder = tmp_path / f"fine__resnet18__cb[cb_beta={beta:g}]__r0.1__s0"
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps(payload))
    collection = collect_runs(tmp_path)
    assert collection.warnings == []
    assert sorted(r.variant for r in collection.records) == [(("cb_beta", 0.99),), (("cb_beta", 0.999),)]
