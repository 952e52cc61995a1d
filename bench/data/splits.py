"""The data containers every source returns: one split of labelled images, and a data set."""

from __future__ import annotations

import bisect
import hashlib
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np

from bench.data.errors import DataError

if TYPE_CHECKING:
    from bench.data.index import ClassRecord


class PathTable(Sequence[Path]):
    """The files of an ImageFolder split, class folder by class folder: a :class:`~pathlib.Path` is made only for a
    file asked for, so a split of hundreds of thousands of files costs strings, not Path objects (the profile of
    issue 18: Path objects were most of the time to open a large tree).

    blocks: (folder, names) in split order; a file is ``Path(folder, name)``.
    """

    def __init__(self, blocks: Sequence[tuple[str, Sequence[str]]]) -> None:
        self._folders = [str(folder) for folder, _ in blocks]
        self._names = [tuple(names) for _, names in blocks]
        self._starts = [0]
        for names in self._names:
            self._starts.append(self._starts[-1] + len(names))

    def __len__(self) -> int:
        return self._starts[-1]

    @overload
    def __getitem__(self, index: int) -> Path: ...
    @overload
    def __getitem__(self, index: slice) -> list[Path]: ...
    def __getitem__(self, index: int | slice) -> Path | list[Path]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = operator.index(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"file {index} of a split of {len(self)}")
        block = bisect.bisect_right(self._starts, index) - 1
        return Path(self._folders[block], self._names[block][index - self._starts[block]])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(str(mine) == str(theirs) for mine, theirs in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PathTable({len(self)} files in {len(self._folders)} folders)"


@dataclass(frozen=True, eq=False)
class ImageSplit:
    """One split of a data set; exactly one of `images` and `paths` is set.

    classes: class names, label i is classes[i]. labels: int64 [N].
    images: uint8 [N, H, W, 3] RGB when held in memory. paths: N image files when on disk.
    unusable: class folders of the data set left out of `classes` (both splits carry the same), name -> why and
    what to do, e.g. a folder without images or one the other split lacks.
    folder: the split's folder (``<root>/train``) when on disk: image ids are paths relative to its parent.
    records: class name -> its folder's :class:`bench.data.index.ClassRecord` (ImageFolder splits; the fingerprint
    and the decode cache's keys come from them). unindexed: class folders of the split this command did not index
    because it does not use them (named in messages only).
    """

    classes: tuple[str, ...]
    labels: np.ndarray
    images: np.ndarray | None = None
    paths: Sequence[Path] | None = None  # a tuple, or a PathTable for an ImageFolder split
    unusable: dict[str, str] = field(default_factory=dict)
    folder: Path | None = None
    records: dict[str, ClassRecord] = field(default_factory=dict)
    unindexed: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.int64)
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "labels", labels)
        if labels.ndim != 1:
            raise DataError(f"labels must be 1-D, got shape {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.classes)):
            raise DataError(f"labels must lie in 0..{len(self.classes) - 1} (one per class name)")
        if (self.images is None) == (self.paths is None):
            raise DataError("an ImageSplit needs exactly one of images (in memory) or paths (on disk)")
        if self.images is not None:
            shape = self.images.shape
            if self.images.dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or shape[0] != len(labels):
                raise DataError(f"images must be uint8 [{len(labels)}, H, W, 3], got {self.images.dtype} {shape}")
        if self.paths is not None:
            if not isinstance(self.paths, PathTable):
                object.__setattr__(self, "paths", tuple(Path(p) for p in self.paths))
            if len(self.paths) != len(labels):
                raise DataError(f"got {len(self.paths)} paths for {len(labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        held = f"images=uint8{list(self.images.shape)}" if self.images is not None else f"paths=[{len(self)} files]"
        return f"ImageSplit(classes={list(self.classes)}, n={len(self)}, {held})"

    def class_index(self, class_name: str) -> int:
        """Label of `class_name`; DataError naming the known classes if it is not one of them."""
        try:
            return self.classes.index(class_name)
        except ValueError:
            known = ", ".join(sorted([*self.classes, *self.unindexed]))
            raise DataError(f"unknown class {class_name!r}; the classes are: {known}") from None

    def indices_of(self, class_name: str) -> np.ndarray:
        """Indices of the images of `class_name`, ascending: int64 [n]."""
        return np.flatnonzero(self.labels == self.class_index(class_name)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class DatasetSource:
    """A data set ready for the benchmark: both splits share `classes` and label numbering.

    name: "digits", "cifar10" or the folder path as given. test_split: "test", "val" or "valid".
    val: the data set's own validation split (an ImageFolder with both ``test/`` and ``val/`` or ``valid/``), with
    the same classes; None when validation is carved from ``train`` (:mod:`bench.data.subsample`). val_split: its
    folder's name ("val" or "valid"), "" without one.
    tasks: presets, name -> (majority, minority), or more than two classes head first (long-tailed); a preset may
    name an unusable class folder (an error only when a run uses it). defaults: data-set specific settings
    (img_size, epochs, majority_count, seeds); empty for user folders, except a copy of CIFAR-10 (its ten class
    folders), which gets the built-in cifar10's, named by defaults_from. fingerprint: short hash of the data the
    source holds (an ImageFolder source holds only the classes it was opened with); a run is keyed by
    :meth:`fingerprint_of` its task's classes.
    """

    name: str
    train: ImageSplit
    test: ImageSplit
    test_split: str
    tasks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    defaults: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""
    defaults_from: str = ""  # whose defaults ``defaults`` are, when not the data set's own name's
    val: ImageSplit | None = None
    val_split: str = ""

    def __post_init__(self) -> None:
        if self.train.classes != self.test.classes:
            raise DataError(f"{self.name}: train and {self.test_split} splits must have the same classes in one order")
        if self.val is not None and self.val.classes != self.train.classes:
            raise DataError(f"{self.name}: train and {self.val_split} splits must have the same classes in one order")
        for task, names in self.tasks.items():
            for name in names:
                if name not in self.train.classes and name not in self.unusable and name not in self.train.unindexed:
                    known = ", ".join(sorted([*self.train.classes, *self.train.unindexed]))
                    raise DataError(f"task {task!r} of {self.name} names unknown class {name!r}; classes: {known}")

    def fingerprint_of(self, classes: tuple[str, ...] | list[str]) -> str:
        """16 hex digits identifying the images of ``classes`` (in this order) in every split: for an ImageFolder
        source a hash of those class folders' records (file paths and sizes), so a class folder added, changed or
        removed elsewhere in the tree leaves the task's finished runs valid; a built-in's fixed fingerprint."""
        splits = [(self.train, "train"), (self.test, self.test_split)]
        if self.val is not None:
            splits.append((self.val, self.val_split))
        if not any(split.records for split, _ in splits):
            return self.fingerprint
        digest = hashlib.sha256(b"bench data v2\n")
        for split, name in splits:
            for class_name in classes:
                record = split.records.get(class_name)
                digest.update(f"{name}/{class_name}\0{record.digest if record is not None else '-'}\n".encode())
        return digest.hexdigest()[:16]

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names shared by both splits (each with images in both)."""
        return self.train.classes

    @property
    def unusable(self) -> dict[str, str]:
        """Class folders left out of `classes`, name -> why and what to do; {} for the built-in data sets."""
        return {**self.train.unusable, **self.test.unusable}
