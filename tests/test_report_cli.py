"""``bench report --select-metric / --posthoc / --deploy-prior``: threaded through to the report, bad values one line
and exit 2 with nothing written; and end to end on run folders with saved validation and test logits."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_reports import result_dict, table_row, write_run
from test_selection import write_sweep
from typer.testing import CliRunner

import reports.leaderboard
from bench import cli
from reports.collect import variant_label

FALSE_ALARMS = "False alarms per true minority detection at the natural frequency (lower is better)"
PRECISION = "Minority precision at the natural frequency"
MINORITY = "Minority-class accuracy"

# Binary runs trained on 90 vs 10 images: training prior (0.9, 0.1), ln prior = (-0.1054, -2.3026).
# Test: labels [0, 0, 1, 1], logits predicting [0, 1, 1, 0] -> confusion [[1, 1], [1, 1]], rates 0.5 everywhere.
#   At the training prior: precision = 0.1 * 0.5 / (0.1 * 0.5 + 0.9 * 0.5) = 0.1, false alarms = 0.45 / 0.05 = 9.
#   At --deploy-prior 0.01: precision = 0.005 / (0.005 + 0.495) = 0.01, false alarms = 0.495 / 0.005 = 99.
# Validation: labels [0, 1], logits [[2, 0], [1, 0]]. Adjusting adds tau x (2.3026 - 0.1054) = 2.197 tau to the
#   minority's margin: tau 0 and 0.25 (+0.55) predict [0, 0] (balanced accuracy 0.5); tau 0.5 (+1.10) predicts
#   [0, 1] (1.0): tau = 0.5, the smallest best. On test it keeps the predictions (margins -2 + 1.1 and +2 + 1.1).
TEST_LOGITS = np.array([[2, 0], [0, 2], [0, 2], [2, 0]], dtype=np.float32)
TEST_LABELS = np.array([0, 0, 1, 1], dtype=np.int64)
VAL_LOGITS = np.array([[2, 0], [1, 0]], dtype=np.float32)
VAL_LABELS = np.array([0, 1], dtype=np.int64)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli.app, ["report", *args])


def write_logit_runs(
    root: Path, methods: tuple[str, ...] = ("ce", "os"), val_minority: float = 0.5, **sweep: float
) -> None:
    """Finished runs of ``methods`` x seeds 0-2 at ratio 0.1 with saved test and validation outputs and no
    deployment metrics in result.json (filled in from the logits); ``sweep`` their swept settings."""
    for method in methods:
        for seed in range(3):
            payload = result_dict(method, 0.1, seed, 0.5, train_counts={"1": 90, "8": 10}, sweep=sweep)
            payload["metrics"]["val_minority_acc"] = val_minority
            label = variant_label(method, tuple(sorted(sweep.items())))
            folder = write_run(root, f"fine__resnet18__{label}__r0.1__s{seed}", payload).parent
            features = np.eye(4, 3, dtype=np.float16)
            ids = np.array([str(i) for i in range(4)])
            np.savez(folder / "test_outputs.npz", logits=TEST_LOGITS, labels=TEST_LABELS, features=features, ids=ids)
            np.savez(folder / "val_outputs.npz", logits=VAL_LOGITS, labels=VAL_LABELS, ids=np.array(["7", "8"]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--select-metric", "test_balanced_acc"], "error: --select-metric: 'test_balanced_acc' is a test metric"),
        (["--select-metric", "loss"], "error: --select-metric: unknown metric 'loss'; choose one of: minority_acc"),
        (["--posthoc", "ce,"], "error: --posthoc: 'ce,': give all, none or methods separated by commas"),
        (["--posthoc", "focal"], "error: --posthoc: no runs of method focal; the runs have: ce, fscl+os"),
        (["--deploy-prior", "2"], "error: --deploy-prior: deploy prior '2': the minority's share must lie in (0, 1)"),
        (["--deploy-prior", "1=0.9,x=0.1"], "error: --deploy-prior: deploy prior '1=0.9,x=0.1': unknown class 'x'"),
    ],
)
def test_bad_values_are_one_line_exit_2_and_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    runs_dir = tmp_path / "runs"
    write_sweep(runs_dir)
    result = invoke(str(runs_dir), "--out", str(tmp_path / "out"), *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_a_deploy_prior_over_tasks_of_other_classes_is_refused(tmp_path: Path) -> None:
    write_run(tmp_path, "a", result_dict("ce", 1.0, 0, 0.5))
    write_run(tmp_path, "b", result_dict("ce", 1.0, 0, 0.5, task="other", classes=["cat", "dog"]))
    result = invoke(str(tmp_path), "--out", str(tmp_path / "out"), "--deploy-prior", "0.01")
    assert result.exit_code == 2
    assert "needs runs of one set of classes; these runs have: 1,8; cat,dog" in result.stderr


def test_the_flags_reach_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_sweep(tmp_path)
    received: dict[str, Any] = {}
    real = reports.leaderboard.prepare_runs

    def spy(collection: Any, **options: Any) -> Any:
        received.update(options)
        return real(collection, **options)

    monkeypatch.setattr(reports.leaderboard, "prepare_runs", spy)
    args = ["--select-metric", "balanced_acc", "--posthoc", "ce", "--deploy-prior", "8=1,1=99", "--ensemble"]
    result = invoke(str(tmp_path), "--out", str(tmp_path / "out"), *args)
    assert result.exit_code == 0, result.output
    prior = received.pop("deploy_prior")
    assert prior == pytest.approx([0.99, 0.01])  # in the classes' order (majority 1, minority 8), normalised
    assert received == {"ensemble": True, "select_metric": "val_balanced_acc", "posthoc": ("ce",)}
    received.clear()
    assert invoke(str(tmp_path), "--out", str(tmp_path / "out")).exit_code == 0
    assert received == {"ensemble": False, "select_metric": None, "posthoc": True, "deploy_prior": None}
    assert invoke(str(tmp_path), "--out", str(tmp_path / "out"), "--posthoc", "none").exit_code == 0
    assert received["posthoc"] is False


def test_post_hoc_rows_and_deployment_at_the_training_prior_end_to_end(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    write_logit_runs(runs_dir)
    result = invoke(str(runs_dir), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    rows = report.split(f"### {MINORITY}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| ce", "| ce+posthoc", "| os", "| os+posthoc"]
    assert table_row(report, MINORITY, "ce+posthoc") == ["**0.500 ± 0.000 (n=3)**"]  # tau 0.5 keeps test predictions
    assert table_row(report, PRECISION, "ce") == ["**0.100 ± 0.000 (n=3)**"]  # filled in from the logits
    assert table_row(report, FALSE_ALARMS, "os") == ["**9.00 ± 0.00 (n=3)**"]
    assert "tau chosen per run on its own validation logits" in report
    assert "| deploy prior | each run's training prior" in report
    assert "+posthoc" not in report.split("## Settings", 1)[1].split("\n## ", 1)[0]
    assert report.rsplit("---\n\n", 1)[1].startswith("Runs: 6 (6 finished, 0 failed) · missing runs: 0")
    assert "post-hoc rows (per run): 6" in report
    csv_rows = {r["method"]: r for r in csv.DictReader(io.StringIO((tmp_path / "out" / "leaderboard.csv").read_text()))}
    assert float(csv_rows["ce+posthoc"]["posthoc_tau_mean"]) == 0.5
    assert csv_rows["ce"]["posthoc_tau_mean"] == ""
    assert not (tmp_path / "out" / "sweeps.csv").exists()  # nothing swept


def test_a_deploy_prior_recomputes_every_row(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    write_logit_runs(runs_dir)
    result = invoke(str(runs_dir), "--out", str(tmp_path / "out"), "--deploy-prior", "0.01", "--posthoc", "ce")
    assert result.exit_code == 0, result.output
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    for method in ("ce", "ce+posthoc", "os"):
        assert table_row(report, PRECISION, method) == ["**0.010 ± 0.000 (n=3)**"], method
        assert table_row(report, FALSE_ALARMS, method) == ["**99.00 ± 0.00 (n=3)**"], method
    assert "os+posthoc" not in report
    assert "re-weighted to the prior 1=0.99, 8=0.01 (--deploy-prior)" in report
    assert "| deploy prior | the prior 1=0.99, 8=0.01 (--deploy-prior) | --deploy-prior |" in report


def test_post_hoc_rows_are_made_from_the_chosen_setting_only(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    write_logit_runs(runs_dir, ("ce",))
    write_logit_runs(runs_dir, ("os",), 0.9, lr=0.01)  # chosen: validation 0.9
    write_logit_runs(runs_dir, ("os",), 0.4, lr=0.1)
    result = invoke(str(runs_dir), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    footer = report.rsplit("---\n\n", 1)[1]
    assert footer.startswith("Runs: 9 (9 finished, 0 failed; 3 of swept settings not chosen) · missing runs: 0")
    assert "post-hoc rows (per run): 6" in footer  # 3 of ce, 3 of os at lr=0.01
    assert "| os | 0.1 | **lr=0.01** | 0.900 | 0.500 | 3 | ✓ |" in report
    # os's values from its runs' sweep; ce did not sweep and records no lr: bench's value then (legacy_value, 0.001)
    assert "| lr | 0.001, 0.01, 0.1 (swept) | - |" in report
    assert f"leaderboard.csv, {tmp_path / 'out' / 'sweeps.csv'} and" in result.stderr
    csv_rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "leaderboard.csv").read_text())))
    assert [(r["method"], r["n"], r["setting"]) for r in csv_rows] == [
        ("ce", "3", ""),
        ("ce+posthoc", "3", ""),
        ("os", "3", "lr=0.01"),
        ("os+posthoc", "3", "lr=0.01"),
    ]


def test_help_shows_the_new_defaults() -> None:
    result = CliRunner().invoke(cli.app, ["report", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for text in ("[minority_acc; long-tailed tasks: balanced_acc]", "[default: all]", "[each run's training prior]"):
        assert text in result.output, text


def test_ensembles_average_the_chosen_setting_only(tmp_path: Path) -> None:
    write_logit_runs(tmp_path, ("ce",))
    write_logit_runs(tmp_path, ("os",), 0.9, lr=0.01)  # chosen
    write_logit_runs(tmp_path, ("os",), 0.4, lr=0.1)
    ensembles = [r for r in reports.leaderboard.load_collection(tmp_path, ensemble=True).records if r.members]
    assert [(r.method, r.seed) for r in ensembles] == [("ens(methods)", 0), ("ens(methods)", 1), ("ens(methods)", 2)]
    assert [r.members for r in ensembles][0] == (
        "fine__resnet18__ce__r0.1__s0",
        "fine__resnet18__os[lr=0.01]__r0.1__s0",
    )
