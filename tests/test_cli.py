"""The command line: a complete grid on the digits default, resume, the report, and one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench import cli
from reports.figures import GALLERY_OFF

runner = CliRunner()

TINY = ["--epochs", "1", "--img-size", "16", "--majority-count", "20", "--batch-size", "16"]


def invoke(*args: str):
    return runner.invoke(cli.app, list(args))


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 2 ratios x 2 methods x 2 seeds grid on the bundled digits (trained once for the module)."""
    out = tmp_path_factory.mktemp("runs") / "grid"
    result = invoke("run", "--task", "fine", "--ratios", "1,0.1", "--methods", "ce,fscl+os", "--seeds", "2",
                    *TINY, "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_grid_writes_one_complete_folder_per_run(grid_dir: Path) -> None:
    runs = sorted(p.name for p in grid_dir.iterdir() if p.is_dir())
    assert len(runs) == 8
    assert "fine__resnet18__fscl+os__r0.1__s1" in runs
    run = grid_dir / "fine__resnet18__fscl+os__r0.1__s1"
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "finished"
    assert result["classes"] == ["1", "8"]
    # majority capped at 20, minority = round(0.1 * 20) = 2; the test split is whole.
    assert result["train_counts"] == {"1": 20, "8": 2}
    assert result["actual_ratio"] == 0.1
    assert result["test_counts"]["1"] > 40 and result["test_counts"]["8"] > 40
    assert set(result["metrics"]) >= {"test_minority_acc", "test_balanced_acc", "test_macro_f1", "test_confusion"}
    assert result["config"]["img_size"] == 16 and result["seed"] == 1
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in epochs] == [1]
    assert {"train_loss", "train_loss_ce", "train_loss_fscl", "train_acc", "lr", "seconds"} <= set(epochs[0])
    config = json.loads((run / "config.json").read_text())
    assert config["taps"] == ["layer3", "layer4"] and config["normalisation"]["source"] == "train subset"
    subset = json.loads((run / "subset.json").read_text())
    assert len(subset["train"]["1"]) == 20 and len(subset["train"]["8"]) == 2
    assert subset["val_source"] == "train"  # digits has no val/: its validation images are carved from train
    assert {c: len(ids) for c, ids in subset["val"].items()} == result["val_counts"]
    assert not set(subset["val"]["8"]) & set(subset["train"]["8"])
    with np.load(run / "test_outputs.npz") as outputs:
        n_test = sum(result["test_counts"].values())
        assert outputs["logits"].shape == (n_test, 2) and outputs["features"].shape == (n_test, 512)
        assert outputs["features"].dtype == np.float16
        assert np.bincount(outputs["labels"]).tolist() == [result["test_counts"]["1"], result["test_counts"]["8"]]
        confusion = np.zeros((2, 2), dtype=int)
        np.add.at(confusion, (outputs["labels"], outputs["logits"].argmax(axis=1)), 1)
    assert confusion.tolist() == result["metrics"]["test_confusion"]
    assert -1 <= result["metrics"]["test_feature_silhouette"] <= 1 and result["metrics"]["test_feature_fisher"] > 0


def test_subsets_are_nested_across_ratios_and_shared_across_methods(grid_dir: Path) -> None:
    def subset(name: str) -> dict:
        return json.loads((grid_dir / name / "subset.json").read_text())

    full, small = subset("fine__resnet18__ce__r1__s0"), subset("fine__resnet18__ce__r0.1__s0")
    assert set(small["train"]["8"]) <= set(full["train"]["8"])
    assert small["val"] == full["val"]  # the validation images of a seed are the same at every ratio
    assert subset("fine__resnet18__fscl+os__r0.1__s0") == small
    assert subset("fine__resnet18__ce__r0.1__s1") != small


def test_ce_runs_register_no_taps(grid_dir: Path) -> None:
    config = json.loads((grid_dir / "fine__resnet18__ce__r1__s0" / "config.json").read_text())
    assert config["taps"] == []


def test_report_shows_every_cell_with_n(grid_dir: Path, tmp_path: Path) -> None:
    result = invoke("report", str(grid_dir), "--out", str(tmp_path), "--posthoc", "none")
    assert result.exit_code == 0, result.output
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "fine — resnet18" in markdown
    report = (tmp_path / "report.md").read_text()
    assert "![accuracy vs ratio](figures/fine__resnet18/accuracy_vs_ratio.png)" in report
    assert (tmp_path / "figures" / "fine__resnet18" / "feature_space_r0.1_s0.png").is_file()
    tables = markdown.split("### Deployment at the natural frequency")[0]
    assert tables.count("(n=2)") == 2 * 2 * 3  # 2 methods x 2 ratios x 3 metric tables
    rows = list(csv.DictReader((tmp_path / "leaderboard.csv").open()))
    assert {(row["method"], row["ratio"], row["n"]) for row in rows} == {
        ("ce", "1", "2"), ("ce", "0.1", "2"), ("fscl+os", "1", "2"), ("fscl+os", "0.1", "2")
    }  # fmt: skip
    values = [json.loads((grid_dir / f"fine__resnet18__ce__r1__s{s}" / "result.json").read_text()) for s in (0, 1)]
    mean = sum(v["metrics"]["test_minority_acc"] for v in values) / 2
    ce_full = next(row for row in rows if row["method"] == "ce" and row["ratio"] == "1")
    assert float(ce_full["test_minority_acc_mean"]) == pytest.approx(mean, abs=1e-5)


