"""``bench doctor``: check a data set before a long grid.

Class folders no task can use, counts of readable images per class and split (the data set's own validation split
too, when the runs validate on it), files that cannot be read, images shared between the train and test splits (same
bytes, or the same decoded pixels), test images that are near-duplicates of train images (difference hashes a few
bits apart: burst frames, re-encoded or shifted copies), the distribution of image sizes and modes, and, for every
task and ratio, the training images the run's subsampling gives from the readable images once the validation images
are held out.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bench.data import DatasetSource, ImageSplit
from bench.data.feasibility import Feasibility, carved_val_count, check_feasibility, left_out_note
from bench.near_duplicates import NEAR_THRESHOLD, can_hash, dhash, find_near_pairs
from bench.task import check_classes
from bench.wording import join_and, plural

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class ImageInfo:
    """What the doctor learns from one image: its size and mode, hashes of its bytes and pixels and its difference
    hash (None for images smaller than 9 x 8 px), or the error."""

    name: str  # "<split>/<class>/<file>" or "<split>/<class>/#<index>" for in-memory data sets
    width: int = 0
    height: int = 0
    mode: str = ""
    byte_hash: str = ""
    pixel_hash: str = ""
    near_hash: int | None = None
    error: str = ""


@dataclass
class SplitReport:
    name: str
    files: dict[str, int]  # image files per class, as indexed
    images: list[ImageInfo] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # readable images per class

    @property
    def unreadable(self) -> list[ImageInfo]:
        return [image for image in self.images if image.error]


@dataclass(frozen=True)
class TaskCheck:
    """One task: why the run refuses it (``blocked``), else what each ratio gives from the readable images."""

    task: str
    classes: tuple[str, ...]
    feasibility: Feasibility | None  # None when blocked
    blocked: str = ""
    left_out: str = ""  # the class folders ``--task lt`` leaves out


@dataclass(frozen=True)
class NearDuplicate:
    """A test image and its nearest train image by difference hash: ``distance`` bits of 64 apart."""

    train: str
    test: str
    distance: int
    pairs: int  # train images within the threshold of this test image

    @property
    def train_class(self) -> str:
        return _class_of(self.train)

    @property
    def test_class(self) -> str:
        return _class_of(self.test)


@dataclass(frozen=True)
class DoctorReport:
    dataset: str
    splits: list[SplitReport]
    duplicates: list[tuple[str, str, str]]  # (train image, test image, "same bytes" | "same pixels")
    tasks: list[TaskCheck]
    unusable: dict[str, str] = field(default_factory=dict)  # class folder -> why no task can use it
    near_duplicates: list[NearDuplicate] = field(default_factory=list)  # test images not in ``duplicates``
    near_threshold: int = NEAR_THRESHOLD
    unhashed: int = 0  # readable images too small for the difference hash

    @property
    def problems(self) -> list[str]:
        """Findings that change results: unusable class folders, unreadable files, train/test overlap (identical
        or near-duplicate), ratios the data cannot give, tasks the run refuses."""
        found = [f"class {name} cannot be used: {reason}" for name, reason in self.unusable.items()]
        found += [f"{plural(len(s.unreadable), 'unreadable file')} in {s.name}" for s in self.splits if s.unreadable]
        if self.duplicates:
            found.append(f"{plural(len(self.duplicates), 'image')} in both the train and the test split")
        if self.near_duplicates:
            found.append(
                f"{plural(len(self.near_duplicates), 'test image')} near-duplicates of train images "
                f"(difference hash within {self.near_threshold} of 64 bits, not identical)"
            )
        for check in self.tasks:
            notes = [check.blocked] if check.feasibility is None else check.feasibility.notes
            found += [f"task {check.task}: {note}" for note in notes]
        return found


def inspect_file(path: Path, name: str) -> ImageInfo:
    """Decode one file fully (Pillow) and hash its bytes and its RGB pixels; errors become ``error``."""
    try:
        data = path.read_bytes()
        if not data:
            return ImageInfo(name=name, error="empty file")
        with Image.open(path) as image:
            width, height, mode = image.width, image.height, image.mode
            pixels = image.convert("RGB").tobytes()
        near_hash = (
            dhash(np.frombuffer(pixels, np.uint8).reshape(height, width, 3)) if can_hash(width, height) else None
        )
    except UnidentifiedImageError:
        return ImageInfo(name=name, error="not a recognised image")
    except Exception as error:  # truncated files and unsupported modes raise many types
        return ImageInfo(name=name, error=f"{type(error).__name__}: {' '.join(str(error).split())}")
    return ImageInfo(
        name=name,
        width=width,
        height=height,
        mode=mode,
        byte_hash=hashlib.sha1(data).hexdigest(),
        pixel_hash=hashlib.sha1(pixels).hexdigest(),
        near_hash=near_hash,
    )


def _inspect_array(image: np.ndarray, name: str) -> ImageInfo:
    pixels = np.ascontiguousarray(image).tobytes()
    digest = hashlib.sha1(pixels).hexdigest()
    height, width = image.shape[:2]
    near_hash = dhash(np.ascontiguousarray(image)) if can_hash(width, height) else None
    return ImageInfo(name=name, width=width, height=height, mode="RGB", pixel_hash=digest, near_hash=near_hash)


def inspect_split(
    split: ImageSplit, name: str, *, threads: int | None = None, progress: Progress | None = None
) -> SplitReport:
    """Inspect every image of ``split`` (a thread pool for files); ``progress(name, done, total)``."""
    files = {c: int(np.count_nonzero(split.labels == i)) for i, c in enumerate(split.classes)}
    report = SplitReport(name=name, files=files)
    total = len(split)
    step = max(1, total // 100)
    if split.paths is not None:
        paths = split.paths
        names = [f"{name}/{split.classes[label]}/{path.name}" for path, label in zip(paths, split.labels, strict=True)]
        workers = threads if threads is not None else min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bench-doctor") as pool:
            for done, info in enumerate(pool.map(inspect_file, paths, names), start=1):
                report.images.append(info)
                if progress is not None and (done % step == 0 or done == total):
                    progress(name, done, total)
    else:
        assert split.images is not None
        for index, (image, label) in enumerate(zip(split.images, split.labels, strict=True)):
            report.images.append(_inspect_array(image, f"{name}/{split.classes[label]}/#{index}"))
        if progress is not None and total:
            progress(name, total, total)
    readable = Counter(
        split.classes[label] for info, label in zip(report.images, split.labels, strict=True) if not info.error
    )
    report.counts = {c: readable[c] for c in split.classes}
    return report


def find_duplicates(train: SplitReport, test: SplitReport) -> list[tuple[str, str, str]]:
    """Test images whose bytes, or else whose decoded pixels, equal a train image's: (train, test, how)."""
    by_bytes = {i.byte_hash: i.name for i in train.images if i.byte_hash}
    by_pixels = {i.pixel_hash: i.name for i in train.images if i.pixel_hash}
    found = []
    for image in test.images:
        if image.byte_hash and image.byte_hash in by_bytes:
            found.append((by_bytes[image.byte_hash], image.name, "same bytes"))
        elif image.pixel_hash and image.pixel_hash in by_pixels:
            found.append((by_pixels[image.pixel_hash], image.name, "same pixels"))
    return found


