"""Test-split metrics, computed with scikit-learn: a binary task (label 0 = majority, 1 = minority), or a
long-tailed task of C > 2 classes (per-class, many/medium/few-shot, top-k, MAP@5, macro-F1)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    silhouette_score,
)
from threadpoolctl import threadpool_limits

MAJORITY, MINORITY = 0, 1


def classification_metrics(targets: np.ndarray, predictions: np.ndarray, *, prefix: str = "test_") -> dict[str, object]:
    """Per-class accuracy (recall; the minority's is the paper's headline), accuracy, balanced accuracy,
    macro-F1 and the confusion matrix (rows = true class, columns = predicted; majority first). Keys start with
    ``prefix``, the split's name (``test_minority_acc``, ``val_minority_acc``)."""
    labels = [MAJORITY, MINORITY]
    per_class = recall_score(targets, predictions, labels=labels, average=None, zero_division=0)
    return {
        f"{prefix}minority_acc": float(per_class[MINORITY]),
        f"{prefix}majority_acc": float(per_class[MAJORITY]),
        f"{prefix}acc": float(accuracy_score(targets, predictions)),
        f"{prefix}balanced_acc": float(balanced_accuracy_score(targets, predictions)),
        f"{prefix}macro_f1": float(f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)),
        f"{prefix}confusion": confusion_matrix(targets, predictions, labels=labels).tolist(),
    }


#: Shot groups of the long-tail literature (Liu et al. 2019, OLTR): train count > 100, 20..100, < 20.
MANY_SHOT_ABOVE, FEW_SHOT_BELOW = 100, 20


def shot_group(train_count: int) -> str:
    """``"many"`` (> 100 training images), ``"medium"`` (20..100) or ``"few"`` (< 20)."""
    if train_count > MANY_SHOT_ABOVE:
        return "many"
    return "few" if train_count < FEW_SHOT_BELOW else "medium"


def top_k_accuracy(targets: np.ndarray, logits: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the k highest scores: targets int [N], logits float [N, C].

    Ties are broken by class index (``np.argsort`` order), the same way for every method.
    """
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == targets[:, None]).any(axis=1).mean())


def mean_average_precision_at_k(targets: np.ndarray, logits: np.ndarray, k: int = 5) -> float:
    """MAP@k with one true class per sample (the Kaggle whale competition's metric): the mean over samples of
    1 / rank of the true class within the top k scores, 0 when it is not among them. logits float [N, C]."""
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    hits = top == targets[:, None]  # [N, k], at most one True per row
    ranks = np.arange(1, top.shape[1] + 1)
    return float((hits / ranks).sum(axis=1).mean())


def long_tail_metrics(
    targets: np.ndarray, logits: np.ndarray, train_counts: Sequence[int], *, prefix: str = "test_"
) -> dict[str, object]:
    """Metrics of a many-class task: targets int [N] in 0..C-1, logits float [N, C], train_counts [C] per label.
    Keys start with ``prefix``, the split's name (``test_balanced_acc``, ``val_balanced_acc``).

    Per-class accuracy (recall, list by label), its mean (balanced accuracy: the headline), the mean per-class
    accuracy of the many / medium / few-shot classes (:func:`shot_group` of the train count; None when a group has no
    class), accuracy (= top-1), top-5 accuracy (only when C > 5), MAP@5, macro-F1 and the confusion matrix.
    """
    targets = np.asarray(targets, dtype=np.int64)
    logits = np.asarray(logits)
    num_classes = logits.shape[1]
    labels = list(range(num_classes))
    predictions = logits.argmax(axis=1)
    per_class = recall_score(targets, predictions, labels=labels, average=None, zero_division=0)
    present = [c for c in labels if np.any(targets == c)]
    groups: dict[str, list[float]] = {"many": [], "medium": [], "few": []}
    for c in present:
        groups[shot_group(int(train_counts[c]))].append(float(per_class[c]))
    metrics: dict[str, object] = {
        f"{prefix}acc": float(accuracy_score(targets, predictions)),
        f"{prefix}balanced_acc": float(np.mean([per_class[c] for c in present])),
        **{f"{prefix}{name}_acc": float(np.mean(values)) if values else None for name, values in groups.items()},
    }
    if num_classes > 5:
        metrics[f"{prefix}top5_acc"] = top_k_accuracy(targets, logits, 5)
    metrics[f"{prefix}map5"] = mean_average_precision_at_k(targets, logits, 5)
    metrics[f"{prefix}macro_f1"] = float(
        f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)
    )
    metrics[f"{prefix}per_class_acc"] = [float(v) for v in per_class]
    metrics[f"{prefix}confusion"] = confusion_matrix(targets, predictions, labels=labels).tolist()
    return metrics


#: Silhouette is O(N^2); above this many test images it is computed on a fixed random sample of them.
SILHOUETTE_MAX_SAMPLES = 4000


def feature_separation(features: np.ndarray, labels: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """How well the classes separate in feature space, measured on L2-normalised features (the geometry the
    cosine-similarity loss shapes), so both numbers ignore feature scale:

    - ``test_feature_silhouette``: scikit-learn's silhouette score with cosine distance, in [-1, 1];
    - ``test_feature_fisher``: the distance between the class means squared over the summed within-class
      variances, ``|mu_1 - mu_0|^2 / (tr S_0 + tr S_1)`` with ``S_k`` the class's covariance (ddof=0).

    A number that is undefined (a class absent, or no within-class spread) is left out of the result. Computed in
    float64 on one BLAS thread, so the numbers do not depend on how many threads the process has (a Ray worker
    with one CPU and a local run give the same bits).
    """
    with threadpool_limits(limits=1):
        return _separation(np.asarray(features, dtype=np.float64), labels, seed)


def _separation(features: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    unit = features / np.maximum(norms, 1e-12)
    if np.any((labels != MAJORITY) & (labels != MINORITY)):
        return _many_class_separation(unit, labels, seed)
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


def _many_class_separation(unit: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    """Silhouette (cosine) of L2-normalised features [N, D] over C > 2 classes; the Fisher ratio is binary only."""
    present = np.unique(labels)
    if len(present) < 2 or len(labels) <= len(present):
        return {}
    sample = SILHOUETTE_MAX_SAMPLES if len(labels) > SILHOUETTE_MAX_SAMPLES else None
    return {
        "test_feature_silhouette": float(
            silhouette_score(unit, labels, metric="cosine", sample_size=sample, random_state=seed)
        )
    }
