"""Post-hoc logit adjustment (reports.posthoc) by hand on tiny logit matrices and fake run folders."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reports import collect_runs
from reports.posthoc import POSTHOC_TAUS, adjust_logits, choose_tau, with_posthoc

# prior (0.9, 0.1): adjusting by tau adds tau * (-log 0.9, -log 0.1) = tau * (0.10536, 2.30259), i.e. moves the
# margin logit_0 - logit_1 by -tau * log 9 = -2.19722 tau. An image with logits (0, -m) is called the minority once
# m < 2.19722 tau: at tau 1 a margin of 2 flips, a margin of 3 does not.
PRIOR = (0.9, 0.1)


def margins(values: list[float]) -> np.ndarray:
    """Binary logits (0, -m) [N, 2] for each margin m (how far the majority leads)."""
    return np.array([[0.0, -m] for m in values], dtype=np.float32)


def write_run(
    runs_dir: Path,
    method: str,
    test: tuple[np.ndarray, list[int]] | None,
    val: tuple[np.ndarray, list[int]] | None = None,
    *,
    classes: tuple[str, ...] = ("common", "rare"),
    train_counts: dict[str, int] | None = None,
    status: str = "finished",
    extra: dict[str, Any] | None = None,
) -> Path:
    """A run folder: result.json, test_outputs.npz (logits, labels) and, given ``val``, val_outputs.npz."""
    folder = runs_dir / f"cam__b__{method}__r0.1__s0"
    folder.mkdir(parents=True)
    counts = train_counts or {name: 90 if i == 0 else 10 for i, name in enumerate(classes)}
    result = {"task": "cam", "dataset": "d", "classes": list(classes), "backbone": "b", "method": method,
              "ratio": 0.1, "seed": 0, "status": status, "train_counts": counts,
              "metrics": {"test_balanced_acc": 0.5, "test_feature_silhouette": 0.3}, **(extra or {})}  # fmt: skip
    (folder / "result.json").write_text(json.dumps(result))
    for name, outputs in (("test_outputs.npz", test), ("val_outputs.npz", val)):
        if outputs is not None:
            logits, labels = outputs
            ids = np.array([str(i) for i in range(len(labels))])
            np.savez(folder / name, logits=logits, labels=np.array(labels, dtype=np.int64), ids=ids)
    return folder


def test_adjust_logits_flips_what_the_margin_says() -> None:
    logits = margins([1.0, 3.0]).tolist() + [[1.0, 0.0]]
    adjusted = adjust_logits(np.array(logits), PRIOR, 1.0)
    # (0, -1) + (0.10536, 2.30259) = (0.10536, 1.30259): minority now; (0, -3) -> (0.10536, -0.69741): still
    # majority; (1, 0) -> (1.10536, 2.30259): minority
    assert adjusted == pytest.approx(np.array([[0.10536, 1.30259], [0.10536, -0.69741], [1.10536, 2.30259]]), abs=1e-5)
    assert adjusted.argmax(axis=1).tolist() == [1, 0, 1]
    assert adjust_logits(np.array(logits), PRIOR, 0.0).tolist() == logits  # tau 0: as trained
    with pytest.raises(ValueError, match="share > 0"):
        adjust_logits(np.array(logits), (1.0, 0.0), 1.0)


# Validation: majority margins 3 and 5, minority margins 2 and 0.5. Balanced accuracy by tau (thresholds 2.197 tau):
#   tau 0: no minority call -> 0.5; 0.25..0.75: the 0.5 margin -> 0.75; 1 and 1.25 (thresholds 2.197, 2.747):
#   both minority images, no majority one -> 1.0; 1.5 (3.296): the majority margin 3 flips too -> 0.75.
#   Best 1.0 at tau 1 and 1.25: the smallest, 1, is chosen.
VAL = (margins([3.0, 5.0, 2.0, 0.5]), [0, 0, 1, 1])
# Test: majority margin 5, minority margins 4 and 0.3. At tau 1 only the 0.3 margin is called minority -> balanced
# accuracy (1 + 0.5) / 2 = 0.75; test alone would prefer tau 2 (threshold 4.394: both minority images -> 1.0).
TEST = (margins([5.0, 4.0, 0.3]), [0, 1, 1])


def test_choose_tau_follows_validation() -> None:
    assert choose_tau(*VAL, PRIOR) == 1.0
    assert choose_tau(*TEST, PRIOR) == 2.0  # what choosing on test would have given
    # no tau changes anything (margins far from every threshold): all tie, the smallest wins
    assert choose_tau(margins([20.0, -20.0]), np.array([0, 1]), PRIOR) == 0.0
    assert choose_tau(margins([20.0, -20.0]), np.array([0, 1]), PRIOR, taus=(2.0, 0.5)) == 0.5
    assert POSTHOC_TAUS == (0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2)


def test_with_posthoc_row_by_hand(tmp_path: Path) -> None:
    write_run(tmp_path, "ce", TEST, VAL, extra={"sweep": {"lr": 0.1}})
    collection = with_posthoc(collect_runs(tmp_path))
    assert collection.warnings == []
    base, row = collection.records
    assert (row.method, row.posthoc_tau, row.derived) == ("ce+posthoc", 1.0, True)
    assert (row.path, row.ratio, row.seed, row.train_counts, row.config) == (
        base.path, base.ratio, base.seed, base.train_counts, base.config
    )  # fmt: skip
    assert row.variant == base.variant
    # test at tau 1: predictions (majority, majority, minority) against (0, 1, 1)
    assert row.metrics["test_majority_acc"] == 1.0 and row.metrics["test_minority_acc"] == 0.5
    assert row.metrics["test_balanced_acc"] == 0.75 and row.metrics["val_balanced_acc"] == 1.0
    assert row.metrics["posthoc_tau"] == 1.0
    # deployment at the training prior (0.9, 0.1): R11 = 0.5, R01 = 0 -> precision 1, recall 0.5, no false alarm
    assert row.metrics["test_deploy_precision"] == 1.0 and row.metrics["test_deploy_recall"] == 0.5
    assert row.metrics["test_deploy_false_alarms"] == 0.0
    # calibration is of the adjusted logits (checked by hand in the next test)
    assert "test_nll" in row.metrics and "test_ece" in row.metrics and "test_brier" in row.metrics
    assert "test_feature_silhouette" not in row.metrics  # not recomputed: left out
    assert base.metrics["test_balanced_acc"] == 0.5  # the run's own row is untouched


def test_posthoc_calibration_is_of_the_adjusted_logits(tmp_path: Path) -> None:
    # a majority test image of margin 6 and a minority one of margin 0.3; at tau 1 the margins become
    # 6 - log 9 = 3.80278 and 0.3 - log 9 = -1.89722. NLL of a binary image = log(1 + e^-(margin toward its class)):
    # log(1 + 0.022309) = 0.022064 and log(1 + 0.149985) = 0.139748 -> mean 0.080906
    # (as trained: log(1 + e^-6) = 0.002476 and log(1 + e^0.3) = 0.854355 -> 0.428416)
    write_run(tmp_path, "ce", (margins([6.0, 0.3]), [0, 1]), VAL)
    (row,) = [r for r in with_posthoc(collect_runs(tmp_path)).records if r.derived]
    assert row.metrics["test_nll"] == pytest.approx(0.080906, abs=1e-6)
    expected = (math.log(1 + math.exp(-(6 - math.log(9)))) + math.log(1 + math.exp(0.3 - math.log(9)))) / 2
    assert row.metrics["test_nll"] == pytest.approx(expected, abs=1e-6)


def test_posthoc_uses_the_runs_deploy_prior(tmp_path: Path) -> None:
    # result.json's deploy_prior (0.99, 0.01) instead of the training prior (0.9, 0.1); the test split at tau 1 has
    # R11 = 0.5 and R01 = 0 -> precision 1 either way, so take a test split with one false alarm in two majority
    # images: margins 5 and 1 (1 < 2.197: called minority) -> R01 = 0.5; minority margins 4 and 0.3 -> R11 = 0.5
    # precision = 0.01 * 0.5 / (0.01 * 0.5 + 0.99 * 0.5) = 0.01
    test = (margins([5.0, 1.0, 4.0, 0.3]), [0, 0, 1, 1])
    write_run(tmp_path, "ce", test, VAL, extra={"deploy_prior": {"common": 0.99, "rare": 0.01}})
    (row,) = [r for r in with_posthoc(collect_runs(tmp_path)).records if r.derived]
    assert row.metrics["test_deploy_precision"] == pytest.approx(0.01)


def test_long_tailed_posthoc_uses_the_classes_order(tmp_path: Path) -> None:
    # classes x, y, z with 150, 50 and 5 training images (the dict written z first: the order comes from classes);
    # -log prior = (0.3124, 1.4110, 3.7136). Validation images: (2, 0, 0) of x, (0, 1, 0) of y, (0, 0, 0) of z.
    #   tau 0: z's image goes to x (ties: first) -> balanced accuracy 2/3
    #   tau 0.25: + (0.0781, 0.3528, 0.9284): (2.08, .35, .93) -> x, (.08, 1.35, .93) -> y, (.08, .35, .93) -> z: 1
    #   tau 0.5: + (0.1562, 0.7055, 1.8568): y's image (.16, 1.71, 1.86) -> z: 2/3 -> 0.25 is the best
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    counts = {"z": 5, "x": 150, "y": 50}
    write_run(tmp_path, "ce", (logits, [0, 1, 2]), (logits, [0, 1, 2]), classes=("x", "y", "z"), train_counts=counts)
    (row,) = [r for r in with_posthoc(collect_runs(tmp_path)).records if r.derived]
    assert row.posthoc_tau == 0.25
    assert row.metrics["test_balanced_acc"] == 1.0 and row.metrics["test_few_acc"] == 1.0
    assert row.metrics["test_deploy_macro_recall"] == 1.0 and "test_macro_ap" in row.metrics


def test_with_posthoc_skips_with_warnings(tmp_path: Path) -> None:
    write_run(tmp_path / "a", "ce", TEST)  # no validation split: counted in one warning
    write_run(tmp_path / "a", "os", TEST)
    write_run(tmp_path / "a", "la", TEST, VAL, status="failed")  # not finished: no row, no warning
    write_run(tmp_path / "a", "cb", TEST, VAL)
    collection = with_posthoc(collect_runs(tmp_path / "a"))
    assert [r.method for r in collection.records if r.derived] == ["cb+posthoc"]
    (warning,) = collection.warnings
    assert warning.startswith("post-hoc adjustment: 2 run(s) have no val_outputs.npz")
    # only the methods asked for; a derived row is never adjusted again
    assert [r.method for r in with_posthoc(collection, methods=["ce"]).records if r.derived] == ["cb+posthoc"]
    # unreadable, wrongly shaped, or training counts missing: that run skipped with its reason
    bad = write_run(tmp_path / "b", "ce", TEST, VAL)
    (bad / "val_outputs.npz").write_bytes(b"not a zip")
    write_run(tmp_path / "b", "os", (np.zeros((2, 3), dtype=np.float32), [0, 1]), VAL)
    write_run(tmp_path / "b", "cb", TEST, VAL, train_counts={"common": 90})
    collection = with_posthoc(collect_runs(tmp_path / "b"))
    assert not any(r.derived for r in collection.records)
    assert len(collection.warnings) == 3
    assert any("val_outputs.npz is unreadable" in w for w in collection.warnings)
    assert any("test_outputs.npz holds logits (2, 3)" in w for w in collection.warnings)
    assert any("no training count > 0 for every class" in w for w in collection.warnings)