def _class_of(name: str) -> str:
    return name.split("/")[1]  # names are "<split>/<class>/<file>"


def find_near_duplicates(
    train: SplitReport, test: SplitReport, *, threshold: int = NEAR_THRESHOLD, identical: Sequence[str] = ()
) -> list[NearDuplicate]:
    """Test images (other than the ``identical`` ones, already reported) whose difference hash is within
    ``threshold`` bits of a train image's, in test order, each with its nearest train image (a same-class one on a
    tie) and how many train images are that near. Classes may differ: a mislabelled copy leaks too."""
    train_images = [i for i in train.images if i.near_hash is not None]
    skip = set(identical)
    test_images = [i for i in test.images if i.near_hash is not None and i.name not in skip]
    if not train_images or not test_images:
        return []
    pairs = find_near_pairs(
        np.array([i.near_hash for i in train_images], dtype=np.uint64),
        np.array([i.near_hash for i in test_images], dtype=np.uint64),
        threshold,
    )
    train_classes = np.array([_class_of(i.name) for i in train_images])
    test_classes = np.array([_class_of(i.name) for i in test_images])
    other_class = train_classes[pairs[:, 0]] != test_classes[pairs[:, 1]]
    order = np.lexsort((pairs[:, 0], other_class, pairs[:, 2], pairs[:, 1]))  # by test, distance, same class first
    pairs = pairs[order]
    tests, first, counts = np.unique(pairs[:, 1], return_index=True, return_counts=True)
    return [
        NearDuplicate(train_images[pairs[k, 0]].name, test_images[j].name, int(pairs[k, 2]), int(n))
        for j, k, n in zip(tests, first, counts, strict=True)
    ]


