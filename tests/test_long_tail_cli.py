"""End to end: `bench run --task lt` on the bundled digits (10 classes) with two tiny backbones, then `bench report`
with the many-class columns and `bench report --ensemble` with the soft-voting row."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench import cli
from bench.data import long_tail_counts
from bench.data.digits import open_digits
from bench.data.loader import steps_per_epoch

runner = CliRunner()
# 20 validation images a class leave the head (~135 digits) above 100 training images: all three shot groups exist
TINY = ["--epochs", "1", "--img-size", "16", "--majority-count", "150", "--batch-size", "32", "--seeds", "1",
        "--val-count", "20"]  # fmt: skip
DIGITS = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def lt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits-LT at ratio 0.1, ce, on test_resnet and test_efficientnet (two runs, trained once for the module)."""
    out = tmp_path_factory.mktemp("lt") / "runs"
    result = runner.invoke(cli.app, ["run", "--task", "lt", "--ratios", "0.1", "--methods", "ce", *TINY,
                                     "--backbones", "test_resnet,test_efficientnet", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_lt_run_records_the_profile_and_many_class_metrics(lt_dir: Path) -> None:
    run = lt_dir / "lt__test_resnet__ce__r0.1__s0"
    result = json.loads((run / "result.json").read_text())
    source = open_digits()
    available = [len(source.train.indices_of(c)) for c in DIGITS]
    held = [min(20, n // 2) for n in available]  # validation: --val-count 20, at most half of each class
    trainable = [n - v for n, v in zip(available, held, strict=True)]
    expected = long_tail_counts(trainable, majority_count=150, ratio=0.1)  # head capped at the 0s left to train
    assert result["classes"] == DIGITS and list(result["train_counts"]) == DIGITS
    assert tuple(result["train_counts"].values()) == expected and expected[0] == trainable[0]
    assert list(result["val_counts"].values()) == held
    assert result["test_counts"] == {c: len(source.test.indices_of(c)) for c in DIGITS}  # test split untouched
    assert result["actual_ratio"] == round(expected[-1] / expected[0], 6)
    subset = json.loads((run / "subset.json").read_text())
    assert list(subset["train"]) == DIGITS and [len(subset["train"][c]) for c in DIGITS] == list(expected)
    assert [len(subset["val"][c]) for c in DIGITS] == held
    metrics = result["metrics"]
    assert {"test_many_acc", "test_medium_acc", "test_few_acc", "test_top5_acc", "test_map5", "test_macro_f1"} <= set(
        metrics
    )
    assert "test_minority_acc" not in metrics and len(metrics["test_per_class_acc"]) == 10
    assert metrics["test_balanced_acc"] == pytest.approx(np.mean(metrics["test_per_class_acc"]))
    with np.load(run / "test_outputs.npz") as outputs:
        assert outputs["logits"].shape == (len(source.test), 10)
        assert np.bincount(outputs["labels"]).tolist() == list(result["test_counts"].values())


def test_report_shows_many_medium_few_columns(lt_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["report", str(lt_dir), "--out", str(tmp_path), "--posthoc", "none"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report.md").read_text()
    for title in ("### Balanced accuracy", "### Many-shot accuracy", "### Medium-shot accuracy",
                  "### Few-shot accuracy", "### Top-5 accuracy", "### MAP@5", "### Macro F1"):  # fmt: skip
        assert title in report
    assert "### Minority-class accuracy" not in report
    rows = list(csv.DictReader(io.StringIO((tmp_path / "leaderboard.csv").read_text())))
    assert len(rows) == 2 and rows[0]["minority_class"] == "9"
    metrics = json.loads((lt_dir / "lt__test_resnet__ce__r0.1__s0" / "result.json").read_text())["metrics"]
    row = next(r for r in rows if r["backbone"] == "test_resnet")
    assert float(row["test_few_acc_mean"]) == pytest.approx(metrics["test_few_acc"], abs=1e-5)
    assert (tmp_path / "figures" / "lt__test_resnet" / "accuracy_vs_ratio.png").is_file()


def test_report_ensemble_adds_the_soft_voting_row(lt_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["report", str(lt_dir), "--out", str(tmp_path), "--ensemble"])
    assert result.exit_code == 0, result.output
    assert "## lt — ens(test_efficientnet+test_resnet)" in result.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "leaderboard.csv").read_text())))
    (row,) = [r for r in rows if r["backbone"] == "ens(test_efficientnet+test_resnet)"]
    assert row["method"] == "ce" and row["n"] == "1" and 0 <= float(row["test_balanced_acc_mean"]) <= 1
    # by hand from the two runs' saved logits
    probabilities = []
    for backbone in ("test_resnet", "test_efficientnet"):
        with np.load(lt_dir / f"lt__{backbone}__ce__r0.1__s0" / "test_outputs.npz") as outputs:
            logits, labels = outputs["logits"].astype(np.float64), outputs["labels"]
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities.append(exp / exp.sum(axis=1, keepdims=True))
    predictions = np.mean(probabilities, axis=0).argmax(axis=1)
    balanced = np.mean([(predictions[labels == c] == c).mean() for c in range(10)])
    assert float(row["test_balanced_acc_mean"]) == pytest.approx(balanced, abs=1e-5)


def test_metric_learning_runs_report_knn_accuracy_beside_the_classifier(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["run", "--task", "lt", "--ratios", "0.1", "--methods", "triplet", *TINY,
                                     "--backbone", "test_resnet", "--out", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "lt__test_resnet__triplet__r0.1__s0" / "result.json").read_text())["metrics"]
    assert 0 <= metrics["test_knn_acc"] <= 1 and "test_acc" in metrics
    assert "### kNN accuracy" in (tmp_path / "leaderboard.md").read_text()


def count_batches(model, loader, *args, **kwargs) -> dict[str, float]:  # noqa: ANN001, ANN002, ANN003
    """A stand-in for train_one_epoch that only draws the epoch's batches from the loader the runner built."""
    sizes = [len(labels) for _, labels in loader]
    return {"train_loss": 0.0, "train_acc": 0.0, "train_images": sum(sizes), "steps": len(sizes)}


def test_every_sampler_epoch_has_the_subsets_size_unless_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal compute: ce, os and ldam+drs (after its switch at epoch 2) draw the subset's images in as many batches
    per epoch; --oversample-epoch full draws C x n_max for os and for drs from its switch. ldam's saved test logits
    are those it trained with, the cosines times --ldam-scale (30), not the bare cosines in [-1, 1]."""
    monkeypatch.setattr("bench.runner.train_one_epoch", count_batches)
    grid = ["run", "--task", "lt", "--ratios", "0.1", "--methods", "ce,os,ldam+drs", "--epochs", "2", "--drw-epoch",
            "2", "--img-size", "8", "--majority-count", "40", "--batch-size", "16", "--seeds", "1",
            "--backbone", "test_resnet"]  # fmt: skip
    epochs: dict[str, dict[str, list[tuple[int, int]]]] = {}
    for mode in ("subset", "full"):
        out = tmp_path / mode
        result = runner.invoke(cli.app, [*grid, "--oversample-epoch", mode, "--out", str(out)])
        assert result.exit_code == 0, result.output
        epochs[mode] = {}
        for method in ("ce", "os", "ldam+drs"):
            run = out / f"lt__test_resnet__{method}__r0.1__s0"
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            epochs[mode][method] = [(row["train_images"], row["steps"]) for row in rows]
            images = sum(json.loads((run / "result.json").read_text())["train_counts"].values())
    assert images < 10 * 40
    subset, full = (images, steps_per_epoch(images, 16)), (10 * 40, steps_per_epoch(10 * 40, 16))
    assert epochs["subset"] == {"ce": [subset, subset], "os": [subset, subset], "ldam+drs": [subset, subset]}
    assert epochs["full"] == {"ce": [subset, subset], "os": [full, full], "ldam+drs": [subset, full]}
    with np.load(tmp_path / "subset" / "lt__test_resnet__ldam+drs__r0.1__s0" / "test_outputs.npz") as outputs:
        logits = outputs["logits"]
    assert np.abs(logits).max() <= 30 + 1e-4 and np.abs(logits).max() > 1.5
