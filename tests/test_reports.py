"""Tests for the torch-free ``reports`` package: collect, aggregate, Markdown/CSV leaderboard."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reports import (
    CellStats,
    Collection,
    LeaderboardFiles,
    RunRecord,
    aggregate,
    collect_runs,
    render_csv,
    render_markdown,
    write_leaderboard,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# Minority-class accuracy per (method, ratio) for seeds 0, 1, 2; the majority class is always perfect,
# so balanced accuracy = (minority + 1) / 2, i.e. mean_bal = (mean + 1) / 2 and std_bal = std / 2.
MINORITY_VALUES: dict[tuple[str, float], list[float]] = {
    ("ce", 1.0): [0.80, 0.85, 0.90],  # mean 0.85, std 0.05
    ("ce", 0.01): [0.5, 0.7, 0.9],  # mean 0.70, std 0.20
    ("fscl+os", 1.0): [0.80, 0.90, 1.00],  # mean 0.90, std 0.10  <- best at ratio 1
    ("fscl+os", 0.01): [0.6, 0.8, 1.0],  # mean 0.80, std 0.20  <- best at ratio 0.01
}


def run_id(method: str, ratio: float, seed: int, backbone: str = "resnet18") -> str:
    return f"fine__{backbone}__{method}__r{ratio:g}__s{seed}"


def result_dict(
    method: str, ratio: float, seed: int, minority: float | None, *, status: str = "finished", **overrides: Any
) -> dict[str, Any]:
    """A result.json payload like the trainer writes it."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "run_id": run_id(method, ratio, seed, overrides.get("backbone", "resnet18")),
        "status": status,
        "failure": None,
        "task": "fine",
        "dataset": "digits",
        "classes": ["1", "8"],
        "backbone": "resnet18",
        "method": method,
        "ratio": ratio,
        "seed": seed,
        "train_counts": {"1": 135, "8": max(1, round(135 * ratio))},
        "test_counts": {"1": 45, "8": 45},
        "epochs": 10,
        "wall_seconds": 12.3,
        "device": "cpu",
        "versions": {"bench": "0.1.0", "torch": "2.14.1", "timm": "1.0.31", "python": "3.11.7"},
    }
    if minority is not None:
        balanced = (minority + 1.0) / 2
        data["metrics"] = {
            "test_minority_acc": minority,
            "test_majority_acc": 1.0,
            "test_acc": balanced,
            "test_balanced_acc": balanced,
            "test_macro_f1": balanced,
            "test_confusion": [[45, 0], [45 - round(45 * minority), round(45 * minority)]],
        }
    data.update(overrides)
    return data


def write_run(runs_dir: Path, folder: str, payload: dict[str, Any] | str) -> Path:
    """Write ``runs_dir/folder/result.json`` (a dict as JSON, a str verbatim); return the file path."""
    path = runs_dir / folder / "result.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload), encoding="utf-8")
    return path


@pytest.fixture()
def runs_dir(tmp_path: Path) -> Path:
    """2 methods x 2 ratios x 3 seeds, one failed run, one corrupt JSON, one folder without result.json."""
    root = tmp_path / "runs"
    for (method, ratio), values in MINORITY_VALUES.items():
        for seed, value in enumerate(values):
            write_run(root, run_id(method, ratio, seed), result_dict(method, ratio, seed, value))
    failed = result_dict("fscl+os", 0.01, 3, None, status="failed", failure={"reason": "loss is NaN", "epoch": 3})
    write_run(root, run_id("fscl+os", 0.01, 3), failed)
    write_run(root, "fine__resnet18__ce__r0.1__s0", '{"status": "finished", "task": ')  # corrupt JSON
    (root / "fine__resnet18__ce__r0.1__s1").mkdir()  # unfinished: no result.json
    return root


def cell(cells: list[CellStats], method: str, ratio: float) -> CellStats:
    (match,) = [c for c in cells if c.method == method and c.ratio == ratio]
    return match


def table_row(markdown: str, title: str, method: str) -> list[str]:
    """Cells of the row ``method`` in the table under ``### title`` (first section)."""
    section = markdown.split(f"### {title}\n\n", 1)[1].split("\n\n", 1)[0]
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == method:
            return cells[1:]
    raise AssertionError(f"no row {method!r} under {title!r}")


def table_header(markdown: str, title: str) -> list[str]:
    header = markdown.split(f"### {title}\n\n", 1)[1].splitlines()[0]
    return [c.strip() for c in header.strip().strip("|").split("|")]


# --- collect -------------------------------------------------------------------------------------------------------


