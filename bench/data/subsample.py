"""The paper's imbalance protocol: a seeded, nested majority/minority subset of one split."""

from __future__ import annotations

import math
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


def _class_prefix(labels: np.ndarray, label: int, count: int, seed: int) -> np.ndarray:
    """The first `count` of a seeded permutation of the indices of `label`, sorted: int64 [count]."""
    members = np.flatnonzero(labels == label)
    order = np.random.default_rng([seed, label]).permutation(len(members))
    return np.sort(members[order[:count]]).astype(np.int64)


def subsample_task(
    labels: np.ndarray, majority: int, minority: int, *, majority_count: int, ratio: float, seed: int
) -> TaskSubset:
    """Keep min(majority_count, available) majority images and max(1, round(ratio * kept)) minority images.

    labels: int [N] class indices. The minority count rounds half up and is capped at what exists.
    Each class is a prefix of one permutation drawn from `np.random.default_rng([seed, class])`, so for a
    fixed seed the subsets are nested: a smaller ratio (or majority_count) picks a subset of a larger one.
    """
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
    majority, minority, seed = int(majority), int(minority), int(seed)
    if seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed}")
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
