"""Whether a task's data can give the asked imbalance ratios: the training images per class each ratio gets from the
run's own subsampling rule (:mod:`bench.data.subsample`, the validation images held out first), and a note wherever
that differs from what was asked.

feasibility = check_feasibility({"deer": 60, "horse": 40}, [0.01, 0.001], majority_count=10000)
feasibility.outcomes[1].counts  # (60, 1)
feasibility.notes  # ("ratio 0.01 asks 0.6 minority images of 60; it gets 1 (actual ratio 0.0167)", ...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.data.errors import DataError
from bench.data.splits import DatasetSource, ImageSplit
from bench.data.subsample import long_tail_counts, subsample_task, trainable_counts, validation_counts
from bench.wording import join_and, plural

#: An actual ratio within this fraction of the asked one gets no note (e.g. 3 of 8 images for 0.4).
RATIO_TOLERANCE = 0.1
_SHOWN_CLASSES = 3  # short classes named in one note of a long-tailed task


@dataclass(frozen=True)
class RatioOutcome:
    """What one asked ratio gives: training images per class in task order (majority or head first)."""

    ratio: float
    counts: tuple[int, ...]
    note: str = ""  # "" when the subset gives the asked ratio (within RATIO_TOLERANCE)

    @property
    def actual(self) -> float:
        """Minority (tail) over majority (head) training images."""
        return self.counts[-1] / self.counts[0]


@dataclass(frozen=True)
class Feasibility:
    """Every asked ratio of one task: its outcome, and the notes a user should read before training."""

    classes: tuple[str, ...]
    outcomes: tuple[RatioOutcome, ...]  # one per distinct asked ratio, in the asked order
    same_subsets: tuple[str, ...] = ()  # "ratios 0.01 and 0.001 give the same training subset (60 vs 1)"

    @property
    def notes(self) -> tuple[str, ...]:
        """Each outcome's note, then which ratios give the same training subset; () when all is as asked."""
        return tuple(outcome.note for outcome in self.outcomes if outcome.note) + self.same_subsets


def training_counts(
    available: Sequence[int], *, majority_count: int, ratio: float, val_count: int = 0
) -> tuple[int, ...]:
    """Training images per class the run keeps (task order, majority or head first), by the run's own functions:
    ``subsample_task`` for two classes, ``long_tail_counts`` for more, with ``val_count`` validation images a class
    held out first (at most half of it; 0 when the data set has its own validation split, see
    :func:`carved_val_count`). available: images per class, all >= 1."""
    if len(available) > 2:
        return long_tail_counts(trainable_counts(available, val_count), majority_count=majority_count, ratio=ratio)
    labels = np.repeat(np.arange(2), available)
    subset = subsample_task(labels, 0, 1, majority_count=majority_count, ratio=ratio, seed=0, val_count=val_count)
    return subset.class_counts


def carved_val_count(source: DatasetSource, val_count: int) -> int:
    """Validation images a class gives up from the train split: ``val_count``, or 0 when the data set has its own
    validation split (the run validates on that)."""
    return 0 if source.val is not None else val_count


def _images(available: int, held: int) -> str:
    """ "40 images", or with validation images held out "40 images to train on (40 more for validation)"."""
    return f"{available} images" if not held else f"{available} images to train on ({held} more for validation)"


def _binary_note(
    classes: Sequence[str], available: Sequence[int], held: Sequence[int], ratio: float, counts: tuple[int, ...]
) -> str:
    """available: images per class left to train on; held: the validation images held out of each."""
    majority, minority = counts
    actual = minority / majority
    if abs(actual - ratio) <= RATIO_TOLERANCE * ratio:
        return ""
    exact = ratio * majority
    wanted = training_counts([majority, majority], majority_count=majority, ratio=ratio)[1]  # were there enough
    if minority < wanted:
        what = f"minority {classes[1]} has only {_images(available[1], held[1])}; ratio {ratio:g} needs {wanted}"
    else:
        what = f"ratio {ratio:g} asks {exact:.2g} minority images of {majority}; it gets {minority}"
    return f"{what} (actual ratio {actual:.3g})"