def test_collect_reads_runs_counts_incomplete_and_warns_on_corrupt(runs_dir: Path) -> None:
    collection = collect_runs(runs_dir)
    assert isinstance(collection, Collection)
    assert len(collection.records) == 13  # 12 finished + 1 failed
    assert sum(r.status == "failed" for r in collection.records) == 1
    assert collection.incomplete == 1
    corrupt = runs_dir / "fine__resnet18__ce__r0.1__s0" / "result.json"
    assert len(collection.warnings) == 1
    assert str(corrupt) in collection.warnings[0]
    assert all(r.path != corrupt for r in collection.records)
    assert all(r.ratio != 0.1 for r in collection.records)

    record = next(r for r in collection.records if r.method == "ce" and r.ratio == 0.01 and r.seed == 1)
    assert isinstance(record, RunRecord)
    assert record.task == "fine" and record.dataset == "digits" and record.backbone == "resnet18"
    assert record.classes == ("1", "8")
    assert record.metrics["test_minority_acc"] == 0.7
    assert "test_confusion" not in record.metrics  # only scalar metrics are kept
    assert record.path == runs_dir / run_id("ce", 0.01, 1) / "result.json"


def test_collect_missing_required_keys_and_bad_types_warn(tmp_path: Path) -> None:
    payload = result_dict("ce", 1.0, 0, 0.9)
    del payload["seed"]
    missing = write_run(tmp_path, "a_missing_seed", payload)
    bad = result_dict("ce", 1.0, 1, 0.9)
    bad["ratio"] = "high"
    bad_ratio = write_run(tmp_path, "b_bad_ratio", bad)
    not_object = write_run(tmp_path, "c_list", "[1, 2, 3]")
    write_run(tmp_path, "d_ok", result_dict("ce", 1.0, 2, 0.9))

    collection = collect_runs(tmp_path)
    assert [r.seed for r in collection.records] == [2]
    assert len(collection.warnings) == 3
    for path, warning in zip([missing, bad_ratio, not_object], collection.warnings, strict=True):
        assert str(path) in warning
    assert "seed" in collection.warnings[0]


def test_collect_single_run_dir_and_missing_dir(tmp_path: Path) -> None:
    single = tmp_path / "one_run"
    write_run(tmp_path, "one_run", result_dict("ce", 1.0, 0, 0.9))
    collection = collect_runs(single)
    assert len(collection.records) == 1 and collection.incomplete == 0 and collection.warnings == []

    missing = collect_runs(tmp_path / "nope")
    assert missing.records == [] and len(missing.warnings) == 1


def test_collect_duplicate_run_is_left_out_with_warning(tmp_path: Path) -> None:
    write_run(tmp_path, "a", result_dict("ce", 1.0, 0, 0.9))
    duplicate = write_run(tmp_path, "b", result_dict("ce", 1.0, 0, 0.1))
    collection = collect_runs(tmp_path)
    assert [r.metrics["test_minority_acc"] for r in collection.records] == [0.9]
    assert len(collection.warnings) == 1 and str(duplicate) in collection.warnings[0]


# --- aggregate -----------------------------------------------------------------------------------------------------


def test_aggregate_means_stds_and_counts(runs_dir: Path) -> None:
    cells = aggregate(collect_runs(runs_dir).records, "test_minority_acc")
    assert [(c.method, c.ratio) for c in cells] == [("ce", 1.0), ("ce", 0.01), ("fscl+os", 1.0), ("fscl+os", 0.01)]
    expected = {  # worked out by hand from MINORITY_VALUES
        ("ce", 1.0): (0.85, 0.05),
        ("ce", 0.01): (0.70, 0.20),
        ("fscl+os", 1.0): (0.90, 0.10),
        ("fscl+os", 0.01): (0.80, 0.20),
    }
    for (method, ratio), (mean, std) in expected.items():
        stats = cell(cells, method, ratio)
        assert (stats.task, stats.backbone, stats.metric) == ("fine", "resnet18", "test_minority_acc")
        assert stats.mean == pytest.approx(mean)
        assert stats.std == pytest.approx(std)
        assert stats.n == 3
        assert stats.n_failed == (1 if (method, ratio) == ("fscl+os", 0.01) else 0)

    balanced = cell(aggregate(collect_runs(runs_dir).records, "test_balanced_acc"), "ce", 0.01)
    assert balanced.mean == pytest.approx(0.85) and balanced.std == pytest.approx(0.10)


