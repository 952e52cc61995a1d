"""Deployment metrics (bench.deployment): the test confusion re-weighted to a prior, checked by hand; and their
report-time recomputation (reports.deployment) on run folders the tests write."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_score
from test_posthoc import VAL, margins, write_run

from bench.deployment import deployment_metrics, training_prior
from reports import collect_runs
from reports.deployment import parse_deploy_prior, redeploy
from reports.posthoc import with_posthoc


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


# ---- reports.deployment: the deploy prior of `bench report` and the metrics recomputed from saved logits ----


def test_parse_deploy_prior() -> None:
    binary = ("common", "rare")
    assert parse_deploy_prior("0.01", binary).tolist() == pytest.approx([0.99, 0.01])
    assert parse_deploy_prior(" rare=1, common=3 ", binary).tolist() == [0.75, 0.25]  # in classes order, normalised
    assert parse_deploy_prior("x=2,y=1,z=1", ("x", "y", "z")).tolist() == [0.5, 0.25, 0.25]
    errors = [
        ("1.5", binary, r"share must lie in \(0, 1\)"),
        ("0", binary, r"share must lie in \(0, 1\)"),
        ("often", binary, "expected the minority's share in .* for the classes common, rare"),
        ("0.1", ("x", "y", "z"), r"needs a binary task; name every class \(x, y, z\)"),
        ("common=9,deer=1", binary, r"unknown class 'deer' \(classes: common, rare\)"),
        ("common=9", binary, r"no share for rare \(name every class: common, rare\)"),
        ("common=9,common=1,rare=1", binary, "'common' given twice"),
        ("common=9,rare=lots", binary, "'lots' of 'rare' is not a number"),
        ("common=9,rare=0", binary, "share of 'rare' must be a number > 0"),
        ("common=9,rare=nan", binary, "share of 'rare' must be a number > 0"),
    ]
    for text, classes, message in errors:
        with pytest.raises(ValueError, match=message) as caught:
            parse_deploy_prior(text, classes)
        assert "\n" not in str(caught.value)


# Test logits with confusion [[9, 1], [2, 8]] (R01 = 0.1, R11 = 0.8); training counts 90 / 10 -> prior (0.9, 0.1):
#   at (0.9, 0.1): precision 0.08 / (0.08 + 0.09) = 0.470588, false alarms 0.09 / 0.08 = 1.125
#   at (0.99, 0.01): precision 0.008 / 0.107 = 0.0747664, false alarms 12.375
CONFUSION_9_1_2_8 = outputs_with_confusion([[9, 1], [2, 8]])


def test_redeploy_at_a_prior_and_at_the_training_prior(tmp_path: Path) -> None:
    targets, logits = CONFUSION_9_1_2_8
    write_run(tmp_path, "ce", (logits.astype(np.float32), targets.tolist()),
              extra={"metrics": {"test_deploy_precision": 0.5, "test_minority_acc": 0.8}})  # fmt: skip
    collection = collect_runs(tmp_path)
    (rare,) = redeploy(collection, [0.99, 0.01]).records
    assert rare.metrics["test_deploy_precision"] == pytest.approx(0.008 / 0.107)
    assert rare.metrics["test_deploy_false_alarms"] == pytest.approx(12.375)
    assert rare.metrics["test_minority_acc"] == 0.8  # other metrics untouched
    # calibration: every logit row is a one-hot of 3 -> p(argmax) = e^3 / (e^3 + 1) = 0.952574 on every image;
    # 17 of 20 right -> ECE |0.85 - 0.952574| = 0.102574
    assert rare.metrics["test_ece"] == pytest.approx(0.952574 - 0.85, abs=1e-6)
    (trained,) = redeploy(collection).records
    assert trained.metrics["test_deploy_precision"] == pytest.approx(0.08 / 0.17)
    assert trained.metrics["test_deploy_false_alarms"] == pytest.approx(1.125)


def test_redeploy_fill_only_keeps_existing_values(tmp_path: Path) -> None:
    targets, logits = CONFUSION_9_1_2_8
    write_run(tmp_path, "ce", (logits.astype(np.float32), targets.tolist()),
              extra={"metrics": {"test_deploy_precision": 0.5}})  # fmt: skip
    (filled,) = redeploy(collect_runs(tmp_path), fill_only=True).records
    assert filled.metrics["test_deploy_precision"] == 0.5  # existing value kept
    assert filled.metrics["test_deploy_false_alarms"] == pytest.approx(1.125)  # filled at the training prior
    assert filled.metrics["test_nll"] == pytest.approx(-math.log(0.952574) * 17 / 20 - math.log(1 - 0.952574) * 3 / 20)


def test_redeploy_fill_only_uses_the_runs_recorded_prior(tmp_path: Path) -> None:
    targets, logits = CONFUSION_9_1_2_8
    write_run(tmp_path, "ce", (logits.astype(np.float32), targets.tolist()),
              extra={"deploy_prior": {"common": 0.99, "rare": 0.01}})  # fmt: skip
    (filled,) = redeploy(collect_runs(tmp_path), fill_only=True).records
    assert filled.metrics["test_deploy_false_alarms"] == pytest.approx(12.375)


def test_redeploy_adjusts_posthoc_rows_and_drops_stale_values(tmp_path: Path) -> None:
    # test margins 5, 1 (majority) and 4, 0.3 (minority); validation picks tau 1 (tests/test_posthoc.py), which
    # calls the margins 1 and 0.3 minority: R01 = 0.5, R11 = 0.5. At prior (0.8, 0.2): precision
    # 0.2 * 0.5 / (0.2 * 0.5 + 0.8 * 0.5) = 0.2, false alarms 0.4 / 0.1 = 4. The run's own logits (tau 0) never
    # call the minority: its precision is undefined, and its stale value goes.
    test = (margins([5.0, 1.0, 4.0, 0.3]), [0, 0, 1, 1])
    write_run(tmp_path, "ce", test, VAL, extra={"metrics": {"test_deploy_precision": 0.9}})
    base, row = redeploy(with_posthoc(collect_runs(tmp_path)), [0.8, 0.2]).records
    assert row.posthoc_tau == 1.0
    assert row.metrics["test_deploy_precision"] == pytest.approx(0.2)
    assert row.metrics["test_deploy_false_alarms"] == pytest.approx(4.0)
    assert "test_deploy_precision" not in base.metrics and base.metrics["test_deploy_recall"] == 0.0


def test_redeploy_skips_what_it_cannot_recompute(tmp_path: Path) -> None:
    targets, logits = CONFUSION_9_1_2_8
    write_run(tmp_path / "a", "ce", (logits.astype(np.float32), targets.tolist()))
    write_run(tmp_path / "a", "os", None)  # no test_outputs.npz
    write_run(tmp_path / "a", "la", None, status="failed")  # not finished: left alone, no warning
    three = write_run(tmp_path / "a", "cb", None, classes=("x", "y", "z"))
    np.savez(three / "test_outputs.npz", logits=np.zeros((2, 3), dtype=np.float32), labels=np.array([0, 2]))
    collection = collect_runs(tmp_path / "a")
    redeployed = redeploy(collection, [0.99, 0.01])
    (warning,) = redeployed.warnings
    assert warning.startswith("deployment and calibration metrics not recomputed for 2 run(s): ")
    assert "(and 1 more)" in warning
    by_method = {r.method: r for r in redeployed.records}
    assert "test_ece" in by_method["ce"].metrics
    as_written = {"test_balanced_acc": 0.5, "test_feature_silhouette": 0.3}
    assert by_method["os"].metrics == by_method["la"].metrics == as_written
    assert by_method["cb"].metrics == as_written  # a 2-share prior does not fit 3 classes
    # at each run's training prior the three-class run is recomputed; the run without outputs is named
    (warning,) = redeploy(collection).warnings
    assert "for 1 run(s): " in warning and "cam__b__os__r0.1__s0: test_outputs.npz is missing" in warning
    with pytest.raises(ValueError, match="share > 0"):
        redeploy(collection, [1.0, 0.0])
