"""The imbalance protocols: a seeded, nested majority/minority subset of one split (the paper's binary task), or a
long-tailed subset of many classes (the CIFAR-10-LT protocol of Cui et al. 2019 and Cao et al. 2019)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench.data.errors import DataError


@dataclass(frozen=True, eq=False)
class TaskSubset:
    """Chosen images of a binary task.

    indices: int64 [majority_count + minority_count] into the labels given to `subsample_task`,
    majority first then minority, ascending within each class.
    """

    indices: np.ndarray
    majority_count: int
    minority_count: int

    @property
    def class_counts(self) -> tuple[int, ...]:
        """Images kept per task label: (majority, minority)."""
        return (self.majority_count, self.minority_count)


def _class_prefix(labels: np.ndarray, label: int, count: int, seed: int) -> np.ndarray:
    """The first `count` of a seeded permutation of the indices of `label`, sorted: int64 [count]."""
    members = np.flatnonzero(labels == label)
    order = np.random.default_rng([seed, label]).permutation(len(members))
    return np.sort(members[order[:count]]).astype(np.int64)


def _check_request(
    labels: np.ndarray, *, majority_count: int, ratio: float, seed: int
) -> tuple[np.ndarray, float, int]:
    """Validate a subsampling request; return (labels as a 1-D array, ratio as a float, seed as an int)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"labels must be a 1-D array of class indices, got shape {labels.shape}")
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        raise DataError(f"imbalance ratio must be a number in (0, 1], got {ratio!r}") from None
    if not 0.0 < ratio <= 1.0:
        raise DataError(f"imbalance ratio must be in (0, 1], got {ratio!r}; use e.g. 1, 0.1 or 0.01")
    if majority_count < 1:
        raise DataError(f"majority_count must be at least 1, got {majority_count}")
    seed = int(seed)
    if seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed}")
    return labels, ratio, seed


def subsample_task(
    labels: np.ndarray, majority: int, minority: int, *, majority_count: int, ratio: float, seed: int
) -> TaskSubset:
    """Keep min(majority_count, available) majority images and max(1, round(ratio * kept)) minority images.

    labels: int [N] class indices. The minority count rounds half up and is capped at what exists.
    Each class is a prefix of one permutation drawn from `np.random.default_rng([seed, class])`, so for a
    fixed seed the subsets are nested: a smaller ratio (or majority_count) picks a subset of a larger one.
    """
    labels, ratio, seed = _check_request(labels, majority_count=majority_count, ratio=ratio, seed=seed)
    majority, minority = int(majority), int(minority)
    if majority == minority:
        raise DataError(f"majority and minority must be different classes, got {majority} twice")
    available = {c: int(np.count_nonzero(labels == c)) for c in (majority, minority)}
    for c, n in available.items():
        if n == 0:
            raise DataError(f"class index {c} has no images in this split; pick classes that exist")
    kept_majority = min(majority_count, available[majority])
    wanted_minority = max(1, math.floor(ratio * kept_majority + 0.5))
    kept_minority = min(wanted_minority, available[minority])
    indices = np.concatenate(
        [_class_prefix(labels, majority, kept_majority, seed), _class_prefix(labels, minority, kept_minority, seed)]
    )
    return TaskSubset(indices=indices, majority_count=kept_majority, minority_count=kept_minority)


def long_tail_counts(available: Sequence[int], *, majority_count: int, ratio: float) -> tuple[int, ...]:
    """Training images per class of the long-tailed profile: n_i = floor(n_max * ratio^(i / (C - 1))).

    available: images per class in the split, head class first ([C], C >= 2). n_max = min(majority_count,
    available[0]); each n_i is capped at available[i] and is at least 1. ratio = n_tail / n_head before capping
    (0.01 = imbalance factor 100). A tiny tolerance keeps float error from flooring e.g. 5.0 to 4.
    """
    n_max = min(int(majority_count), int(available[0]))
    last = len(available) - 1
    counts = []
    for i, n in enumerate(available):
        wanted = max(1, math.floor(n_max * ratio ** (i / last) + 1e-9))
        counts.append(min(wanted, int(n)))
    return tuple(counts)


@dataclass(frozen=True, eq=False)
class LongTailSubset:
    """Chosen images of a many-class long-tailed task.

    indices: int64 [sum(class_counts)] into the labels given to `subsample_long_tail`, class 0 (head) first, ascending
    within each class. class_counts: images kept per class label 0..C-1.
    """

    indices: np.ndarray
    class_counts: tuple[int, ...]


def subsample_long_tail(
    labels: np.ndarray, num_classes: int, *, majority_count: int, ratio: float, seed: int
) -> LongTailSubset:
    """The standard long-tailed protocol over labels 0..C-1 (0 = head): class i keeps `long_tail_counts` images.

    labels: int [N] task labels. Each class is a prefix of the same seeded permutation as `subsample_task` uses
    (`np.random.default_rng([seed, class])`), so for a fixed seed the subsets are nested across ratios.
    """
    if num_classes < 2:
        raise DataError(f"a long-tailed task needs at least 2 classes, got {num_classes}")
    labels, ratio, seed = _check_request(labels, majority_count=majority_count, ratio=ratio, seed=seed)
    available = [int(np.count_nonzero(labels == c)) for c in range(num_classes)]
    for c, n in enumerate(available):
        if n == 0:
            raise DataError(f"class index {c} has no images in this split; pick classes that exist")
    counts = long_tail_counts(available, majority_count=majority_count, ratio=ratio)
    indices = np.concatenate([_class_prefix(labels, c, n, seed) for c, n in enumerate(counts)])
    return LongTailSubset(indices=indices, class_counts=counts)
