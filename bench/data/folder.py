"""A user's ImageFolder tree: root/train/<class>/<images> plus root/test/ (or val/, valid/) and optional bench.toml.

With both test/ and val/ (or valid/), test/ is the test split and val/ the data set's own validation split.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from bench.data.cifar import CIFAR10_CLASSES, CIFAR10_DEFAULTS
from bench.data.errors import DataError
from bench.data.splits import DatasetSource, ImageSplit
from bench.data.taskfile import load_task_file

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
EVAL_SPLITS = ("test", "val", "valid")
VAL_SPLITS = ("val", "valid")  # a folder of these beside test/ is the validation split
TASK_FILE = "bench.toml"


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _class_dirs(split_dir: Path) -> list[str]:
    """Names of the visible sub-folders of a split, sorted (so labels never depend on filesystem order)."""
    names = sorted(e.name for e in os.scandir(split_dir) if not _is_hidden(e.name) and e.is_dir())
    if not names:
        raise DataError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<images>")
    return names


def _image_files(class_dir: Path) -> list[Path]:
    """Image files under a class folder (sub-folders included), hidden ones skipped, sorted by relative path."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = [d for d in dirnames if not _is_hidden(d)]
        rel = os.path.relpath(dirpath, class_dir)
        for name in filenames:
            if not _is_hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(name if rel == "." else os.path.join(rel, name))
    return [class_dir / rel for rel in sorted(found, key=lambda r: Path(r).parts)]


def _unusable_reason(name: str, folders: dict[Path, list[Path] | None]) -> str:
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
    split_dir: Path, classes: tuple[str, ...], files: dict[str, list[Path] | None], unusable: dict[str, str]
) -> ImageSplit:
    """The split of the usable ``classes`` (label i = classes[i]) from each class's image files (None: no folder,
    which only the validation split may lack)."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = files[name] or []
        paths.extend(found)
        labels.extend([label] * len(found))
    return ImageSplit(
        classes=classes,
        labels=np.asarray(labels, dtype=np.int64),
        paths=tuple(paths),
        unusable=unusable,
        folder=split_dir,
    )


def _fingerprint(root: Path, splits: list[ImageSplit]) -> str:
    """Hash of every file's path relative to root and its size: 16 hex digits, stored with every run.

    Modification times are left out on purpose: a data set copied to another machine or cluster node (or
    extracted again) keeps its identity, so finished runs stay valid there. Any added, removed, renamed or
    re-encoded file changes it. The decode cache keys on mtimes as well, so it never serves stale pixels.
    """
    digest = hashlib.sha256()
    for split in splits:
        assert split.paths is not None
        for path in split.paths:
            digest.update(f"{path.relative_to(root).as_posix()}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def open_folder(data: str | Path) -> DatasetSource:
    """Index an ImageFolder tree (no image is opened here); DataError with a one-line fix for a bad layout."""
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
    names = sorted(set(_class_dirs(train_dir)) | set(_class_dirs(test_dir)))
    files = {
        split_dir: {n: _image_files(split_dir / n) if (split_dir / n).is_dir() else None for n in names}
        for split_dir in (train_dir, test_dir)
    }
    reasons = {n: _unusable_reason(n, {split_dir: found[n] for split_dir, found in files.items()}) for n in names}
    unusable = {n: reason for n, reason in reasons.items() if reason}
    classes = tuple(n for n in names if n not in unusable)
    train, test = (_read_split(split_dir, classes, files[split_dir], unusable) for split_dir in (train_dir, test_dir))
    val = None
    if val_split:  # its class folders beyond the usable classes are not read; a missing one is found by the run
        val_dir = root / val_split
        found = {n: _image_files(val_dir / n) if (val_dir / n).is_dir() else None for n in classes}
        val = _read_split(val_dir, classes, found, unusable)
    tasks: dict[str, tuple[str, ...]] = {}
    task_file = root / TASK_FILE
    if task_file.is_file():
        tasks = load_task_file(task_file)
        for task, names in tasks.items():
            unknown = [c for c in names if c not in classes and c not in unusable]
            if unknown:
                raise DataError(
                    f"{task_file}: task {task!r} names class {unknown[0]!r}, which is not a folder in {train_dir} "
                    f"(classes: {', '.join(classes)})"
                )
    return DatasetSource(
        name=str(data),
        train=train,
        test=test,
        test_split=test_split,
        tasks=tasks,
        # a copy of CIFAR-10 (e.g. as JPEGs) trains like the built-in one unless its settings say otherwise
        defaults=dict(CIFAR10_DEFAULTS) if set(train.classes) == set(CIFAR10_CLASSES) else {},
        fingerprint=_fingerprint(root, [train, test] if val is None else [train, test, val]),
        defaults_from="cifar10: its ten class folders" if set(train.classes) == set(CIFAR10_CLASSES) else "",
        val=val,
        val_split=val_split,
    )
