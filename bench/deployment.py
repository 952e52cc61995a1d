"""Metrics at the class frequencies a deployed model meets: the test confusion re-weighted to a deploy prior.

A balanced (or differently skewed) test split over-states the precision of a rare class. From the test confusion
``confusion[i, j]`` (true i, predicted j) and each class's test images ``n_i``, the per-class rates
``R[i, j] = confusion[i, j] / n_i`` do not depend on the split's class shares; at a deploy prior ``pi`` the expected
share of images of class i predicted j is ``pi_i * R[i, j]``. Precision, F1 and false alarms follow from those
masses; recall (``R[c, c]``) does not depend on the prior. Average precision ranks the class's softmax score with
each test image weighted ``pi_y / n_y``, so each class carries its prior share.

A class with no test image has undefined rates: its own metrics are None, and it is left out of the others (the
prior is renormalised over the classes the test split has). A class the model never predicts has an undefined
precision: None (and no false-alarm rate); in a macro mean it counts as 0, so never predicting a class is not
rewarded. numpy + scikit-learn only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix

from bench.calibration import check_outputs, softmax
from bench.metrics import MAJORITY, MINORITY


def training_prior(train_counts: Sequence[float]) -> np.ndarray:
    """The class shares of the training images: train_counts [C] by label, normalised to sum 1 (float64 [C])."""
    counts = np.asarray(train_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or np.any(counts < 0) or not np.isfinite(counts).all():
        raise ValueError(f"training counts must be a non-empty list of counts >= 0, got {list(train_counts)}")
    if counts.sum() <= 0:
        raise ValueError(f"training counts sum to 0: {list(train_counts)}")
    return counts / counts.sum()


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator > 0 else None


def _weighted_ap(is_class: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float | None:
    """scikit-learn's average precision (sum over thresholds of (R_n - R_{n-1}) P_n) of ``scores`` [N] for the images
    where ``is_class`` [N], each image weighted ``weights`` [N]; None when the class or the rest carries no weight."""
    if weights[is_class].sum() <= 0 or weights[~is_class].sum() <= 0:
        return None
    return float(average_precision_score(is_class, scores, sample_weight=weights))


def _rates(targets: np.ndarray, predictions: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(test images per class float [C], per-class rates R[i, j] = confusion[i, j] / n_i [C, C], rows of 0 where
    n_i = 0) of targets and predictions int [N]."""
    confusion = confusion_matrix(targets, predictions, labels=list(range(num_classes))).astype(np.float64)
    counts = confusion.sum(axis=1)
    rates = np.divide(confusion, counts[:, None], out=np.zeros_like(confusion), where=counts[:, None] > 0)
    return counts, rates


def deployment_metrics(
    targets: np.ndarray, logits: np.ndarray, prior: Sequence[float], prefix: str = "test_"
) -> dict[str, object]:
    """Precision, recall, F1 and average precision at the class frequencies ``prior`` [C] (normalised here) from
    targets int [N] in 0..C-1 and logits float [N, C] (module doc).

    Binary (C = 2, label 1 = minority): ``{prefix}deploy_precision``, ``deploy_recall``, ``deploy_f1``,
    ``deploy_false_alarms`` (false minority detections per true one) and ``minority_ap``. C > 2: ``deploy_macro_*``
    (precision, recall, F1), ``macro_ap`` (means over the classes the test split has) and the lists by label
    ``deploy_per_class_precision`` and ``per_class_ap``.
    """
    targets, logits = check_outputs(targets, logits)
    prior = np.asarray(prior, dtype=np.float64)
    if prior.shape != (logits.shape[1],):
        raise ValueError(f"expected a prior of {logits.shape[1]} class shares, got shape {prior.shape}")
    if np.any(prior < 0) or not np.isfinite(prior).all():
        raise ValueError(f"prior shares must be finite and >= 0, got {prior.tolist()}")
    num_classes = logits.shape[1]
    counts, rates = _rates(targets, logits.argmax(axis=1), num_classes)
    present = counts > 0
    total = prior[present].sum()
    pi = np.where(present, prior, 0.0) / total if total > 0 else np.zeros(num_classes)
    mass = pi[:, None] * rates  # [C, C] expected share of images of class i predicted j
    predicted = mass.sum(axis=0)  # [C] expected share of images predicted as each class
    hits = np.diag(mass)  # [C] pi_c R[c, c]
    weights = np.divide(pi, counts, out=np.zeros_like(pi), where=present)[targets]  # [N] pi_y / n_y
    probabilities = softmax(logits)
    classes = [c for c in range(num_classes) if present[c]]
    precision: list[float | None] = [None] * num_classes
    recall: list[float | None] = [None] * num_classes
    f1: list[float | None] = [None] * num_classes
    ap: list[float | None] = [None] * num_classes
    for c in classes:
        precision[c] = _ratio(hits[c], predicted[c])
        recall[c] = float(rates[c, c])
        f1[c] = _ratio(2 * hits[c], pi[c] + predicted[c])  # 2 TP / (2 TP + FP + FN), TP + FN = pi_c
        ap[c] = _weighted_ap(targets == c, probabilities[:, c], weights)
    if num_classes == 2:
        both = bool(present.all())  # precision, F1 and false alarms need the majority's rates too
        return {
            f"{prefix}deploy_precision": precision[MINORITY] if both else None,
            f"{prefix}deploy_recall": recall[MINORITY],
            f"{prefix}deploy_f1": f1[MINORITY] if both else None,
            f"{prefix}deploy_false_alarms": _ratio(mass[MAJORITY, MINORITY], hits[MINORITY]) if both else None,
            f"{prefix}minority_ap": ap[MINORITY],
        }

    def macro(values: list[float | None]) -> float | None:
        """Mean over the classes the test split has; an undefined value (never predicted) counts as 0."""
        return float(np.mean([values[c] or 0.0 for c in classes])) if classes else None

    return {
        f"{prefix}deploy_macro_precision": macro(precision),
        f"{prefix}deploy_macro_recall": macro(recall),
        f"{prefix}deploy_macro_f1": macro(f1),
        f"{prefix}macro_ap": macro(ap),
        f"{prefix}deploy_per_class_precision": precision,
        f"{prefix}per_class_ap": ap,
    }
