"""What ``bench report`` flags: mixed hardware in a cell, an actual ratio other than the asked one, ratios that
trained the same subset, settings with their sources; and an error that writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_reports import result_dict, table_row, write_run
from typer.testing import CliRunner

from bench import cli
from reports import check_runs, collect_runs, render_markdown, write_leaderboard, write_report
from reports.document import settings_table

MINORITY_TITLE = "Minority-class accuracy"
CUDA_BF16 = {"device_type": "cuda", "precision": "bf16", "channels_last": True, "compile": False}
CPU_FP32 = {"device_type": "cpu", "precision": "fp32", "channels_last": False, "compile": False}


def write_cell(root: Path, method: str, ratio: float, seeds: range = range(3), **overrides: Any) -> None:
    """Finished runs of one cell (minority accuracy 0.5 + 0.1 * seed); ``overrides`` per seed when callables."""
    for seed in seeds:
        extra = {key: value(seed) if callable(value) else value for key, value in overrides.items()}
        write_run(
            root, f"fine__resnet18__{method}__r{ratio:g}__s{seed}", result_dict(method, ratio, seed, 0.5, **extra)
        )


def invoke_report(*args: str) -> Any:
    return CliRunner().invoke(cli.app, ["report", *args])


def notes(markdown: str) -> str:
    """The first section's notes (between "Notes:" and the first table title)."""
    return markdown.split("Notes:\n", 1)[1].split("### ", 1)[0] if "Notes:\n" in markdown else ""


# --- hardware ------------------------------------------------------------------------------------------------------


