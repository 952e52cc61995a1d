"""Test-split metrics of a binary task (label 0 = majority, 1 = minority), computed with scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    silhouette_score,
)

MAJORITY, MINORITY = 0, 1


def classification_metrics(targets: np.ndarray, predictions: np.ndarray) -> dict[str, object]:
    """Per-class accuracy (recall; the minority's is the paper's headline), accuracy, balanced accuracy,
    macro-F1 and the confusion matrix (rows = true class, columns = predicted; majority first)."""
    labels = [MAJORITY, MINORITY]
    per_class = recall_score(targets, predictions, labels=labels, average=None, zero_division=0)
    return {
        "test_minority_acc": float(per_class[MINORITY]),
        "test_majority_acc": float(per_class[MAJORITY]),
        "test_acc": float(accuracy_score(targets, predictions)),
        "test_balanced_acc": float(balanced_accuracy_score(targets, predictions)),
        "test_macro_f1": float(f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)),
        "test_confusion": confusion_matrix(targets, predictions, labels=labels).tolist(),
    }


#: Silhouette is O(N^2); above this many test images it is computed on a fixed random sample of them.
SILHOUETTE_MAX_SAMPLES = 4000


def feature_separation(features: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """How well the classes separate in feature space, measured on L2-normalised features (the geometry the
    cosine-similarity loss shapes), so both numbers ignore feature scale:

    - ``test_feature_silhouette``: scikit-learn's silhouette score with cosine distance, in [-1, 1];
    - ``test_feature_fisher``: the distance between the class means squared over the summed within-class
      variances, ``|mu_1 - mu_0|^2 / (tr S_0 + tr S_1)`` with ``S_k`` the class's covariance (ddof=0).

    A number that is undefined (a class absent, or no within-class spread) is left out of the result.
    """
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.maximum(norms, 1e-12)
    present = [label for label in (MAJORITY, MINORITY) if np.any(labels == label)]
    if len(present) < 2:
        return {}
    result: dict[str, float] = {}
    if len(labels) > len(present):  # silhouette needs more points than classes
        sample = SILHOUETTE_MAX_SAMPLES if len(labels) > SILHOUETTE_MAX_SAMPLES else None
        result["test_feature_silhouette"] = float(
            silhouette_score(unit, labels, metric="cosine", sample_size=sample, random_state=seed)
        )
    means = [unit[labels == label].mean(axis=0) for label in (MAJORITY, MINORITY)]
    within = sum(
        float(((unit[labels == label] - mean) ** 2).sum(axis=1).mean())
        for label, mean in zip((MAJORITY, MINORITY), means, strict=True)
    )
    if within > 0:
        result["test_feature_fisher"] = float(((means[1] - means[0]) ** 2).sum() / within)
    return result
