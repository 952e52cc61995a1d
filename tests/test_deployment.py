"""Deployment metrics (bench.deployment): the test confusion re-weighted to a prior, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_score

from bench.deployment import deployment_metrics, training_prior


def outputs_with_confusion(confusion: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(targets [N], logits [N, C]) whose argmax gives exactly ``confusion`` (rows true, columns predicted)."""
    targets, logits = [], []
    for true, row in enumerate(confusion):
        for predicted, count in enumerate(row):
            targets += [true] * count
            logits += [np.eye(len(row))[predicted] * 3.0] * count
    return np.array(targets), np.array(logits)


def test_training_prior() -> None:
    assert training_prior([300, 100]).tolist() == [0.75, 0.25]
    assert training_prior([5, 0, 15]).tolist() == [0.25, 0.0, 0.75]
    with pytest.raises(ValueError, match="sum to 0"):
        training_prior([0, 0])
    with pytest.raises(ValueError, match=">= 0"):
        training_prior([3, -1])


def test_binary_at_a_rare_prior_by_hand() -> None:
    # confusion [[90, 10], [20, 80]]: R01 = 0.1, R11 = 0.8. At prior (0.99, 0.01):
    #   precision = 0.01 * 0.8 / (0.01 * 0.8 + 0.99 * 0.1) = 0.008 / 0.107 = 0.0747664
    #   recall = 0.8; F1 = 2 * 0.008 / (2 * 0.008 + 0.099 + 0.002) = 0.016 / 0.117 = 0.1367521
    #   false alarms = 0.099 / 0.008 = 12.375 per true detection
    targets, logits = outputs_with_confusion([[90, 10], [20, 80]])
    metrics = deployment_metrics(targets, logits, [0.99, 0.01])
    assert metrics["test_deploy_recall"] == pytest.approx(0.8)
    assert metrics["test_deploy_precision"] == pytest.approx(0.008 / 0.107)
    assert metrics["test_deploy_f1"] == pytest.approx(0.016 / 0.117)
    assert metrics["test_deploy_false_alarms"] == pytest.approx(12.375)
    # unnormalised shares give the same numbers; the prefix is the caller's
    assert deployment_metrics(targets, logits, [99, 1], prefix="val_")["val_deploy_precision"] == pytest.approx(
        0.008 / 0.107
    )


def test_prior_of_the_test_split_gives_the_plain_precision() -> None:
    # confusion [[90, 10], [20, 80]] at the test split's own shares (100 / 200, 100 / 200): the masses are the counts
    # / 200, so precision = 80 / (80 + 10) = 0.8889 as scikit-learn computes it on the images; the same for AP
    targets, logits = outputs_with_confusion([[90, 10], [20, 80]])
    logits = logits + np.linspace(0, 1, len(targets))[:, None] * [0.0, 1.0]  # distinct scores for a real ranking
    metrics = deployment_metrics(targets, logits, [0.5, 0.5])
    assert metrics["test_deploy_precision"] == pytest.approx(80 / 90)
    assert metrics["test_deploy_precision"] == pytest.approx(precision_score(targets, logits.argmax(axis=1)))
    scores = np.exp(logits[:, 1]) / np.exp(logits).sum(axis=1)
    assert metrics["test_minority_ap"] == pytest.approx(average_precision_score(targets, scores))
    # an unbalanced test split (90 majority, 30 minority) at its own shares (0.75, 0.25): 24 / (24 + 9)
    targets, logits = outputs_with_confusion([[81, 9], [6, 24]])
    assert deployment_metrics(targets, logits, [0.75, 0.25])["test_deploy_precision"] == pytest.approx(24 / 33)