def test_report_without_gallery_copies_no_test_image(grid_dir: Path, tmp_path: Path) -> None:
    with_gallery = invoke("report", str(grid_dir), "--out", str(tmp_path / "with"), "--posthoc", "none")
    assert with_gallery.exit_code == 0, with_gallery.output
    assert list((tmp_path / "with" / "figures" / "fine__resnet18").glob("gallery_r*.png"))
    result = invoke("report", str(grid_dir), "--out", str(tmp_path / "without"), "--no-gallery")
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "without").rglob("gallery_*.png"))
    assert GALLERY_OFF in (tmp_path / "without" / "report.md").read_text()


def test_rerun_skips_finished_runs(grid_dir: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in grid_dir.glob("*/result.json")}
    result = invoke("run", "--task", "fine", "--ratios", "1,0.1", "--methods", "ce,fscl+os", "--seeds", "2",
                    *TINY, "--out", str(grid_dir))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "8 of 8 runs already finished" in result.output
    assert {p: p.stat().st_mtime_ns for p in grid_dir.glob("*/result.json")} == before


def test_changed_settings_into_the_same_out_are_refused(grid_dir: Path) -> None:
    result = invoke("run", "--task", "fine", "--ratios", "1", "--methods", "ce", "--seeds", "1",
                    *TINY[:-2], "--batch-size", "8", "--out", str(grid_dir))  # fmt: skip
    assert result.exit_code == 2
    assert "different settings (batch_size: 16 there, 8 now)" in result.output


def test_a_result_written_before_a_setting_existed_counts_as_that_settings_default(grid_dir: Path) -> None:
    """A result from an older version lacks settings added since; it ran with their defaults, so it is kept."""
    path = next(grid_dir.glob("fine__*__ce__r1__s0/result.json"))
    result = json.loads(path.read_text())
    del result["config"]["randaug_ops"]  # stands for a setting added after this run finished
    path.write_text(json.dumps(result))
    rerun = invoke("run", "--task", "fine", "--ratios", "1", "--methods", "ce", "--seeds", "1",
                   *TINY, "--out", str(grid_dir))  # fmt: skip
    assert rerun.exit_code == 0, rerun.output
    assert "1 of 1 run" in rerun.output
    changed = invoke("run", "--task", "fine", "--ratios", "1", "--methods", "ce", "--seeds", "1",
                     *TINY, "--randaug-ops", "1", "--out", str(grid_dir))  # fmt: skip
    assert changed.exit_code == 2
    assert "different settings (randaug_ops: 2 there, 1 now)" in changed.output


def test_a_setting_a_method_does_not_read_does_not_key_its_runs(grid_dir: Path) -> None:
    """ce reads neither cb's nor fscl's settings: changing them finds ce's runs finished; fscl+os's are refused."""
    rerun = invoke("run", "--task", "fine", "--ratios", "1", "--methods", "ce", "--seeds", "1", *TINY,
                   "--cb-kind", "focal", "--sim-weight", "0.5", "--stages", "4", "--out", str(grid_dir))  # fmt: skip
    assert rerun.exit_code == 0, rerun.output
    assert "1 of 1 run" in rerun.output
    changed = invoke("run", "--task", "fine", "--ratios", "1", "--methods", "fscl+os", "--seeds", "1", *TINY,
                     "--sim-weight", "0.5", "--out", str(grid_dir))  # fmt: skip
    assert changed.exit_code == 2
    assert "different settings (sim_weight: 0.1 there, 0.5 now)" in changed.output


