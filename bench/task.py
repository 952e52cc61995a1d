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

import numpy as np

from bench.data import DataError, DatasetSource, ImageSplit, ImageStack, decode_split, decode_split_cached

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class TaskData:
    """Decoded train and test images of one task at one image size.

    Images from the decode cache are ImageStacks over read-only memmaps: index them, never copy them whole.
    ``train_ids`` name each training image for the record of which images a run used: ``<class>/<file>``
    within the train split for folders, the index in the split for built-in data sets.
    """

    classes: tuple[str, ...]  # (majority, minority), or C > 2 classes head to tail
    train_images: np.ndarray | ImageStack  # uint8 [N, S, S, 3]
    train_labels: np.ndarray  # int64 [N], the position of the image's class in `classes` (0 = majority)
    train_ids: tuple[str, ...]
    test_images: np.ndarray | ImageStack
    test_labels: np.ndarray
    skipped: tuple[str, ...]  # "path: reason" of unreadable files in either split

    @property
    def is_long_tail(self) -> bool:
        """More than two classes: the long-tailed protocol and many-class metrics apply."""
        return is_long_tail(self.classes)

    def test_counts(self) -> dict[str, int]:
        return {name: int((self.test_labels == label).sum()) for label, name in enumerate(self.classes)}


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
            close = difflib.get_close_matches(name, [*split.classes, *split.unusable], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise DataError(
                f"class '{name}' not found in the {split_name} split{hint}; classes: {', '.join(split.classes)}"
            )


def _task_labels(split: ImageSplit, labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Split labels int [N] (each one of ``classes``) -> positions in ``classes``: int64 [N]."""
    position = np.full(len(split.classes), -1, dtype=np.int64)
    for index, name in enumerate(classes):
        position[split.classes.index(name)] = index
    return position[np.asarray(labels, dtype=np.int64)]


def _ids(split: ImageSplit, indices: np.ndarray) -> tuple[str, ...]:
    if split.paths is None:
        return tuple(str(int(i)) for i in indices)
    paths = [split.paths[int(i)] for i in indices]
    root = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent.parent
    return tuple(p.relative_to(root).as_posix() for p in paths)


def prepare_task(
    source: DatasetSource,
    classes: tuple[str, ...],
    img_size: int,
    *,
    resize: str = "stretch",
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> TaskData:
    """Decode the task's classes in both splits at ``img_size``, made square as ``resize`` says (stretch, pad or
    center-crop: see :func:`bench.data.resize_square`); unreadable files are skipped and listed.

    With ``cache_dir``, ImageFolder splits go through the decode cache there (see :mod:`bench.data.cache`).
    """
    check_classes(source.train, classes, "train")
    check_classes(source.test, classes, source.test_split)
    decoded = {}
    for split_name, split in (("train", source.train), (source.test_split, source.test)):
        report = None if progress is None else (lambda done, total, what=split_name: progress(what, done, total))
        if cache_dir is None:
            decoded[split_name] = (split, decode_split(split, classes, img_size, resize=resize, progress=report))
        else:
            cached = decode_split_cached(split, classes, img_size, cache_dir, resize=resize, progress=report)
            decoded[split_name] = (split, cached)
    train_split, train = decoded["train"]
    test_split, test = decoded[source.test_split]
    return TaskData(
        classes=classes,
        train_images=train.images,
        train_labels=_task_labels(train_split, train.labels, classes),
        train_ids=_ids(train_split, train.source_indices),
        test_images=test.images,
        test_labels=_task_labels(test_split, test.labels, classes),
        skipped=train.skipped + test.skipped,
    )
