"""The report's tables for issue 17: deployment and calibration blocks (bold by direction), captions that say what ±
is, sweep tables and rows, derived rows (post-hoc, ensembles) apart from the run counts, the CSV's new columns."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_reports import result_dict, table_row, write_run
from test_selection import write_sweep

from reports import CellStats, collect_runs, render_csv, render_markdown, write_report
from reports.aggregate import method_sort_key
from reports.collect import Collection
from reports.document import settings_table
from reports.leaderboard import (
    CALIBRATION_TITLE,
    DEPLOYMENT_TITLE,
    ReportRuns,
    _best_means,
    _format_cell,
    prepare_runs,
)
from reports.statistics import missing_seeds

ECE = "Expected calibration error (15 bins; lower is better)"
FALSE_ALARMS = "False alarms per true minority detection at the natural frequency (lower is better)"
PRECISION = "Minority precision at the natural frequency"

# per method, seeds 0 and 1 at ratio 0.1: (test_ece, test_deploy_precision, test_deploy_false_alarms)
# ECE means: ce 0.11, os 0.06 (lowest: bold), fscl+os 0.2.
# precision means: ce 0.6 (highest: bold), os 0.4, fscl+os 0.5.
# false alarms: ce (1.2 + 1.4) / 2 = 1.30 ± 0.14, os (1.304 + 1.296) / 2 = 1.30 ± 0.01: equal at the 2 decimals
# shown, both lowest: both bold; fscl+os 2.50 ± 0.71 (sd of 2 and 3 = 0.7071).
DEPLOYED: dict[str, list[tuple[float, float, float]]] = {
    "ce": [(0.10, 0.5, 1.2), (0.12, 0.7, 1.4)],
    "os": [(0.05, 0.4, 1.304), (0.07, 0.4, 1.296)],
    "fscl+os": [(0.2, 0.5, 2.0), (0.2, 0.5, 3.0)],
}


def write_deployed(root: Path) -> None:
    for method, seeds in DEPLOYED.items():
        for seed, (ece, precision, false_alarms) in enumerate(seeds):
            payload = result_dict(method, 0.1, seed, 0.5)
            payload["metrics"].update(
                test_ece=ece,
                test_nll=0.3,
                test_brier=0.2,
                test_deploy_precision=precision,
                test_deploy_recall=0.5,
                test_deploy_f1=0.5,
                test_deploy_false_alarms=false_alarms,
                test_minority_ap=0.7,
            )
            write_run(root, f"fine__resnet18__{method}__r0.1__s{seed}", payload)


def section_block(markdown: str, title: str) -> str:
    """The text of the block ``### title`` up to the next ``### `` heading (or the footer)."""
    return markdown.split(f"### {title}\n\n", 1)[1].split("\n### ", 1)[0].split("\n---\n", 1)[0]


def stats(mean: float | None, std: float | None = None, n: int = 2) -> CellStats:
    return CellStats("t", "b", "m", 1.0, "x", n, mean, std, 0)


def test_best_means_by_direction_and_displayed_decimals() -> None:
    cells = [stats(0.1234), stats(0.1236), None, stats(None, n=0), stats(0.5)]
    assert _best_means(cells) == {4}  # highest
    assert _best_means(cells, lower=True) == {0}  # 0.123 and 0.124 at 3 decimals: 0.1234 alone is lowest
    assert _best_means(cells[:2], lower=True, decimals=2) == {0, 1}  # both 0.12 at 2 decimals: a tie
    assert _best_means([None, stats(None, n=0)]) == set()
    assert (
        _format_cell(stats(12.375, 1.0), True, decimals=2) == "**12.38 ± 1.00 (n=2)**"
    )  # exact in binary: half to even