def _long_tail_note(
    classes: Sequence[str], available: Sequence[int], held: Sequence[int], ratio: float, counts: tuple[int, ...]
) -> str:
    """Classes too small for the profile at ``ratio``, else a tail rounded up far from the asked ratio, else ""."""
    n_max = counts[0]
    wanted = long_tail_counts([n_max] * len(counts), majority_count=n_max, ratio=ratio)  # were there enough
    actual = counts[-1] / n_max
    short = [i for i, n in enumerate(counts) if n < wanted[i]]
    if short:
        named = [
            f"{classes[i]} has only {_images(available[i], held[i])}, needs {wanted[i]}" for i in short[:_SHOWN_CLASSES]
        ]
        more = f" (and {plural(len(short) - _SHOWN_CLASSES, 'more class')})" if len(short) > _SHOWN_CLASSES else ""
        return f"ratio {ratio:g} is short of images: {'; '.join(named)}{more} (actual ratio {actual:.3g})"
    if abs(actual - ratio) <= RATIO_TOLERANCE * ratio:
        return ""
    tail = f"ratio {ratio:g} asks {ratio * n_max:.2g} tail images of {n_max}; it gets {counts[-1]}"
    return f"{tail} (actual ratio {actual:.3g})"


def _describe(counts: tuple[int, ...]) -> str:
    """(60, 1) -> "60 vs 1"; (60, 8, 1) -> "60 .. 1 per class, 69 in all"."""
    if len(counts) == 2:
        return f"{counts[0]} vs {counts[1]}"
    return f"{counts[0]} .. {counts[-1]} per class, {sum(counts)} in all"


def check_feasibility(
    available: Mapping[str, int], ratios: Sequence[float], *, majority_count: int, val_count: int = 0
) -> Feasibility:
    """The training images each ratio gives a task, with a note where the data cannot give the asked ratio.

    available: images per class in task order (majority then minority, or head to tail), e.g. readable images from
    ``bench doctor``, else the indexed files (``indexed_counts``). val_count: validation images held out of each
    class first (:func:`training_counts`). Notes read like "ratio 0.001 asks 0.06 minority images of 60; it gets 1
    (actual ratio 0.0167)", "minority horse has only 3 images; ratio 1 needs 8 (actual ratio 0.375)" and "ratios
    0.01 and 0.001 give the same training subset (60 vs 1)". DataError for a class without images.
    """
    classes, counts = tuple(available), [int(n) for n in available.values()]
    if len(classes) < 2:
        raise DataError(f"a task needs at least two classes, got {len(classes)}")
    empty = [name for name, n in zip(classes, counts, strict=True) if n < 1]
    if empty:
        raise DataError(f"class {empty[0]} has no images to train on; add some or pick another class")
    note = _long_tail_note if len(classes) > 2 else _binary_note
    held, left = validation_counts(counts, val_count), trainable_counts(counts, val_count)
    outcomes = []
    for ratio in dict.fromkeys(float(r) for r in ratios):
        kept = training_counts(counts, majority_count=majority_count, ratio=ratio, val_count=val_count)
        outcomes.append(RatioOutcome(ratio, kept, note(classes, left, held, ratio, kept)))
    same: dict[tuple[int, ...], list[float]] = {}
    for outcome in outcomes:
        same.setdefault(outcome.counts, []).append(outcome.ratio)
    shared = [
        f"ratios {join_and([f'{r:g}' for r in group])} give the same training subset ({_describe(kept)})"
        for kept, group in same.items()
        if len(group) > 1
    ]
    return Feasibility(classes, tuple(outcomes), tuple(shared))


def indexed_counts(split: ImageSplit, classes: Sequence[str]) -> dict[str, int]:
    """Images per class of ``split`` as indexed (unreadable files included), in the order of ``classes``."""
    return {name: len(split.indices_of(name)) for name in classes}


def left_out_note(source: DatasetSource, classes: Sequence[str]) -> str:
    """For a many-class task over every usable class (``--task lt``): the class folders it leaves out, else ""."""
    if len(classes) <= 2 or set(classes) != set(source.classes) or not source.unusable:
        return ""
    return f"it uses the {plural(len(classes), 'usable class')} and leaves out {join_and(list(source.unusable))}"


def task_notes(
    source: DatasetSource,
    tasks: Sequence[tuple[str, Sequence[str]]],
    ratios: Sequence[float],
    *,
    majority_count: int,
    val_count: int = 0,
) -> list[str]:
    """What a grid's tasks get from the indexed images (unreadable files counted), ``val_count`` validation images
    a class held out unless the data set has its own: "task fine: <note>" for every class folder ``--task lt``
    leaves out and every feasibility note. The tasks' classes must be usable."""
    held = carved_val_count(source, val_count)
    notes = []
    for task, classes in tasks:
        left_out = left_out_note(source, classes)
        available = indexed_counts(source.train, classes)
        feasibility = check_feasibility(available, ratios, majority_count=majority_count, val_count=held)
        notes += [f"task {task}: {note}" for note in ([left_out] if left_out else []) + list(feasibility.notes)]
    return notes
