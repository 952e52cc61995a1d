"""A user's ImageFolder tree: root/train/<class>/<images> plus root/test/ (or val/, valid/) and optional bench.toml.

With both test/ and val/ (or valid/), test/ is the test split and val/ the data set's own validation split.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.data.cifar import CIFAR10_CLASSES, CIFAR10_DEFAULTS
from bench.data.errors import DataError
from bench.data.index import IMAGE_EXTENSIONS, ClassIndex, ClassRecord
from bench.data.splits import DatasetSource, ImageSplit, PathTable
from bench.data.taskfile import load_task_file

EVAL_SPLITS = ("test", "val", "valid")
VAL_SPLITS = ("val", "valid")  # a folder of these beside test/ is the validation split
TASK_FILE = "bench.toml"


def _class_dirs(split_dir: Path) -> list[str]:
    """Names of the visible sub-folders of a split, sorted (so labels never depend on filesystem order)."""
    names = sorted(e.name for e in os.scandir(split_dir) if not e.name.startswith(".") and e.is_dir())
    if not names:
        raise DataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<images>")
    return names


def _unusable_reason(name: str, folders: dict[Path, tuple[str, ...] | None]) -> str:
    """Why class ``name`` cannot be used and what to do, on one line; "" when it can be used.

    folders: split folder -> the class's image files there, None when that split has no folder of this name.
    """
    extensions = " ".join(sorted(IMAGE_EXTENSIONS))
    faults = [
        f"{split_dir / name} does not exist" if files is None else f"{split_dir / name} has no images ({extensions})"
        for split_dir, files in folders.items()
        if not files
    ]
    if not faults:
        return ""
    existing = " and ".join(str(split_dir / name) for split_dir, files in folders.items() if files is not None)
    return f"{' and '.join(faults)}; add images of {name} to both splits or remove {existing}"


def _read_split(
    split_dir: Path,
    classes: tuple[str, ...],
    records: dict[str, ClassRecord | None],
    unusable: dict[str, str],
    unindexed: tuple[str, ...],
) -> ImageSplit:
    """The split of the usable ``classes`` (label i = classes[i]) from each class folder's record (None: no folder,
    which only the validation split may lack)."""
    blocks = [(str(split_dir / name), records[name].names) for name in classes if records[name] is not None]
    counts = [0 if records[name] is None else len(records[name]) for name in classes]
    return ImageSplit(
        classes=classes,
        labels=np.repeat(np.arange(len(classes), dtype=np.int64), counts),
        paths=PathTable(blocks),
        unusable=unusable,
        folder=split_dir,
        records={name: record for name, record in records.items() if name in classes and record is not None},
        unindexed=unindexed,
    )


def open_folder(
    data: str | Path, classes: Sequence[str] | None = None, *, cache_dir: Path | None = None
) -> DatasetSource:
    """Index an ImageFolder tree (no image is opened here); DataError with a one-line fix for a bad layout.

    classes: the class folders to index (those a command uses; names without a folder are left for the task checks to
    report); None: every class folder. Class folders left out are not listed at all: the source's ``classes`` and
    ``unusable`` are then only of the indexed ones, and each split names the others in ``unindexed``. cache_dir:
    where the per-class index is kept (:mod:`bench.data.index`); None: not kept.
    """
    root = Path(data).expanduser()
    layout = f"expected {root}/train/<class>/<images> and {root}/test/<class>/<images>"
    if not root.exists():
        raise DataError(f"data path {root} does not exist; pass 'digits', 'cifar10' or an ImageFolder root ({layout})")
    if not root.is_dir():
        raise DataError(f"data path {root} is not a directory; {layout}")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataError(f"no train split in {root}: expected {train_dir}/<class>/<images>")
    test_split = next((s for s in EVAL_SPLITS if (root / s).is_dir()), None)
    if test_split is None:
        raise DataError(f"no evaluation split in {root}: expected {root}/test/<class>/<images> (or val/ or valid/)")
    test_dir = root / test_split
    val_split = next((s for s in VAL_SPLITS if (root / s).is_dir()), "") if test_split == "test" else ""
    folders = {split_dir: set(_class_dirs(split_dir)) for split_dir in (train_dir, test_dir)}
    names = sorted(folders[train_dir] | folders[test_dir])
    wanted = names if classes is None else [n for n in names if n in set(classes)]
    unindexed = tuple(n for n in names if n not in wanted)
    index = ClassIndex(cache_dir)
    records = {
        split_dir: {n: index.record(split_dir / n) if n in folders[split_dir] else None for n in wanted}
        for split_dir in (train_dir, test_dir)
    }
    reasons = {
        n: _unusable_reason(n, {split_dir: None if found[n] is None else found[n].names for split_dir, found in
                                records.items()})
        for n in wanted
    }  # fmt: skip
    unusable = {n: reason for n, reason in reasons.items() if reason}
    usable = tuple(n for n in wanted if n not in unusable)
    train, test = (
        _read_split(split_dir, usable, records[split_dir], unusable, unindexed) for split_dir in (train_dir, test_dir)
    )
    val = None
    if val_split:  # its class folders beyond the usable classes are not read; a missing one is found by the run
        val_dir = root / val_split
        found = {n: index.record(val_dir / n) if (val_dir / n).is_dir() else None for n in usable}
        val = _read_split(val_dir, usable, found, unusable, unindexed)
    tasks: dict[str, tuple[str, ...]] = {}
    task_file = root / TASK_FILE
    if task_file.is_file():
        tasks = load_task_file(task_file)
        for task, task_classes in tasks.items():
            unknown = [c for c in task_classes if c not in names]
            if unknown:
                raise DataError(
                    f"{task_file}: task {task!r} names class {unknown[0]!r}, which is not a folder in {train_dir} "
                    f"(classes: {', '.join(names)})"
                )
    cifar_copy = set(names) == set(CIFAR10_CLASSES)
    source = DatasetSource(
        name=str(data),
        train=train,
        test=test,
        test_split=test_split,
        tasks=tasks,
        # a copy of CIFAR-10 (e.g. as JPEGs) trains like the built-in one unless its settings say otherwise
        defaults=dict(CIFAR10_DEFAULTS) if cifar_copy else {},
        defaults_from="cifar10: its ten class folders" if cifar_copy else "",
        val=val,
        val_split=val_split,
    )
    return replace(source, fingerprint=source.fingerprint_of(usable))