def test_minority_average_precision_by_hand() -> None:
    # minority scores 0.9 (minority), 0.8 (majority), 0.7 (minority), 0.1 (majority); prior (0.8, 0.2) and two
    # images per class: weights 0.1 per minority image, 0.4 per majority image. By descending threshold:
    #   0.9: TP 0.1, FP 0   -> P 1,         R 0.5
    #   0.8: TP 0.1, FP 0.4 -> P 0.2,       R 0.5 (recall unchanged: adds nothing)
    #   0.7: TP 0.2, FP 0.4 -> P 0.2 / 0.6, R 1
    #   AP = sum (R_n - R_{n-1}) P_n = 0.5 * 1 + 0.5 * 1/3 = 0.6667
    # at the test shares (0.5, 0.5) each image weighs 1/4: P at 0.7 is 2/3 -> AP = 0.5 + 0.5 * 2/3 = 0.8333
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    targets = np.array([1, 0, 1, 0])
    logits = np.log(np.stack([1 - scores, scores], axis=1))
    assert deployment_metrics(targets, logits, [0.8, 0.2])["test_minority_ap"] == pytest.approx(2 / 3)
    assert deployment_metrics(targets, logits, [0.5, 0.5])["test_minority_ap"] == pytest.approx(5 / 6)


def test_never_predicting_the_minority() -> None:
    # confusion [[50, 0], [10, 0]]: no minority detection -> precision and false alarms undefined, recall 0, F1 0
    targets, logits = outputs_with_confusion([[50, 0], [10, 0]])
    metrics = deployment_metrics(targets, logits, [0.9, 0.1])
    assert metrics["test_deploy_precision"] is None and metrics["test_deploy_false_alarms"] is None
    assert metrics["test_deploy_recall"] == 0.0 and metrics["test_deploy_f1"] == 0.0
    # detections but all false: precision 0, false alarms undefined (no true detection)
    targets, logits = outputs_with_confusion([[45, 5], [10, 0]])
    metrics = deployment_metrics(targets, logits, [0.9, 0.1])
    assert metrics["test_deploy_precision"] == 0.0 and metrics["test_deploy_false_alarms"] is None


def test_binary_with_a_class_missing_from_test() -> None:
    # no majority image: recall is defined (9 / 10), precision, F1, false alarms and AP are not
    targets, logits = outputs_with_confusion([[0, 0], [1, 9]])
    metrics = deployment_metrics(targets, logits, [0.9, 0.1])
    assert metrics["test_deploy_recall"] == pytest.approx(0.9)
    undefined = ("deploy_precision", "deploy_f1", "deploy_false_alarms", "minority_ap")
    assert all(metrics[f"test_{name}"] is None for name in undefined)
    # no minority image: nothing about the minority is defined
    targets, logits = outputs_with_confusion([[8, 2], [0, 0]])
    assert set(deployment_metrics(targets, logits, [0.9, 0.1]).values()) == {None}


# Eight images of three classes (probabilities by hand; each row's argmax gives the confusion):
#   label 0: a (.7, .2, .1) -> 0, b (.6, .1, .3) -> 0, c (.5, .3, .2) -> 0, d (.32, .6, .08) -> 1
#   label 1: e (.45, .4, .15) -> 0, f (.2, .7, .1) -> 1
#   label 2: g (.3, .45, .25) -> 1, h (.1, .2, .7) -> 2
# confusion [[3, 1, 0], [1, 1, 0], [0, 1, 1]]; rates R0 = (.75, .25, 0), R1 = (.5, .5, 0), R2 = (0, .5, .5)
PROBABILITIES = np.array(
    [[0.7, 0.2, 0.1], [0.6, 0.1, 0.3], [0.5, 0.3, 0.2], [0.32, 0.6, 0.08],
     [0.45, 0.4, 0.15], [0.2, 0.7, 0.1], [0.3, 0.45, 0.25], [0.1, 0.2, 0.7]]
)  # fmt: skip
LABELS = np.array([0, 0, 0, 0, 1, 1, 2, 2])