def test_aggregate_single_run_all_failed_and_missing_metric(tmp_path: Path) -> None:
    write_run(tmp_path, "a", result_dict("ce", 1.0, 0, 0.6))
    write_run(tmp_path, "b", result_dict("os", 1.0, 0, None, status="failed"))
    write_run(tmp_path, "c", result_dict("os", 1.0, 1, None, status="failed"))
    write_run(tmp_path, "d", result_dict("cb", 1.0, 0, 0.4, metrics={"test_acc": 0.5}))
    cells = aggregate(collect_runs(tmp_path).records, "test_minority_acc")
    assert [c.method for c in cells] == ["ce", "os", "cb"]  # preferred order, not alphabetical
    ce, os_, cb = cells
    assert (ce.n, ce.mean, ce.std, ce.n_failed) == (1, 0.6, None, 0)
    assert (os_.n, os_.mean, os_.std, os_.n_failed) == (0, None, None, 2)
    assert (cb.n, cb.mean, cb.std, cb.n_failed) == (0, None, None, 0)


# --- markdown ------------------------------------------------------------------------------------------------------


def test_markdown_cells_bold_and_column_order(runs_dir: Path) -> None:
    markdown = render_markdown(collect_runs(runs_dir))
    assert markdown.startswith("# ")
    assert "## fine — resnet18" in markdown
    assert "(majority: 1, minority: 8)" in markdown
    assert "mean ± sample standard deviation" in markdown

    assert table_header(markdown, "Minority-class accuracy") == ["method", "1", "0.01"]
    assert table_header(markdown, "Balanced accuracy") == ["method", "1", "0.01"]
    # the failed fscl+os run has seed 3, so seed 3 is expected in every cell: ?1 where it has no result
    assert table_row(markdown, "Minority-class accuracy", "ce") == [
        "0.850 ± 0.050 (n=3) ?1",
        "0.700 ± 0.200 (n=3) ?1",
    ]
    assert table_row(markdown, "Minority-class accuracy", "fscl+os") == [
        "**0.900 ± 0.100 (n=3)** ?1",
        "**0.800 ± 0.200 (n=3)** ✗1",
    ]
    assert table_row(markdown, "Balanced accuracy", "ce") == ["0.925 ± 0.025 (n=3) ?1", "0.850 ± 0.100 (n=3) ?1"]
    assert table_row(markdown, "Balanced accuracy", "fscl+os") == [
        "**0.950 ± 0.050 (n=3)** ?1",
        "**0.900 ± 0.100 (n=3)** ✗1",
    ]
    assert "✗k marks k failed runs" in markdown and "?k marks k missing runs" in markdown
    # rows: ce before fscl+os; tables in metric order
    assert markdown.index("| ce |") < markdown.index("| fscl+os |")
    assert markdown.index("### Minority-class accuracy") < markdown.index("### Balanced accuracy")
    # footer
    assert "Runs: 13 (12 finished, 1 failed)" in markdown
    assert "missing runs: 3" in markdown
    assert "incomplete folders: 1" in markdown
    assert "warnings: 1" in markdown


def test_markdown_single_run_ties_no_data_and_all_failed(tmp_path: Path) -> None:
    write_run(tmp_path, "a", result_dict("zeta", 1.0, 0, 0.5))
    write_run(tmp_path, "b", result_dict("ce", 1.0, 0, 0.5))
    write_run(tmp_path, "c", result_dict("ce", 0.1, 0, 0.3))
    write_run(tmp_path, "d", result_dict("zeta", 0.1, 0, None, status="failed"))
    write_run(tmp_path, "e", result_dict("alpha", 0.1, 0, 0.2))
    markdown = render_markdown(collect_runs(tmp_path), metrics=["test_minority_acc"])
    assert table_header(markdown, "Minority-class accuracy") == ["method", "1", "0.1"]
    assert table_row(markdown, "Minority-class accuracy", "ce") == ["**0.500 (n=1)**", "**0.300 (n=1)**"]
    assert table_row(markdown, "Minority-class accuracy", "alpha") == ["— ?1", "0.200 (n=1)"]  # seed 0 expected
    assert table_row(markdown, "Minority-class accuracy", "zeta") == ["**0.500 (n=1)**", "— ✗1"]
    assert markdown.index("| ce |") < markdown.index("| alpha |") < markdown.index("| zeta |")
    assert "### Balanced accuracy" not in markdown


def test_markdown_sections_per_task_and_backbone(tmp_path: Path) -> None:
    write_run(tmp_path, "a", result_dict("ce", 1.0, 0, 0.5))
    write_run(tmp_path, "b", result_dict("ce", 1.0, 0, 0.5, backbone="vit_tiny", classes=["3", "5"]))
    markdown = render_markdown(collect_runs(tmp_path))
    assert markdown.index("## fine — resnet18") < markdown.index("## fine — vit_tiny")
    assert "(majority: 3, minority: 5)" in markdown.split("## fine — vit_tiny", 1)[1]


def test_markdown_empty_collection() -> None:
    markdown = render_markdown(Collection(records=[], warnings=[], incomplete=0))
    assert "No runs found" in markdown and "Runs: 0" in markdown