def check_task(
    source: DatasetSource, splits: Sequence[SplitReport], task: str, classes: tuple[str, ...],
    ratios: Sequence[float], majority_count: int, val_count: int = 0,
) -> TaskCheck:  # fmt: skip
    """Whether the run can train ``task`` and what each ratio gives from the readable train images, ``val_count``
    validation images a class held out unless the data set has its own (the rule of
    :func:`bench.data.feasibility.check_feasibility`); the classes are checked by :func:`check_task_classes`.
    splits: train first; a class without a readable image in any of them blocks the task."""
    unusable = [name for name in classes if name in source.unusable]
    if unusable:
        blocked = f"uses {join_and(unusable)}, whose class folders cannot be used; bench run refuses it"
        return TaskCheck(task, classes, None, blocked=blocked)
    empty = [f"{split.name}/{name}" for split in splits for name in classes if not split.counts[name]]
    if empty:
        blocked = f"no readable image in {', '.join(empty)}; the run stops there (see the unreadable files)"
        return TaskCheck(task, classes, None, blocked=blocked)
    train = splits[0]
    available = {name: train.counts[name] for name in classes}
    held = carved_val_count(source, val_count)
    feasibility = check_feasibility(available, ratios, majority_count=majority_count, val_count=held)
    return TaskCheck(task, classes, feasibility, left_out=left_out_note(source, classes))


def check_task_classes(source: DatasetSource, tasks: Sequence[tuple[str, Sequence[str]]]) -> None:
    """DataError (with close names) for a task's class the data set has no folder of; unusable ones are findings."""
    for _, classes in tasks:
        check_classes(source.train, [name for name in classes if name not in source.unusable], "train")


def examine(
    source: DatasetSource,
    tasks: Sequence[tuple[str, tuple[str, ...]]],
    ratios: Sequence[float],
    majority_count: int,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    near_threshold: int = NEAR_THRESHOLD,
    val_count: int = 0,
) -> DoctorReport:
    """Inspect the train and test splits of ``source`` (and its own validation split when ``val_count`` > 0),
    compare the train and test images (identical, or difference hashes within ``near_threshold`` bits) and check
    every task x ratio with ``val_count`` validation images a class held out (a task's unknown class: DataError
    first)."""
    check_task_classes(source, tasks)
    train = inspect_split(source.train, "train", threads=threads, progress=progress)
    test = inspect_split(source.test, source.test_split, threads=threads, progress=progress)
    splits = [train, test]
    if val_count and source.val is not None:
        splits.append(inspect_split(source.val, source.val_split, threads=threads, progress=progress))
    duplicates = find_duplicates(train, test)
    near = find_near_duplicates(train, test, threshold=near_threshold, identical=[name for _, name, _ in duplicates])
    unhashed = sum(not i.error and i.near_hash is None for split in (train, test) for i in split.images)
    return DoctorReport(
        dataset=source.name,
        splits=splits,
        duplicates=duplicates,
        tasks=[
            check_task(source, splits, task, tuple(classes), ratios, majority_count, val_count)
            for task, classes in tasks
        ],
        unusable=source.unusable,
        near_duplicates=near,
        near_threshold=near_threshold,
        unhashed=unhashed,
    )