def test_deployment_and_calibration_blocks_bold_by_direction(tmp_path: Path) -> None:
    write_deployed(tmp_path)
    markdown = render_markdown(collect_runs(tmp_path))
    assert markdown.index(f"### {DEPLOYMENT_TITLE}") < markdown.index(f"### {CALIBRATION_TITLE}")
    assert markdown.index("### Balanced accuracy") < markdown.index(f"### {DEPLOYMENT_TITLE}")
    deployment = section_block(markdown, DEPLOYMENT_TITLE)
    assert "re-weighted to each run's training prior" in deployment
    assert f"#### {PRECISION}" in deployment and f"#### {ECE}" not in deployment
    assert f"#### {ECE}" in section_block(markdown, CALIBRATION_TITLE)
    assert table_row(markdown, ECE, "os") == ["**0.060 ± 0.014 (n=2)**"]  # lowest ECE is bold
    assert table_row(markdown, ECE, "ce") == ["0.110 ± 0.014 (n=2)"]
    assert table_row(markdown, PRECISION, "ce") == ["**0.600 ± 0.141 (n=2)**"]  # highest precision is bold
    assert table_row(markdown, PRECISION, "os") == ["0.400 ± 0.000 (n=2)"]
    assert table_row(markdown, FALSE_ALARMS, "ce") == ["**1.30 ± 0.14 (n=2)**"]
    assert table_row(markdown, FALSE_ALARMS, "os") == ["**1.30 ± 0.01 (n=2)**"]
    assert table_row(markdown, FALSE_ALARMS, "fscl+os") == ["2.50 ± 0.71 (n=2)"]
    caption = f"#### {ECE}\n\n" + section_block(markdown, CALIBRATION_TITLE).split(f"#### {ECE}\n\n", 1)[1]
    assert "Mean ± sample sd over seeds (n = finished runs); lower is better." in caption


def test_each_table_says_what_plus_minus_is_in_its_caption(tmp_path: Path) -> None:
    write_deployed(tmp_path)
    markdown = render_markdown(collect_runs(tmp_path))
    titled = markdown.count("\n### ") + markdown.count("\n#### ") - markdown.count("#### Paired difference")
    titled -= 2  # the two block headings carry block captions, not a table of their own
    assert markdown.count("Mean ± sample sd over seeds (n = finished runs)") == titled == 10
    after = markdown.split("### Minority-class accuracy\n\n", 1)[1].split("\n\n")
    assert after[1].startswith("Mean ± sample sd over seeds") and "`test_minority_acc_ci_low`" in after[1]


def test_a_given_deploy_prior_is_named_in_the_block(tmp_path: Path) -> None:
    write_deployed(tmp_path)
    runs = ReportRuns(collect_runs(tmp_path), deploy_prior={"1": 0.99, "8": 0.01})
    block = section_block(render_markdown(runs), DEPLOYMENT_TITLE)
    assert "re-weighted to the prior 1=0.99, 8=0.01 (--deploy-prior)" in block


def test_the_csv_has_the_deployment_and_calibration_columns(tmp_path: Path) -> None:
    write_deployed(tmp_path)
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(render_csv(collect_runs(tmp_path))))}
    assert float(rows["os"]["test_ece_mean"]) == pytest.approx(0.06)
    assert float(rows["ce"]["test_deploy_false_alarms_mean"]) == pytest.approx(1.3)
    assert rows["ce"]["test_minority_ap_mean"] == "0.7" and rows["ce"]["test_brier_mean"] == "0.2"
    assert "setting" not in rows["ce"]  # nothing swept


def test_methods_sort_with_their_settings_and_post_hoc_rows() -> None:
    methods = ["os+posthoc", "fscl+os[sim_weight=0.3]", "ce+posthoc", "os", "ce", "focal[focal_gamma=10]",
               "focal[focal_gamma=2]", "fscl+os[sim_weight=0.03]", "ens(methods)"]  # fmt: skip
    assert sorted(methods, key=method_sort_key) == [
        "ce",
        "ce+posthoc",
        "os",
        "os+posthoc",
        "fscl+os[sim_weight=0.03]",
        "fscl+os[sim_weight=0.3]",
        "focal[focal_gamma=2]",  # 2 < 10 by value
        "focal[focal_gamma=10]",
        "ens(methods)",
    ]


def posthoc_rows(collection: Collection, method: str, seeds: tuple[int, ...]) -> Collection:
    """``collection`` plus ``<method>+posthoc`` rows (as reports.posthoc makes them) for the runs of ``seeds``."""
    extra = [
        replace(r, method=f"{r.method}+posthoc", posthoc_tau=1.0, wall_seconds=None)
        for r in collection.records
        if r.method == method and r.seed in seeds
    ]
    return replace(collection, records=[*collection.records, *extra])


