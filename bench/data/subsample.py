"""The imbalance protocols: a seeded, nested majority/minority subset of one split (the paper's binary task), or a
long-tailed subset of many classes (the CIFAR-10-LT protocol of Cui et al. 2019 and Cao et al. 2019), each with a
validation split carved from the same split's images.

Each class's images are put in one seeded order (``np.random.default_rng([seed, class])``): the training subset is a
prefix of it and the validation images are its last v_c = min(val_count, n_c // 2) entries; the training prefix is
capped at n_c - v_c. So the validation images are disjoint from the training subset at every ratio, the same for
every method and ratio of a seed, and the training subsets stay nested. ``val_count=0`` holds nothing out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.data.errors import DataError


@dataclass(frozen=True, eq=False)
class TaskSubset:
    """Chosen images of a binary task.

    indices: int64 [majority_count + minority_count] into the labels given to `subsample_task`,
    majority first then minority, ascending within each class. val_indices: int64 [sum(val_counts)] the validation
    images held out, into the same labels and in the same order; val_counts: (majority, minority) of them.
    """

    indices: np.ndarray
    majority_count: int
    minority_count: int
    val_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    val_counts: tuple[int, ...] = (0, 0)

    @property
    def class_counts(self) -> tuple[int, ...]:
        """Images kept per task label: (majority, minority)."""
        return (self.majority_count, self.minority_count)


def validation_counts(available: Sequence[int], val_count: int) -> tuple[int, ...]:
    """Validation images held out per class: v_c = min(val_count, n_c // 2), so a class keeps at least half its
    images for training. available: images per class n_c; e.g. ([5000, 7, 1], 100) -> (100, 3, 0)."""
    return tuple(min(int(val_count), int(n) // 2) for n in available)


def trainable_counts(available: Sequence[int], val_count: int) -> tuple[int, ...]:
    """Images per class left for training once the validation images are held out: n_c - v_c."""
    held = validation_counts(available, val_count)
    return tuple(int(n) - v for n, v in zip(available, held, strict=True))


def _class_split(labels: np.ndarray, label: int, count: int, held: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` and the last `held` of a seeded permutation of the indices of `label`, each sorted:
    (int64 [count], int64 [held]). count + held must not exceed the class's images, so the two never meet."""
    members = np.flatnonzero(labels == label)
    assert count + held <= len(members)
    order = np.random.default_rng([seed, label]).permutation(len(members))
    train = np.sort(members[order[:count]]).astype(np.int64)
    val = np.sort(members[order[len(members) - held :]]).astype(np.int64)
    return train, val


def _check_request(
    labels: np.ndarray, *, majority_count: int, ratio: float, seed: int, val_count: int
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
    if val_count < 0:
        raise DataError(f"val_count must be 0 (no validation) or more, got {val_count}")
    return labels, ratio, seed


def subsample_task(
    labels: np.ndarray,
    majority: int,
    minority: int,
    *,
    majority_count: int,
    ratio: float,
    seed: int,
    val_count: int = 0,
) -> TaskSubset:
    """Keep min(majority_count, trainable) majority images and max(1, round(ratio * kept)) minority images, and hold
    out v_c = min(val_count, available // 2) images of each class for validation (trainable = available - v_c).

    labels: int [N] class indices. The minority count rounds half up and is capped at what the class has left.
    Each class is a prefix of one permutation drawn from `np.random.default_rng([seed, class])`, so for a
    fixed seed the subsets are nested: a smaller ratio (or majority_count) picks a subset of a larger one. The
    validation images are the permutation's last v_c entries: the same at every ratio, never trained on.
    """
    labels, ratio, seed = _check_request(
        labels, majority_count=majority_count, ratio=ratio, seed=seed, val_count=val_count
    )
    majority, minority = int(majority), int(minority)
    if majority == minority:
        raise DataError(f"majority and minority must be different classes, got {majority} twice")
    available = {c: int(np.count_nonzero(labels == c)) for c in (majority, minority)}
    for c, n in available.items():
        if n == 0:
            raise DataError(f"class index {c} has no images in this split; pick classes that exist")
    held = dict(zip(available, validation_counts(list(available.values()), val_count), strict=True))
    kept_majority = min(majority_count, available[majority] - held[majority])
    wanted_minority = max(1, math.floor(ratio * kept_majority + 0.5))
    kept_minority = min(wanted_minority, available[minority] - held[minority])
    majority_train, majority_val = _class_split(labels, majority, kept_majority, held[majority], seed)
    minority_train, minority_val = _class_split(labels, minority, kept_minority, held[minority], seed)
    return TaskSubset(
        indices=np.concatenate([majority_train, minority_train]),
        majority_count=kept_majority,
        minority_count=kept_minority,
        val_indices=np.concatenate([majority_val, minority_val]),
        val_counts=(held[majority], held[minority]),
    )


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
    within each class. class_counts: images kept per class label 0..C-1. val_indices: int64 [sum(val_counts)] the
    validation images held out, in the same order; val_counts: per class label (all 0 without validation).
    """

    indices: np.ndarray
    class_counts: tuple[int, ...]
    val_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    val_counts: tuple[int, ...] = ()


def subsample_long_tail(
    labels: np.ndarray, num_classes: int, *, majority_count: int, ratio: float, seed: int, val_count: int = 0
) -> LongTailSubset:
    """The standard long-tailed protocol over labels 0..C-1 (0 = head): class i keeps `long_tail_counts` images of
    those left once v_i = min(val_count, available_i // 2) are held out for validation.

    labels: int [N] task labels. Each class is a prefix of the same seeded permutation as `subsample_task` uses
    (`np.random.default_rng([seed, class])`), so for a fixed seed the subsets are nested across ratios; its last v_i
    entries are the class's validation images.
    """
    if num_classes < 2:
        raise DataError(f"a long-tailed task needs at least 2 classes, got {num_classes}")
    labels, ratio, seed = _check_request(
        labels, majority_count=majority_count, ratio=ratio, seed=seed, val_count=val_count
    )
    available = [int(np.count_nonzero(labels == c)) for c in range(num_classes)]
    for c, n in enumerate(available):
        if n == 0:
            raise DataError(f"class index {c} has no images in this split; pick classes that exist")
    held = validation_counts(available, val_count)
    counts = long_tail_counts(trainable_counts(available, val_count), majority_count=majority_count, ratio=ratio)
    parts = [_class_split(labels, c, n, held[c], seed) for c, n in enumerate(counts)]
    return LongTailSubset(
        indices=np.concatenate([train for train, _ in parts]),
        class_counts=counts,
        val_indices=np.concatenate([val for _, val in parts]),
        val_counts=held,
    )