def _size_line(split: SplitReport) -> str:
    readable = [i for i in split.images if not i.error]
    if not readable:
        return f"  {split.name}: no readable image"
    widths = np.array([i.width for i in readable])
    heights = np.array([i.height for i in readable])
    modes = ", ".join(f"{mode} {count}" for mode, count in Counter(i.mode for i in readable).most_common())
    return (
        f"  {split.name}: width {widths.min()}-{int(np.median(widths))}-{widths.max()}, "
        f"height {heights.min()}-{int(np.median(heights))}-{heights.max()} px (min-median-max); modes: {modes}"
    )


def _counts_line(split: SplitReport) -> str:
    """ "train: 58 readable images (deer 28 of 30 files, horse 30)"."""
    counts = ", ".join(
        f"{c} {n}" if n == split.files[c] else f"{c} {n} of {plural(split.files[c], 'file')}"
        for c, n in split.counts.items()
    )
    return f"  {split.name}: {plural(sum(split.counts.values()), 'readable image')} ({counts or 'no usable class'})"


def _task_lines(check: TaskCheck) -> list[str]:
    """ "fine at 0.01: 60 / 1  <- note" per ratio, and a line for what concerns the whole task."""
    if check.feasibility is None:
        return [f"  {check.task}: {check.blocked}"]
    lines = [f"  {check.task}: {check.left_out}"] if check.left_out else []
    for outcome in check.feasibility.outcomes:
        verdict = f"  <- {outcome.note}" if outcome.note else ""
        lines.append(f"  {check.task} at {outcome.ratio:g}: {outcome.counts[0]} / {outcome.counts[-1]}{verdict}")
    return lines + [f"  {check.task}: {note}" for note in check.feasibility.same_subsets]


def _near_lines(report: DoctorReport, examples: int) -> list[str]:
    """How many test images per class are near-duplicates of train images, the first few pairs, and why it matters."""
    head = f"near-duplicates (difference hash within {report.near_threshold} of 64 bits, not identical)"
    lines = [] if not report.unhashed else [f"  {plural(report.unhashed, 'image')} under 9 x 8 px not hashed"]
    if not report.near_duplicates:
        return [f"{head}: none", *lines]
    test = report.splits[1]
    by_class = Counter(near.test_class for near in report.near_duplicates)
    across = Counter(near.test_class for near in report.near_duplicates if near.train_class != near.test_class)
    pairs: Counter[str] = Counter()
    for near in report.near_duplicates:
        pairs[near.test_class] += near.pairs
    lines.insert(0, f"{head}:")
    for name, count in ((name, by_class[name]) for name in test.counts if by_class[name]):
        note = f"; {across[name]} nearest to another class's image" if across[name] else ""
        lines.append(
            f"  {test.name}/{name}: {count} of {plural(test.counts[name], 'image')} near a train image "
            f"({plural(pairs[name], 'pair')}{note})"
        )
    for near in report.near_duplicates[:examples]:
        lines.append(f"  near (distance {near.distance}): {near.train} ~ {near.test}")
    lines.append(
        "  burst frames or the same scene on both sides of the split inflate test accuracy; split by location or "
        "sequence, or move these images"
    )
    return lines


def render(report: DoctorReport, *, examples: int = 5) -> list[str]:
    """The report as lines of text, problems last."""
    lines = [f"data set {report.dataset}"]
    lines += [_counts_line(split) for split in report.splits]
    if report.unusable:
        lines.append(f"  left out: {', '.join(report.unusable)} (class folders no task can use; see problems)")
    lines.append("image sizes:")
    lines += [_size_line(split) for split in report.splits]
    for split in report.splits:
        for image in split.unreadable[:examples]:
            lines.append(f"  unreadable: {image.name}: {image.error}")
    for train_name, test_name, how in report.duplicates[:examples]:
        lines.append(f"  in both splits ({how}): {train_name} = {test_name}")
    lines += _near_lines(report, examples)
    if report.tasks:
        lines.append("ratios (majority / minority, or head / tail, training images from the readable ones):")
    for check in report.tasks:
        lines += _task_lines(check)
    problems = report.problems
    lines.append(f"problems: {len(problems)}" if problems else "problems: none found")
    lines += [f"  - {problem}" for problem in problems]
    return lines