def test_post_hoc_rows_follow_their_method_and_count_as_derived(tmp_path: Path) -> None:
    for method in ("ce", "os"):
        for seed in range(3):
            write_run(tmp_path, f"fine__resnet18__{method}__r1__s{seed}", result_dict(method, 1.0, seed, 0.5))
    collection = posthoc_rows(collect_runs(tmp_path), "ce", (0, 1))  # seed 2: say its validation file was lost
    assert missing_seeds(collection.records)[("fine", "resnet18", "ce", 1.0)] == ()
    assert ("fine", "resnet18", "ce+posthoc", 1.0) not in missing_seeds(collection.records)
    markdown = render_markdown(collection, ["test_minority_acc"])
    rows = markdown.split("### Minority-class accuracy\n\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| ce", "| ce+posthoc", "| os"]
    assert table_row(markdown, "Minority-class accuracy", "ce+posthoc") == ["**0.500 ± 0.000 (n=2)**"]  # no ?1
    footer = markdown.rsplit("---\n\n", 1)[1]
    assert footer.startswith("Runs: 6 (6 finished, 0 failed) · missing runs: 0 ·")
    assert footer.rstrip().endswith("· post-hoc rows (per run): 2")
    (row,) = [r for r in csv.DictReader(io.StringIO(render_csv(collection))) if r["method"] == "ce+posthoc"]
    assert (row["n"], row["n_missing"]) == ("2", "0")
    assert "ce+posthoc" not in "\n".join(settings_table([r for r in collection.records if not r.derived]))


def test_the_report_with_a_sweep_chosen_on_validation(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    write_sweep(runs_dir)
    for seed in range(3):  # configs as bench run writes them: the swept value in each run's config
        for weight in (0.03, 0.1, 0.3):
            path = runs_dir / f"fine__resnet18__fscl+os[sim_weight={weight:g}]__r0.1__s{seed}" / "result.json"
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace('"sweep"', f'"config": {{"sim_weight": {weight}}}, "sweep"'), encoding="utf-8")
    files = write_report(runs_dir, tmp_path / "out")
    markdown = files.report_path.read_text(encoding="utf-8")
    assert table_row(markdown, "Minority-class accuracy", "fscl+os") == ["**0.600 ± 0.100 (n=3)**"]  # sim_weight=0.1
    sweeps = section_block(markdown, "Sweeps: settings chosen on validation")
    assert "| fscl+os | 0.1 | **sim_weight=0.1** | 0.833 | 0.600 | 3 | ✓ |" in sweeps
    assert "never used to choose" in sweeps
    assert "| sim_weight | 0.03, 0.1, 0.3 (swept) | - |" in markdown
    assert "| sweeps chosen on | mean val_minority_acc over seeds | - |" in markdown
    assert "| deploy prior |" not in markdown  # these results hold no deployment metrics
    assert "| training time, summed over runs | 0.04 h (12 runs) | - |" in markdown  # 12 x 12.3 s: every run
    footer = markdown.rsplit("---\n\n", 1)[1]
    assert footer.startswith("Runs: 12 (12 finished, 0 failed; 6 of swept settings not chosen) · missing runs: 0")
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(files.leaderboard.csv_path.read_text()))}
    assert rows["fscl+os"]["setting"] == "sim_weight=0.1" and rows["ce"]["setting"] == ""
    assert float(rows["fscl+os"]["val_minority_acc_mean"]) == pytest.approx(2.5 / 3)
    assert files.leaderboard.sweeps_path == tmp_path / "out" / "sweeps.csv"
    sweeps = list(csv.DictReader(io.StringIO(files.leaderboard.sweeps_path.read_text(encoding="utf-8"))))
    assert [(r["setting"], r["chosen"], r["n"], r["val_mean"], r["test_mean"]) for r in sweeps] == [
        ("sim_weight=0.03", "0", "3", "0.7", "0.9"),
        ("sim_weight=0.1", "1", "3", "0.833333", "0.6"),
        ("sim_weight=0.3", "0", "3", "0.8", "0.8"),
    ]
    assert {(r["method"], r["ratio"], r["val_metric"], r["test_metric"]) for r in sweeps} == {
        ("fscl+os", "0.1", "val_minority_acc", "test_minority_acc")
    }