def test_an_older_result_counts_as_what_bench_did_then(grid_dir: Path) -> None:
    """Before --randaug-strength existed the strengths were drawn uniformly: such a result is not the new default."""
    for path in grid_dir.glob("fine__*__ce__r0.1__s*/result.json"):
        result = json.loads(path.read_text())
        del result["config"]["randaug_strength"]
        path.write_text(json.dumps(result))
    args = ["run", "--task", "fine", "--ratios", "0.1", "--methods", "ce", "--seeds", "2", *TINY]
    changed = invoke(*args, "--out", str(grid_dir))
    assert changed.exit_code == 2
    assert "different settings (randaug_strength: 'uniform' there, 'fixed' now)" in changed.output
    kept = invoke(*args, "--randaug-strength", "uniform", "--out", str(grid_dir))
    assert kept.exit_code == 0, kept.output
    assert "2 of 2 runs already finished" in kept.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ratios", "0"], "ratio 0 is outside (0, 1]"),
        (["--ratios", "abc"], "ratio 'abc' is not a number"),
        (["--methods", "ce,fsc"], "unknown method component 'fsc'"),
        (["--backbone", "resnt18"], "unknown backbone 'resnt18'; did you mean"),
        (["--classes", "1", "X"], "class 'X' not found in the train split"),
        (["--task", "fien"], "unknown task 'fien' (did you mean 'fine'?)"),
        (["--data", "/nonexistent/folder"], "/nonexistent/folder"),
        (["--stages", "9"], "stage 9 out of range for resnet18"),
        (["--seeds", "0"], "--seeds must be an integer >= 1"),
        (["--amp", "fp16"], "--amp fp16 needs a CUDA device"),
        (["--warmup-epochs", "many"], "Invalid value for '--warmup-epochs'"),  # typer's own errors are one line too
        (["--lr", "fast"], "--lr must be a number, got 'fast'"),  # a sweepable option: parsed by bench
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = invoke("run", *args, *TINY, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert message in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_hands_parsed_options_to_the_session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    received = {}

    def fake_session(**kwargs: object) -> int:
        received.update(kwargs)
        return 0

    monkeypatch.setattr("bench.session.run_session", fake_session)
    result = invoke("run", "--data", "cifar10", "--task", "fine,coarse", "--ratios", "1,0.01", "--backbones",
                    "resnet18,convnext_atto", "--epochs", "3", "--scratch", "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert received["data"] == "cifar10"
    assert received["task_names"] == ("fine", "coarse")
    assert received["options"]["ratios"] == "1,0.01"
    assert received["options"]["backbones"] == "resnet18,convnext_atto"
    assert received["options"]["epochs"] == 3 and received["options"]["pretrained"] is False
    assert received["options"]["lr"] is None  # not given: the lower layers decide
    assert received["out"] == tmp_path
    assert received["options"]["compile"] is None


def test_compile_is_a_run_time_option_that_reaches_the_device_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.plan import plan_run

    received = {}
    monkeypatch.setattr("bench.session.run_session", lambda **kwargs: received.update(kwargs) or 0)
    assert invoke("run", "--compile").exit_code == 0
    assert received["options"]["compile"] is True
    plan = plan_run(data="digits", config_path=None, task_names=("fine",), classes=None, options={"compile": True})
    assert plan.compile is True and "compile" not in plan.spec.cells()[0].to_dict()  # results do not depend on it


def test_report_on_an_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = invoke("report", str(tmp_path))
    assert result.exit_code == 2
    assert "no finished runs found" in result.output


def test_listing_commands() -> None:
    assert "fscl" in invoke("methods").output
    stages = invoke("stages", "resnet18").output
    assert "layer4" in stages and "(default tap)" in stages
    assert "resnet18" in invoke("backbones", "resnet1*").output.split()
    tasks = invoke("tasks").output
    assert "task fine: majority 1, minority 8" in tasks


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("run", ["[paper: 100]", "[local]", "[runs/<timestamp>]", "[tasks.NAME]", "[auto]"]),
        ("doctor", ["[every preset]"]),
        ("report", ["[RUNS_DIR]"]),
    ],
)
def test_help_shows_the_bracketed_defaults(command: str, shown: list[str]) -> None:
    """Rich markup would take "[local]" for a style tag and print nothing; the defaults must reach the user."""
    result = CliRunner().invoke(cli.app, [command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for text in shown:
        assert text in result.output, text


def test_backbones_suggests_only_patterns_and_names_that_exist() -> None:
    from backbones import list_backbones

    typo = invoke("backbones", "resnt*")
    assert typo.exit_code == 2 and typo.output.count("\n") == 1
    assert "*resnt*" not in typo.output and "close names: " in typo.output
    suggested = typo.output.split("close names: ")[1].strip().split(", ")
    assert "resnet18" in suggested and all(list_backbones(name) == [name] for name in suggested)
    prefix = invoke("backbones", "patch16_224*")  # a middle part of many names, given as a prefix
    assert prefix.exit_code == 2 and "try '*patch16_224*' (" in prefix.output
    assert list_backbones("*patch16_224*")
    nothing = invoke("backbones", "qqqzzzxxx*")
    assert nothing.exit_code == 2 and "no name is close; 'bench backbones' lists all " in nothing.output
