"""Test-split metrics of a binary task (label 0 = majority, 1 = minority), computed with scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

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