def test_a_cell_mixing_device_types_is_marked_noted_and_warned(tmp_path: Path) -> None:
    write_cell(tmp_path, "ce", 1.0, hardware=CUDA_BF16)
    write_cell(tmp_path, "ce", 0.1, hardware=lambda seed: CPU_FP32 if seed == 2 else CUDA_BF16)
    write_cell(tmp_path, "os", 0.1, hardware=lambda seed: {**CUDA_BF16, "channels_last": seed == 0})  # layout only
    markdown = render_markdown(collect_runs(tmp_path), metrics=["test_minority_acc"])
    ce, os_ = table_row(markdown, MINORITY_TITLE, "ce"), table_row(markdown, MINORITY_TITLE, "os")
    assert ce[0].endswith("(n=3)**") and ce[1].endswith("(n=3)** ‡")
    assert not os_[1].endswith("‡")
    assert "- ‡ ce at ratio 0.1: the runs mix hardware: cpu/fp32 (seed 2), cuda/bf16 (seeds 0, 1)." in notes(markdown)
    assert "warnings: 1" in markdown  # the footer counts the check's warning

    result = invoke_report(str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "warning: fine — resnet18, ce at ratio 0.1: the runs mix hardware" in result.stderr
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "‡ ce at ratio 0.1" in report and "| precision | bf16, fp32 | - |" in report


def test_mixed_precision_and_partly_unknown_hardware_are_flagged_unknown_alone_is_not(tmp_path: Path) -> None:
    write_cell(tmp_path, "ce", 1.0, hardware=lambda seed: {**CUDA_BF16, "precision": "fp16" if seed else "bf16"})
    write_cell(tmp_path, "ce", 0.1, hardware=lambda seed: CUDA_BF16 if seed else None)  # seed 0: written before
    write_cell(tmp_path, "os", 1.0)  # no "hardware" at all: unknown, not flagged against each other
    checks = check_runs(collect_runs(tmp_path).records)
    assert checks.marks == {("fine", "resnet18", "ce", 1.0): "‡", ("fine", "resnet18", "ce", 0.1): "‡"}
    assert checks.warnings == [
        "fine — resnet18, ce at ratio 1: the runs mix hardware: cuda/bf16 (seed 0), cuda/fp16 (seeds 1, 2)",
        "fine — resnet18, ce at ratio 0.1: the runs record their hardware only partly: cuda/bf16 (seeds 1, 2), "
        "unknown (seed 0)",
    ]
    assert "| precision | unknown, bf16, fp16 | - |" in settings_table(collect_runs(tmp_path).records)


# --- asked vs actual ratio -----------------------------------------------------------------------------------------


def test_a_cell_whose_actual_ratio_differs_gets_a_dagger_and_a_footnote(tmp_path: Path) -> None:
    counts = {"1": 135, "8": 1}
    write_cell(tmp_path, "ce", 1.0, actual_ratio=1.0)
    write_cell(tmp_path, "ce", 0.1, actual_ratio=0.1, train_counts={"1": 135, "8": 14})  # asked = actual at 6 d.p.
    write_cell(tmp_path, "ce", 0.01, actual_ratio=0.007407, train_counts=counts)
    write_cell(tmp_path, "os", 0.01, actual_ratio=0.007407, train_counts=counts)
    write_cell(tmp_path, "os", 1.0)  # written before actual_ratio existed: nothing to compare
    files = write_leaderboard(tmp_path, tmp_path / "out", metrics=["test_minority_acc"])
    ce, os_ = table_row(files.markdown, MINORITY_TITLE, "ce"), table_row(files.markdown, MINORITY_TITLE, "os")
    assert [cell.endswith("†") for cell in ce] == [False, False, True]
    assert [cell.endswith("†") for cell in os_] == [False, False, True]
    note = "- † ratio 0.01: actual ratio 0.007407 (135 vs 1 training images) for ce, os"
    assert note in notes(files.markdown)
    assert "fine — resnet18 at ratio 0.01: ce, os trained at actual ratio 0.007407 (135 vs 1 training images)" in (
        files.warnings
    )
    assert "†" in files.markdown.split("## ", 1)[0]  # explained in the legend


def test_two_ratios_that_trained_the_same_subset_are_flagged(tmp_path: Path) -> None:
    same = {"actual_ratio": round(1 / 60, 6), "train_counts": {"1": 60, "8": 1}}
    for ratio in (0.01, 0.001):
        write_cell(tmp_path, "ce", ratio, **same)
        write_cell(tmp_path, "os", ratio, **same)
    write_cell(tmp_path, "ce", 0.1, actual_ratio=0.1, train_counts={"1": 60, "8": 6})
    write_cell(tmp_path, "os", 0.1, actual_ratio=0.1, train_counts={"1": 60, "8": 6})
    files = write_report(tmp_path, tmp_path / "out", metrics=["test_minority_acc"])
    warning = "fine — resnet18: ratios 0.01 and 0.001 trained on the same subset (60 vs 1 training images) "
    assert warning + "for ce, os (seeds 0, 1, 2)" in files.leaderboard.warnings
    note = "- Ratios 0.01 and 0.001 trained on the same subset (60 vs 1 training images) for ce, os"
    for name in ("report.md", "leaderboard.md"):
        assert note in notes((tmp_path / "out" / name).read_text(encoding="utf-8")), name
    assert not any("ratios 0.1" in w for w in files.leaderboard.warnings)

    result = invoke_report(str(tmp_path), "--out", str(tmp_path / "cli"))
    assert result.exit_code == 0 and warning in result.stderr


def test_a_grid_at_its_asked_ratios_gets_no_notes(tmp_path: Path) -> None:
    write_cell(tmp_path, "ce", 1.0, actual_ratio=1.0, hardware=CUDA_BF16)
    write_cell(tmp_path, "ce", 0.1, actual_ratio=0.1, train_counts={"1": 135, "8": 14}, hardware=CUDA_BF16)
    # 1 of 640 images is exactly the asked 0.0015625; result.json keeps 6 decimals of it
    write_cell(tmp_path, "ce", 1 / 640, actual_ratio=round(1 / 640, 6), train_counts={"1": 640, "8": 1})
    files = write_leaderboard(tmp_path, tmp_path / "out")
    assert files.warnings == [] and "Notes:" not in files.markdown


# --- errors write nothing; folders that are not runs ---------------------------------------------------------------


def listing(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def test_report_on_a_folder_without_runs_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "fine__resnet18__ce__r1__s0", '{"status": ')  # damaged
    (root / "notes").mkdir()
    before = listing(root)
    result = invoke_report(str(root))
    assert result.exit_code == 2 and "no finished runs found" in result.output
    assert "invalid JSON" in result.stderr  # the reason is still said
    assert listing(root) == before
    elsewhere = tmp_path / "elsewhere"
    assert invoke_report(str(root), "--out", str(elsewhere)).exit_code == 2
    assert not elsewhere.exists()


def test_only_run_shaped_folders_count_as_incomplete(tmp_path: Path) -> None:
    write_cell(tmp_path, "ce", 1.0)
    write_report(tmp_path)  # writes figures/ into the runs folder
    (tmp_path / "notes").mkdir()
    assert (tmp_path / "figures").is_dir()
    assert collect_runs(tmp_path).incomplete == 0
    (tmp_path / "fine__resnet18__ce__r0.1__s0").mkdir()  # a run that has not written anything yet
    (tmp_path / "interrupted").mkdir()
    (tmp_path / "interrupted" / "config.json").write_text("{}", encoding="utf-8")
    assert collect_runs(tmp_path).incomplete == 2
    assert "incomplete folders: 2" in write_leaderboard(tmp_path).markdown


# --- settings and their sources -------------------------------------------------------------------------------------


def write_config(root: Path, method: str, ratio: float, seed: int, config: dict[str, Any]) -> None:
    (root / f"fine__resnet18__{method}__r{ratio:g}__s{seed}" / "config.json").write_text(
        json.dumps(config), encoding="utf-8"
    )


def test_settings_table_shows_each_settings_source(tmp_path: Path) -> None:
    settings = {"dataset": "digits", "epochs": 3, "img_size": 16, "lr": 0.001}
    write_cell(tmp_path, "ce", 1.0, config=settings)
    sources = {"epochs": "flag", "img_size": "/work/grid.toml", "lr": "paper", "data": "flag", "amp": "paper"}
    for seed in range(3):  # bench run writes the sources into config.json
        write_config(tmp_path, "ce", 1.0, seed, {**settings, "sources": sources})
    write_config(tmp_path, "ce", 1.0, 2, {**settings, "sources": {**sources, "epochs": "ROOT/bench.toml"}})
    table = settings_table(collect_runs(tmp_path).records)
    assert table[:2] == ["| setting | value | source |", "|:---|:---|:---|"]
    assert "| dataset | digits | flag |" in table
    assert "| epochs | 3 | flag, ROOT/bench.toml |" in table  # runs disagree: the distinct sources
    assert "| img_size | 16 | /work/grid.toml |" in table and "| lr | 0.001 | paper |" in table
    assert "| precision | unknown | paper |" in table


def test_sources_in_the_result_and_old_runs_without_any(tmp_path: Path) -> None:
    write_cell(tmp_path, "ce", 1.0, config={"epochs": 3, "sources": {"epochs": "data set default (cifar10)"}})
    write_cell(tmp_path, "os", 1.0, config={"epochs": 3})  # an old run: no sources anywhere
    records = collect_runs(tmp_path).records
    assert "| epochs | 3 | data set default (cifar10), - |" in settings_table(records)
    assert "| epochs | 3 | - |" in settings_table([r for r in records if r.method == "os"])


@pytest.mark.parametrize(
    ("method", "shown"),
    [
        ("ce", set()),
        ("supcon", {"supcon_weight", "supcon_temperature"}),
        ("la+bcl", {"bcl_weight", "supcon_temperature", "la_tau"}),
        ("triplet", {"triplet_weight", "triplet_margin"}),
        ("fscl+os", {"oversample_epoch"}),
        ("ldam+drs", {"oversample_epoch", "drw_epoch", "ldam_max_margin", "ldam_scale"}),
    ],
)
def test_method_settings_are_shown_only_for_methods_that_use_them(tmp_path: Path, method: str, shown: set) -> None:
    config = {"supcon_weight": 0.5, "bcl_weight": 0.3, "triplet_weight": 1.0, "oversample_epoch": "full"}
    write_cell(tmp_path, method, 1.0, config={**config, "randaug_strength": "uniform"})
    table = settings_table(collect_runs(tmp_path).records)
    method_keys = {
        "supcon_weight", "bcl_weight", "triplet_weight", "oversample_epoch", "supcon_temperature", "triplet_margin",
        "la_tau", "drw_epoch", "ldam_max_margin", "ldam_scale", "focal_gamma",
    }  # fmt: skip
    assert {line.split(" | ")[0][2:] for line in table if line.startswith("| ")} & method_keys == shown
    assert "| randaug_strength | uniform | - |" in table
    if "supcon_weight" in shown:
        assert "| supcon_weight | 0.5 | - |" in table


def test_runs_written_before_a_setting_existed_show_what_bench_did_then(tmp_path: Path) -> None:
    write_cell(tmp_path, "ce", 1.0, config={"randaug_strength": "fixed"})
    write_cell(tmp_path, "la+bcl", 1.0, config={"sim_weight": 0.2})  # older: no randaug_strength, no bcl_weight
    table = settings_table(collect_runs(tmp_path).records)
    assert "| randaug_strength | fixed, uniform | - |" in table  # strengths were drawn uniformly before the option
    assert "| bcl_weight | 0.2 | - |" in table  # the auxiliary losses shared --sim-weight