def test_without_validation_each_setting_is_a_row_with_a_note(tmp_path: Path) -> None:
    write_sweep(tmp_path, validation=False)
    runs = prepare_runs(collect_runs(tmp_path))
    markdown = render_markdown(runs, ["test_minority_acc"])
    assert table_row(markdown, "Minority-class accuracy", "fscl+os[sim_weight=0.03]") == ["**0.900 ± 0.000 (n=3)**"]
    assert table_row(markdown, "Minority-class accuracy", "fscl+os[sim_weight=0.1]") == ["0.600 ± 0.100 (n=3)"]
    assert "- fscl+os: no setting chosen" in markdown.split("### ", 1)[0]
    assert "Sweeps: settings chosen on validation" not in markdown
    assert "warnings: 1" in markdown


def extra_metric(payload: dict[str, Any], **metrics: float) -> dict[str, Any]:
    payload["metrics"].update(metrics)
    return payload


def test_a_long_tailed_section_shows_the_macro_block(tmp_path: Path) -> None:
    classes, counts = ["x", "y", "z"], {"x": 150, "y": 50, "z": 5}
    for method, ece in (("ce", 0.3), ("os", 0.2)):
        payload = result_dict(method, 1.0, 0, None, classes=classes, train_counts=counts)
        payload["metrics"] = {"test_balanced_acc": 0.5, "test_deploy_macro_f1": 0.4, "test_macro_ap": 0.6}
        write_run(tmp_path, f"lt__resnet18__{method}__r1__s0", extra_metric(payload, test_ece=ece))
    markdown = render_markdown(collect_runs(tmp_path))
    block = section_block(markdown, DEPLOYMENT_TITLE)
    assert "#### Macro F1 at the natural frequency" in block and "#### Macro average precision" in block
    assert "Minority precision" not in block
    assert table_row(markdown, ECE, "os") == ["**0.200 (n=1)**"]


def test_checks_mark_derived_rows_but_name_only_runs(tmp_path: Path) -> None:
    same = {"actual_ratio": round(1 / 60, 6), "train_counts": {"1": 60, "8": 1}}
    for ratio in (0.01, 0.001):
        for seed in range(2):
            write_run(tmp_path, f"fine__resnet18__ce__r{ratio:g}__s{seed}", result_dict("ce", ratio, seed, 0.5, **same))
    collection = posthoc_rows(collect_runs(tmp_path), "ce", (0, 1))
    markdown = render_markdown(collection, ["test_minority_acc"])
    assert table_row(markdown, "Minority-class accuracy", "ce+posthoc")[0].endswith("†")  # inherits the ratio
    notes = markdown.split("Notes:\n", 1)[1].split("### ", 1)[0]
    assert "- † ratio 0.01: actual ratio 0.016667 (60 vs 1 training images) for ce (" in notes
    assert "Ratios 0.01 and 0.001 trained on the same subset (60 vs 1 training images) for ce (seeds 0, 1)" in notes
    assert "ce+posthoc" not in notes.split("`<method>+posthoc` rows", 1)[0]


def test_a_plain_collection_of_swept_runs_never_averages_settings(tmp_path: Path) -> None:
    write_sweep(tmp_path)
    collection = collect_runs(tmp_path)  # all three settings of fscl+os in one cell, not chosen yet
    markdown = render_markdown(collection, ["test_minority_acc"])
    assert table_row(markdown, "Minority-class accuracy", "fscl+os") == ["**0.600 ± 0.100 (n=3)**"]  # not 0.767 (n=9)
    assert "| fscl+os | 0.1 | **sim_weight=0.1** | 0.833 | 0.600 | 3 | ✓ |" in markdown
    (row,) = [r for r in csv.DictReader(io.StringIO(render_csv(collection))) if r["method"] == "fscl+os"]
    assert (row["n"], row["setting"]) == ("3", "sim_weight=0.1")


def test_settings_of_setting_rows_read_as_their_method(tmp_path: Path) -> None:
    for lr in (0.01, 0.1):  # no validation: each setting is its own row, os[lr=0.01] and os[lr=0.1]
        for seed in range(2):
            payload = result_dict("os", 1.0, seed, 0.5, sweep={"lr": lr})
            write_run(tmp_path, f"fine__resnet18__os[lr={lr:g}]__r1__s{seed}", payload)
    runs = prepare_runs(collect_runs(tmp_path))
    assert {r.method for r in runs.collection.records} == {"os[lr=0.01]", "os[lr=0.1]"}
    table = "\n".join(settings_table(runs.trained))
    assert "| lr | 0.01, 0.1 (swept) | - |" in table
    assert "| oversample_epoch |" in table  # os reads it, under any setting