# --- csv -----------------------------------------------------------------------------------------------------------


def test_csv_rows_and_values(runs_dir: Path) -> None:
    text = render_csv(collect_runs(runs_dir))
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == [
        "task",
        "backbone",
        "majority_class",
        "minority_class",
        "method",
        "ratio",
        "n",
        "n_failed",
        "test_minority_acc_mean",
        "test_minority_acc_std",
        "test_balanced_acc_mean",
        "test_balanced_acc_std",
        "test_feature_silhouette_mean",
        "test_feature_silhouette_std",
        "n_missing",
        "test_minority_acc_ci_low",
        "test_minority_acc_ci_high",
        "test_balanced_acc_ci_low",
        "test_balanced_acc_ci_high",
        "test_feature_silhouette_ci_low",
        "test_feature_silhouette_ci_high",
    ]
    rows = list(reader)
    assert [(r["method"], r["ratio"]) for r in rows] == [
        ("ce", "1"),
        ("ce", "0.01"),
        ("fscl+os", "1"),
        ("fscl+os", "0.01"),
    ]
    for row in rows:
        assert (row["task"], row["backbone"], row["majority_class"], row["minority_class"]) == (
            "fine",
            "resnet18",
            "1",
            "8",
        )
        assert row["n"] == "3"
    ce_low, fscl_low = rows[1], rows[3]
    assert ce_low["n_failed"] == "0" and fscl_low["n_failed"] == "1"
    assert ce_low["test_minority_acc_mean"] == "0.7" and ce_low["test_minority_acc_std"] == "0.2"  # 6 sig. digits
    assert float(ce_low["test_balanced_acc_mean"]) == pytest.approx(0.85)
    assert float(ce_low["test_balanced_acc_std"]) == pytest.approx(0.1)
    assert float(fscl_low["test_minority_acc_mean"]) == pytest.approx(0.8)
    assert [r["n_missing"] for r in rows] == ["1", "1", "1", "0"]  # seed 3 only exists for fscl+os at 0.01
    # 95% t-interval by hand: half-width = t_{0.975,2} * s / sqrt(3) = 4.302653 * 0.2 / 1.7320508 = 0.496827
    assert float(ce_low["test_minority_acc_ci_low"]) == pytest.approx(0.7 - 0.496827, abs=1e-5)
    assert float(ce_low["test_minority_acc_ci_high"]) == pytest.approx(0.7 + 0.496827, abs=1e-5)
    assert float(ce_low["test_balanced_acc_ci_low"]) == pytest.approx(0.85 - 0.496827 / 2, abs=1e-5)
    assert float(ce_low["test_balanced_acc_ci_high"]) == pytest.approx(0.85 + 0.496827 / 2, abs=1e-5)


def test_csv_empty_std_for_single_run(tmp_path: Path) -> None:
    write_run(tmp_path, "a", result_dict("ce", 1.0, 0, 2 / 3))
    (row,) = csv.DictReader(io.StringIO(render_csv(collect_runs(tmp_path))))
    assert row["test_minority_acc_mean"] == "0.666667"
    assert row["test_minority_acc_std"] == ""
    assert row["test_minority_acc_ci_low"] == "" and row["test_minority_acc_ci_high"] == ""
    assert row["n_missing"] == "0"


# --- write_leaderboard ---------------------------------------------------------------------------------------------


def test_write_leaderboard_into_out_dir(runs_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "reports" / "nested"
    files = write_leaderboard(runs_dir, out_dir)
    assert isinstance(files, LeaderboardFiles)
    assert files.markdown_path == out_dir / "leaderboard.md"
    assert files.csv_path == out_dir / "leaderboard.csv"
    assert files.comparisons_path == out_dir / "comparisons.csv" and files.comparisons_path.is_file()
    assert files.markdown_path.read_text(encoding="utf-8") == files.markdown
    assert files.csv_path.read_text(encoding="utf-8") == render_csv(collect_runs(runs_dir))
    assert files.n_runs == 13
    assert len(files.warnings) == 1 and "fine__resnet18__ce__r0.1__s0" in files.warnings[0]


def test_write_leaderboard_defaults_to_runs_dir_and_is_rerunnable(runs_dir: Path) -> None:
    first = write_leaderboard(runs_dir)
    assert first.markdown_path == runs_dir / "leaderboard.md" and first.csv_path.is_file()
    second = write_leaderboard(runs_dir)  # the written files must not be mistaken for runs
    assert second.markdown == first.markdown and second.n_runs == 13


# --- no torch ------------------------------------------------------------------------------------------------------


def test_import_reports_does_not_import_torch() -> None:
    code = "import sys, reports; assert 'torch' not in sys.modules, 'reports imported torch'"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
