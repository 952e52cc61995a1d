"""``bench doctor``: check a data set before a long grid.

Counts per class and split, files that cannot be read, images shared between the train and test splits (same
bytes, or the same decoded pixels), the distribution of image sizes and modes, and, for every task and ratio,
whether the seeded subsampling can give the asked ratio.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from bench.data import DatasetSource, ImageSplit, long_tail_counts, subsample_task
from bench.metrics import MAJORITY, MINORITY

Progress = Callable[[str, int, int], None]  # (what, done, total)
#: A finished ratio that differs from the asked one by more than this fraction is reported.
RATIO_TOLERANCE = 0.1


@dataclass(frozen=True)
class ImageInfo:
    """What the doctor learns from one image: its size and mode, hashes of its bytes and pixels, or the error."""

    name: str  # "<split>/<class>/<file>" or "<split>/<class>/#<index>" for in-memory data sets
    width: int = 0
    height: int = 0
    mode: str = ""
    byte_hash: str = ""
    pixel_hash: str = ""
    error: str = ""


@dataclass
class SplitReport:
    name: str
    counts: dict[str, int]
    images: list[ImageInfo] = field(default_factory=list)

    @property
    def unreadable(self) -> list[ImageInfo]:
        return [image for image in self.images if image.error]


@dataclass(frozen=True)
class RatioCheck:
    task: str
    ratio: float
    majority: int
    minority: int
    note: str  # "" when the subset gives the asked ratio


@dataclass(frozen=True)
class DoctorReport:
    dataset: str
    splits: list[SplitReport]
    duplicates: list[tuple[str, str, str]]  # (train image, test image, "same bytes" | "same pixels")
    ratios: list[RatioCheck]

    @property
    def problems(self) -> list[str]:
        """Findings that change results: unreadable files, train/test overlap, ratios the data cannot give."""
        found = [f"{len(s.unreadable)} unreadable file(s) in {s.name}" for s in self.splits if s.unreadable]
        if self.duplicates:
            found.append(f"{len(self.duplicates)} image(s) in both the train and the test split")
        found += [f"task {c.task} at ratio {c.ratio:g}: {c.note}" for c in self.ratios if c.note]
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
    )


def _inspect_array(image: np.ndarray, name: str) -> ImageInfo:
    pixels = np.ascontiguousarray(image).tobytes()
    digest = hashlib.sha1(pixels).hexdigest()
    return ImageInfo(name=name, width=image.shape[1], height=image.shape[0], mode="RGB", pixel_hash=digest)


def inspect_split(
    split: ImageSplit, name: str, *, threads: int | None = None, progress: Progress | None = None
) -> SplitReport:
    """Inspect every image of ``split`` (a thread pool for files); ``progress(name, done, total)``."""
    counts = {c: int(np.count_nonzero(split.labels == i)) for i, c in enumerate(split.classes)}
    report = SplitReport(name=name, counts=counts)
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


def check_ratios(
    split: ImageSplit, tasks: Sequence[tuple[str, tuple[str, ...]]], ratios: Sequence[float], majority_count: int
) -> list[RatioCheck]:
    """What the seeded subsampling (``subsample_task``) gives per task and ratio, with a note when it cannot
    give the asked ratio: too few minority images, or a minority of 1 image rounded up from less."""
    checks = []
    for task, classes in tasks:
        if len(classes) > 2:
            checks += _long_tail_checks(split, task, classes, ratios, majority_count)
            continue
        majority, minority = classes
        labels = split.labels
        task_labels = np.full(len(labels), -1)
        task_labels[labels == split.class_index(majority)] = MAJORITY
        task_labels[labels == split.class_index(minority)] = MINORITY
        for ratio in ratios:
            subset = subsample_task(task_labels, MAJORITY, MINORITY, majority_count=majority_count, ratio=ratio, seed=0)
            actual = subset.minority_count / subset.majority_count
            note = ""
            if abs(actual - ratio) > RATIO_TOLERANCE * ratio:
                wanted = ratio * subset.majority_count
                reason = (
                    f"only {subset.minority_count} {minority} images"
                    if subset.minority_count < round(wanted)
                    else f"{wanted:.2g} minority images round to {subset.minority_count}"
                )
                note = f"{reason}, so the actual ratio is {actual:.3g}"
            checks.append(RatioCheck(task, ratio, subset.majority_count, subset.minority_count, note))
    return checks


def _long_tail_checks(
    split: ImageSplit, task: str, classes: Sequence[str], ratios: Sequence[float], majority_count: int
) -> list[RatioCheck]:
    """Head / tail training images of a long-tailed task per ratio, with a note when a class has too few images."""
    available = [len(split.indices_of(name)) for name in classes]
    n_max = min(majority_count, available[0])
    checks = []
    for ratio in ratios:
        counts = long_tail_counts(available, majority_count=majority_count, ratio=ratio)
        last = len(classes) - 1
        short = [i for i, n in enumerate(counts) if n < math.floor(n_max * ratio ** (i / last) + 1e-9)]
        note = ""
        if short:
            names = ", ".join(f"{classes[i]} ({counts[i]})" for i in short[:3])
            note = f"too few images for the long-tailed profile in {len(short)} class(es): {names}"
        checks.append(RatioCheck(task, ratio, counts[0], counts[-1], note))
    return checks


def examine(
    source: DatasetSource,
    tasks: Sequence[tuple[str, tuple[str, ...]]],
    ratios: Sequence[float],
    majority_count: int,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> DoctorReport:
    """Inspect both splits of ``source`` and check every task x ratio."""
    train = inspect_split(source.train, "train", threads=threads, progress=progress)
    test = inspect_split(source.test, source.test_split, threads=threads, progress=progress)
    return DoctorReport(
        dataset=source.name,
        splits=[train, test],
        duplicates=find_duplicates(train, test),
        ratios=check_ratios(source.train, tasks, ratios, majority_count),
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


def render(report: DoctorReport, *, examples: int = 5) -> list[str]:
    """The report as lines of text, problems last."""
    lines = [f"data set {report.dataset}"]
    for split in report.splits:
        counts = ", ".join(f"{c} {n}" for c, n in split.counts.items())
        lines.append(f"  {split.name}: {sum(split.counts.values())} images ({counts})")
    lines.append("image sizes:")
    lines += [_size_line(split) for split in report.splits]
    for split in report.splits:
        for image in split.unreadable[:examples]:
            lines.append(f"  unreadable: {image.name}: {image.error}")
    for train_name, test_name, how in report.duplicates[:examples]:
        lines.append(f"  in both splits ({how}): {train_name} = {test_name}")
    if report.ratios:
        lines.append("ratios (majority / minority training images, seeded subsampling):")
    for check in report.ratios:
        verdict = f"  <- {check.note}" if check.note else ""
        lines.append(f"  {check.task} at {check.ratio:g}: {check.majority} / {check.minority}{verdict}")
    problems = report.problems
    lines.append(f"problems: {len(problems)}" if problems else "problems: none found")
    lines += [f"  - {problem}" for problem in problems]
    return lines