def test_long_tailed_by_hand() -> None:
    # prior (0.7, 0.2, 0.1): masses pi_i R[i, j] = [[.525, .175, 0], [.1, .1, 0], [0, .05, .05]]
    #   predicted mass per class (column sums): .625, .325, .05
    #   precision: .525 / .625 = .84, .1 / .325 = .307692, .05 / .05 = 1 -> macro .715897
    #   recall: .75, .5, .5 -> macro .583333
    #   F1 = 2 hit / (pi_c + predicted_c): 1.05 / 1.325 = .792453, .2 / .525 = .380952, .1 / .15 = .666667
    #   -> macro .613357
    # AP, image weights pi_y / n_y: label 0 .175, label 1 .1, label 2 .05:
    #   class 0, scores a .7 b .6 c .5 (hits, R .75, P 1), e .45 (FP .1), d .32: TP .7 FP .1 -> P .875, R 1
    #     AP = .75 * 1 + .25 * .875 = .96875
    #   class 1, scores f .7 (hit: R .5, P 1), d .6 (FP .175), g .45 (FP .05), e .4: TP .2 FP .225 -> P .470588
    #     AP = .5 + .5 * .2 / .425 = .735294
    #   class 2, scores h .7 (hit: R .5, P 1), b .3 (FP .175), g .25: TP .1 FP .175 -> P .363636
    #     AP = .5 + .5 * .1 / .275 = .681818
    #   macro AP = (.96875 + .735294 + .681818) / 3 = .795287
    metrics = deployment_metrics(LABELS, np.log(PROBABILITIES), [0.7, 0.2, 0.1])
    assert metrics["test_deploy_per_class_precision"] == pytest.approx([0.84, 0.1 / 0.325, 1.0])
    assert metrics["test_deploy_macro_precision"] == pytest.approx((0.84 + 0.1 / 0.325 + 1.0) / 3)
    assert metrics["test_deploy_macro_recall"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert metrics["test_deploy_macro_f1"] == pytest.approx((1.05 / 1.325 + 0.2 / 0.525 + 0.1 / 0.15) / 3)
    assert metrics["test_per_class_ap"] == pytest.approx([0.96875, 0.5 + 0.5 * 0.2 / 0.425, 0.5 + 0.5 * 0.1 / 0.275])
    assert metrics["test_macro_ap"] == pytest.approx((0.96875 + 0.5 + 0.1 / 0.425 + 0.5 + 0.05 / 0.275) / 3)
    assert "test_deploy_precision" not in metrics


def test_long_tailed_class_missing_and_never_predicted() -> None:
    # class 2 has no test image and is never predicted: its entries are None and the macro means run over classes
    # 0 and 1 with the prior renormalised, (0.6, 0.2, 0.2) -> (0.75, 0.25). Confusion [[2, 0, 0], [1, 1, 0]]:
    #   masses [[.75, 0], [.125, .125]] -> precision .75 / .875 = .857143 and 1; recall 1 and .5
    targets, logits = outputs_with_confusion([[2, 0, 0], [1, 1, 0], [0, 0, 0]])
    metrics = deployment_metrics(targets, logits, [0.6, 0.2, 0.2])
    assert metrics["test_deploy_per_class_precision"] == pytest.approx([0.75 / 0.875, 1.0, None])
    assert metrics["test_per_class_ap"][2] is None
    assert metrics["test_deploy_macro_precision"] == pytest.approx((0.75 / 0.875 + 1.0) / 2)
    assert metrics["test_deploy_macro_recall"] == pytest.approx(0.75)
    # class 1 present but never predicted: its precision is None, and counts as 0 in the macro mean
    targets, logits = outputs_with_confusion([[2, 0, 0], [1, 0, 1], [0, 0, 2]])
    metrics = deployment_metrics(targets, logits, [1, 1, 1])
    # equal prior (1/3 each), masses [[1/3, 0, 0], [1/6, 0, 1/6], [0, 0, 1/3]] -> precision 2/3, None, 2/3
    assert metrics["test_deploy_per_class_precision"] == pytest.approx([2 / 3, None, 2 / 3])
    assert metrics["test_deploy_macro_precision"] == pytest.approx(4 / 9)


def test_bad_inputs() -> None:
    targets, logits = outputs_with_confusion([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="prior of 2 class shares"):
        deployment_metrics(targets, logits, [0.5, 0.3, 0.2])
    with pytest.raises(ValueError, match=">= 0"):
        deployment_metrics(targets, logits, [1.5, -0.5])
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        deployment_metrics(np.array([0, 2]), logits, [0.5, 0.5])
