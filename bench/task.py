"""A task's images, decoded once per grid (or read from the decode cache).

A binary task's labels are majority -> 0, minority -> 1; a long-tailed task of C > 2 classes labels its classes
0..C-1 in the task's class order (head first).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.data import (
    DataError,
    DatasetSource,
    DecodedImages,
    ImageSplit,
    ImageStack,
    decode_split,
    decode_split_cached,
)

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class TaskData:
    """Decoded train and test images of one task at one image size, and the data set's own validation images.

    Images from the decode cache are ImageStacks over read-only memmaps: index them, never copy them whole.
    The ids name each image in the run folder's records (subset.json, the saved outputs): for folders its path
    relative to the data set's root, posix (``train/deer/0001.jpg``), for built-in data sets its index in its split.
    Without an own validation split (``val_split`` ""), validation images are carved from the train split.
    """

    classes: tuple[str, ...]  # (majority, minority), or C > 2 classes head to tail
    train_images: np.ndarray | ImageStack  # uint8 [N, S, S, 3]
    train_labels: np.ndarray  # int64 [N], the position of the image's class in `classes` (0 = majority)
    train_ids: tuple[str, ...]
    test_images: np.ndarray | ImageStack
    test_labels: np.ndarray
    skipped: tuple[str, ...]  # "path: reason" of unreadable files in any split
    test_ids: tuple[str, ...] = ()
    val_images: np.ndarray | ImageStack | None = None  # uint8 [V, S, S, 3], the data set's own val/ split
    val_labels: np.ndarray | None = None  # int64 [V]
    val_ids: tuple[str, ...] = ()
    val_split: str = ""  # the own validation split's folder name ("val" or "valid"); "" when carved from train
    val_problem: str = ""  # why the own validation split cannot serve (a class without images; then no val_images)

    @property
    def is_long_tail(self) -> bool:
        """More than two classes: the long-tailed protocol and many-class metrics apply."""
        return is_long_tail(self.classes)

    def test_counts(self) -> dict[str, int]:
        return {name: int((self.test_labels == label).sum()) for label, name in enumerate(self.classes)}

    @property
    def val_source(self) -> str:
        """Where the validation images come from: the own split's folder name, else "train" (carved)."""
        return self.val_split or "train"


def is_long_tail(classes: Sequence[str]) -> bool:
    """A task of more than two classes is long-tailed (head first); two classes are (majority, minority)."""
    return len(classes) > 2


def check_classes(split: ImageSplit, classes: Sequence[str], split_name: str) -> None:
    """One-line error for a class the split does not have: its class folder's fault and fix when the folder is
    unusable, else the close names and the full list."""
    for name in classes:
        if name in split.unusable:
            raise DataError(f"class '{name}' cannot be used: {split.unusable[name]}")
        if name not in split.classes:
            close = difflib.get_close_matches(name, [*split.classes, *split.unusable, *split.unindexed], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(sorted([*split.classes, *split.unindexed]))
            raise DataError(f"class '{name}' not found in the {split_name} split{hint}; classes: {known}")


def _task_labels(split: ImageSplit, labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Split labels int [N] (each one of ``classes``) -> positions in ``classes``: int64 [N]."""
    position = np.full(len(split.classes), -1, dtype=np.int64)
    for index, name in enumerate(classes):
        position[split.classes.index(name)] = index
    return position[np.asarray(labels, dtype=np.int64)]


def _ids(split: ImageSplit, indices: np.ndarray) -> tuple[str, ...]:
    """Ids of ``split``'s images at ``indices`` int [N]: the index as a string for images in memory, else the path
    relative to the data set's root (the parent of the split's folder), posix; a split without a folder (built by
    hand) falls back to the path below the files' common folder."""
    if split.paths is None:
        return tuple(str(int(i)) for i in indices)
    paths = [split.paths[int(i)] for i in indices]
    if not paths:
        return ()
    if split.folder is not None:
        root = split.folder.parent
    else:
        root = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent.parent
    return tuple(p.relative_to(root).as_posix() for p in paths)


def _own_val_problem(split: ImageSplit, classes: Sequence[str], split_name: str) -> str:
    """One line naming the first of ``classes`` without image files in ``split`` and what to do; "" when none."""
    for name in classes:
        if not len(split.indices_of(name)):
            where = split.folder / name if split.folder is not None else f"the {split_name} split"
            return (
                f"class '{name}' has no images in {where}, the data set's validation split; add some, or pass "
                "--val-count 0"
            )
    return ""


def check_val_classes(source: DatasetSource, classes: Sequence[str], val_count: int) -> None:
    """One-line DataError, before anything is decoded, when runs validate (``val_count`` > 0) on the data set's own
    validation split and it has no image file of one of ``classes``."""
    if val_count and source.val is not None:
        problem = _own_val_problem(source.val, classes, source.val_split)
        if problem:
            raise DataError(problem)


def prepare_task(
    source: DatasetSource,
    classes: tuple[str, ...],
    img_size: int,
    *,
    resize: str = "stretch",
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    validation: bool = True,
) -> TaskData:
    """Decode the task's classes in the train and test splits (and the data set's own validation split, if it has
    one and ``validation``) at ``img_size``, made square as ``resize`` says (stretch, pad or center-crop: see
    :func:`bench.data.resize_square`); unreadable files are skipped and listed.

    With ``cache_dir``, ImageFolder splits go through the decode cache there (see :mod:`bench.data.cache`). A class
    without (readable) images in the own validation split is no error here (``--val-count 0`` does not read it):
    ``val_problem`` says it, and a run that validates raises it.
    """
    check_classes(source.train, classes, "train")
    check_classes(source.test, classes, source.test_split)

    def decode(split_name: str, split: ImageSplit) -> DecodedImages:
        report = None if progress is None else (lambda done, total: progress(split_name, done, total))
        if cache_dir is None:
            return decode_split(split, classes, img_size, resize=resize, progress=report)
        return decode_split_cached(split, classes, img_size, cache_dir, resize=resize, progress=report)

    train, test = decode("train", source.train), decode(source.test_split, source.test)
    skipped = train.skipped + test.skipped
    own_val: dict[str, Any] = {}
    if validation and source.val is not None:
        problem = _own_val_problem(source.val, classes, source.val_split)
        own_val = {"val_split": source.val_split, "val_problem": problem}
        if not problem:
            try:
                val = decode(source.val_split, source.val)
            except DataError as error:  # no readable image of a class
                own_val["val_problem"] = f"validation split {source.val_split}/: {error}, or pass --val-count 0"
            else:
                own_val.update(
                    val_images=val.images,
                    val_labels=_task_labels(source.val, val.labels, classes),
                    val_ids=_ids(source.val, val.source_indices),
                )
                skipped += val.skipped
    return TaskData(
        classes=classes,
        train_images=train.images,
        train_labels=_task_labels(source.train, train.labels, classes),
        train_ids=_ids(source.train, train.source_indices),
        test_images=test.images,
        test_labels=_task_labels(source.test, test.labels, classes),
        skipped=skipped,
        test_ids=_ids(source.test, test.source_indices),
        **own_val,
    )
