"""Calibration metrics (bench.calibration) against hand computations on a few images."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.calibration import calibration_metrics, log_softmax, reliability_bins, softmax

# Four binary images, logits = log(p) so that the softmax is exactly p (up to rounding):
#   p = (0.9, 0.1),  label 0: right, confidence 0.9  -> 15 * 0.9  = 13.5  -> bin 13 (13/15, 14/15]
#   p = (0.08, 0.92), label 0: wrong, confidence 0.92 -> 15 * 0.92 = 13.8  -> bin 13
#   p = (0.3, 0.7),  label 1: right, confidence 0.7  -> 15 * 0.7  = 10.5  -> bin 10
#   p = (0.55, 0.45), label 1: wrong, confidence 0.55 -> 15 * 0.55 = 8.25  -> bin 8
PROBABILITIES = np.array([[0.9, 0.1], [0.08, 0.92], [0.3, 0.7], [0.55, 0.45]])
LABELS = np.array([0, 0, 1, 1])


def test_softmax_and_log_softmax_are_stable() -> None:
    assert softmax(np.log(PROBABILITIES)) == pytest.approx(PROBABILITIES)
    assert softmax(np.array([[1000.0, 1000.0]]))[0] == pytest.approx([0.5, 0.5])
    assert log_softmax(np.array([[1000.0, 0.0]]))[0] == pytest.approx([0.0, -1000.0])


def test_reliability_bins_by_hand() -> None:
    rel = reliability_bins(LABELS, np.log(PROBABILITIES))
    assert rel.edges.shape == (16,) and rel.edges[0] == 0.0 and rel.edges[-1] == 1.0
    expected_counts = np.zeros(15, dtype=int)
    expected_counts[[8, 10, 13]] = [1, 1, 2]
    assert rel.counts.tolist() == expected_counts.tolist()
    # bin 13: mean confidence (0.9 + 0.92) / 2 = 0.91, accuracy 1 / 2; bin 10: 0.7 and 1; bin 8: 0.55 and 0
    assert rel.confidence[[8, 10, 13]] == pytest.approx([0.55, 0.7, 0.91])
    assert rel.accuracy[[8, 10, 13]] == pytest.approx([0.0, 1.0, 0.5])
    empty = rel.counts == 0
    assert np.isnan(rel.confidence[empty]).all() and np.isnan(rel.accuracy[empty]).all()


def test_calibration_metrics_by_hand() -> None:
    metrics = calibration_metrics(LABELS, np.log(PROBABILITIES))
    assert set(metrics) == {"test_ece", "test_nll", "test_brier"}
    # ECE = 2/4 * |0.5 - 0.91| + 1/4 * |1 - 0.7| + 1/4 * |0 - 0.55| = 0.205 + 0.075 + 0.1375 = 0.4175
    assert metrics["test_ece"] == pytest.approx(0.4175)
    # NLL = -(log 0.9 + log 0.08 + log 0.7 + log 0.45) / 4 = (0.10536 + 2.52573 + 0.35667 + 0.79851) / 4 = 0.94657
    assert metrics["test_nll"] == pytest.approx(0.946568, abs=1e-6)
    # Brier per image: 2 * 0.1^2 = 0.02; 0.92^2 + 0.92^2 = 1.6928; 2 * 0.3^2 = 0.18; 2 * 0.55^2 = 0.605
    # mean = (0.02 + 1.6928 + 0.18 + 0.605) / 4 = 2.4978 / 4 = 0.62445
    assert metrics["test_brier"] == pytest.approx(0.62445)


def test_prefix_and_bins() -> None:
    # with 2 bins, (0, 0.5] and (0.5, 1]: all four confidences fall in the upper bin, mean (0.9+0.92+0.7+0.55)/4
    # = 0.7675 against accuracy 0.5 -> ECE 0.2675
    metrics = calibration_metrics(LABELS, np.log(PROBABILITIES), prefix="val_", bins=2)
    assert metrics["val_ece"] == pytest.approx(0.2675)


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_uniform_logits_have_nll_log_c(classes: int) -> None:
    # p = 1/C everywhere: NLL = log C; Brier = (1 - 1/C)^2 + (C - 1) / C^2 = 1 - 1/C; confidence 1/C, accuracy of
    # argmax (label 0 on ties) = share of label 0 = 1/C with labels 0..C-1 once each -> ECE 0
    labels = np.arange(classes)
    metrics = calibration_metrics(labels, np.zeros((classes, classes)))
    assert metrics["test_nll"] == pytest.approx(math.log(classes))
    assert metrics["test_brier"] == pytest.approx(1 - 1 / classes)
    assert metrics["test_ece"] == pytest.approx(0.0)


def test_confident_predictions() -> None:
    # right and sure: p(true) = 1 / (1 + e^-20) ~ 1 - 2e-9 -> NLL ~ 2e-9, Brier ~ 2 * (2e-9)^2 ~ 0, ECE ~ 2e-9
    right = calibration_metrics(np.array([0, 1]), np.array([[20.0, 0.0], [0.0, 20.0]]))
    assert right["test_nll"] == pytest.approx(2.06e-9, rel=0.01)
    assert right["test_brier"] < 1e-16 and right["test_ece"] < 1e-8
    # wrong and sure: log-likelihood of the true class is -1000 exactly (no log(0) = inf); Brier = 1 + 1 = 2
    wrong = calibration_metrics(np.array([1]), np.array([[1000.0, 0.0]]))
    assert wrong["test_nll"] == pytest.approx(1000.0)
    assert wrong["test_brier"] == pytest.approx(2.0) and wrong["test_ece"] == pytest.approx(1.0)


def test_binning_edges() -> None:
    # 4 bins (0, .25], (.25, .5], (.5, .75], (.75, 1]. Two equal logits of 2 classes: confidence exactly 0.5, an inner
    # edge -> the bin below it (bin 1). Four equal logits: 0.25 -> bin 0. exp(-1000) = 0: confidence exactly 1.0
    # -> the last bin.
    logits = np.array([[0.0, 0.0, -np.inf, -np.inf], [0.0, 0.0, 0.0, 0.0], [0.0, -1000.0, -1000.0, -1000.0]])
    assert softmax(logits).max(axis=1).tolist() == [0.5, 0.25, 1.0]
    rel = reliability_bins(np.array([0, 1, 0]), logits, bins=4)
    assert rel.counts.tolist() == [1, 1, 0, 1]
    assert rel.accuracy[[0, 1, 3]].tolist() == [0.0, 1.0, 1.0]
    assert rel.confidence[[0, 1, 3]].tolist() == [0.25, 0.5, 1.0]


def test_empty_split_and_bad_shapes() -> None:
    rel = reliability_bins(np.zeros(0, dtype=np.int64), np.zeros((0, 3)))
    assert rel.counts.sum() == 0 and np.isnan(rel.accuracy).all()
    assert calibration_metrics(np.zeros(0, dtype=np.int64), np.zeros((0, 3))) == {
        "test_ece": None,
        "test_nll": None,
        "test_brier": None,
    }
    with pytest.raises(ValueError, match=r"targets \[N\] and logits \[N, C\]"):
        calibration_metrics(np.array([0, 1]), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        calibration_metrics(np.array([0, 2]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="bins"):
        reliability_bins(np.array([0]), np.zeros((1, 2)), bins=0)
