"""Soft-voting ensembles from saved test logits, checked by hand on fake run folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reports import collect_runs
from reports.ensemble import METHODS_ENSEMBLE, ensemble_records, softmax, with_ensembles
from reports.leaderboard import render_csv, render_markdown


def write_run(
    runs_dir: Path,
    backbone: str,
    method: str,
    probabilities: list[list[float]],
    labels: list[int],
    *,
    classes: list[str] | None = None,
    train_counts: dict[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """A finished run folder whose test logits are log(probabilities), so their softmax is exactly those."""
    classes = classes or ["1", "8"]
    folder = runs_dir / f"fine__{backbone}__{method}__r0.1__s{seed}"
    folder.mkdir(parents=True)
    result: dict[str, Any] = {
        "status": "finished",
        "task": "fine",
        "dataset": "digits",
        "classes": classes,
        "backbone": backbone,
        "method": method,
        "ratio": 0.1,
        "seed": seed,
        "train_counts": train_counts or {c: 10 for c in classes},
        "metrics": {"test_minority_acc": 0.0},
        "config": {"epochs": 1},
    }
    (folder / "result.json").write_text(json.dumps(result))
    logits = np.log(np.asarray(probabilities, dtype=np.float64)).astype(np.float32)
    np.savez(folder / "test_outputs.npz", logits=logits, features=np.zeros((len(labels), 2)), labels=np.array(labels))
    return folder


def test_softmax_of_log_probabilities() -> None:
    p = np.array([[0.9, 0.1], [0.25, 0.75]])
    assert softmax(np.log(p)) == pytest.approx(p)
    assert softmax(np.array([[1000.0, 1000.0]]))[0] == pytest.approx([0.5, 0.5])  # no overflow


def test_soft_vote_across_backbones_by_hand(tmp_path: Path) -> None:
    # labels: majority (0), minority (1). Alone, a gets the minority image wrong and b the majority image:
    # a: [0.9, 0.1], [0.6, 0.4] -> predicts 0, 0;  b: [0.4, 0.6], [0.1, 0.9] -> predicts 1, 1.
    # mean: [0.65, 0.35], [0.35, 0.65] -> predicts 0, 1: both right.
    write_run(tmp_path, "a", "ce", [[0.9, 0.1], [0.6, 0.4]], [0, 1])
    write_run(tmp_path, "b", "ce", [[0.4, 0.6], [0.1, 0.9]], [0, 1])
    warnings: list[str] = []
    (record,) = ensemble_records(collect_runs(tmp_path).records, warnings)
    assert warnings == []
    assert (record.backbone, record.method, record.ratio, record.seed) == ("ens(a+b)", "ce", 0.1, 0)
    assert record.metrics["test_minority_acc"] == 1.0 and record.metrics["test_majority_acc"] == 1.0
    assert record.members == ("fine__a__ce__r0.1__s0", "fine__b__ce__r0.1__s0")
    # calibration of the mean probabilities: both right at confidence 0.65 -> ECE 0.35, NLL -ln 0.65,
    # Brier 0.35^2 + 0.35^2 = 0.245; at any prior, no false alarm and every minority image found
    assert record.metrics["test_ece"] == pytest.approx(0.35)
    assert record.metrics["test_nll"] == pytest.approx(-np.log(0.65))
    assert record.metrics["test_brier"] == pytest.approx(0.245)
    assert record.metrics["test_deploy_recall"] == 1.0 and record.metrics["test_deploy_false_alarms"] == 0.0


def test_soft_vote_across_methods_and_skips_different_labels(tmp_path: Path) -> None:
    write_run(tmp_path, "a", "ce", [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]], [0, 1, 1])
    write_run(tmp_path, "a", "os", [[0.2, 0.8], [0.3, 0.7], [0.7, 0.3]], [0, 1, 1])
    # the same method on another backbone whose test labels come in another order: no ensemble, a warning
    write_run(tmp_path, "b", "ce", [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], [1, 0, 1])
    warnings: list[str] = []
    records = ensemble_records(collect_runs(tmp_path).records, warnings)
    assert len(warnings) == 1 and "test labels" in warnings[0] and "ens(a+b):ce" in warnings[0]
    (record,) = records
    assert (record.backbone, record.method) == ("a", METHODS_ENSEMBLE)
    # mean of ce and os: [0.55, 0.45] -> 0 (right), [0.45, 0.55] -> 1 (right), [0.45, 0.55] -> 1 (right)
    assert record.metrics["test_minority_acc"] == 1.0 and record.metrics["test_acc"] == 1.0


def test_many_class_ensemble_and_its_rows(tmp_path: Path) -> None:
    classes = ["x", "y", "z"]
    counts = {"x": 150, "y": 50, "z": 5}  # many, medium, few
    # a is right on x only, b on y and z; the mean is right on all three
    write_run(tmp_path, "a", "ce", [[0.8, 0.1, 0.1], [0.5, 0.4, 0.1], [0.5, 0.1, 0.4]], [0, 1, 2],
              classes=classes, train_counts=counts)  # fmt: skip
    write_run(tmp_path, "b", "ce", [[0.4, 0.5, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]], [0, 1, 2],
              classes=classes, train_counts=counts)  # fmt: skip
    collection = with_ensembles(collect_runs(tmp_path))
    (record,) = [r for r in collection.records if r.members]
    assert record.metrics["test_balanced_acc"] == 1.0
    assert record.metrics["test_many_acc"] == record.metrics["test_few_acc"] == 1.0
    assert record.metrics["test_map5"] == 1.0
    markdown = render_markdown(collection)
    assert "## fine — ens(a+b)" in markdown and "### Many-shot accuracy" in markdown
    rows = [line for line in render_csv(collection).splitlines() if line.startswith("fine,ens(a+b),")]
    assert len(rows) == 1 and ",ce,0.1,1,0," in rows[0]
    assert "ensemble rows (per seed): 1" in markdown
