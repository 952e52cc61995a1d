"""Leakage-free train/test splits: crops are assigned by group (a camera location, a burst of frames, or the
source image), so that no group has crops on both sides."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from PIL import Image

from bench.config import ConfigError

GROUPINGS = ("location", "sequence", "none")
LEAK_NOTE = (
    "--group none splits by image: frames of one burst or one location can land on both sides, and near-copies "
    "of training images in test inflate every method's test accuracy"
)
_EXIF_IFD, _DATETIME_ORIGINAL, _DATETIME = 0x8769, 0x9003, 0x0132


@dataclass(frozen=True)
class SplitPlan:
    """``split``: crop -> ``train`` or ``test``; ``notes``: one line each, for the summary."""

    split: dict[str, str]
    notes: tuple[str, ...]


def parse_datetime(text: str) -> datetime | None:
    """An EXIF (``2024:05:01 06:30:00``) or ISO (``2024-05-01T06:30:00``, ``2024-05-01 06:30:00``) date and time;
    None for an empty or unreadable one."""
    text = text.strip().rstrip("\x00")
    for candidate in (text, text.replace(":", "-", 2)):
        try:
            return datetime.fromisoformat(candidate)
        except ValueError:
            continue
    return None


def read_exif_datetime(path: Path) -> datetime | None:
    """EXIF ``DateTimeOriginal`` of an image file (else its ``DateTime``); None when it has neither."""
    try:
        with Image.open(path) as image:
            exif = image.getexif()
    except OSError:
        return None
    value = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
    return parse_datetime(str(value)) if value else None


def bursts(taken: Mapping[str, datetime | None], burst_seconds: float) -> dict[str, str]:
    """A burst name per image file: frames of one folder whose times follow each other within ``burst_seconds``
    (each within that of the previous one) form one burst, named ``folder@first-time``. A frame without a time is
    a burst of its own, named by its file."""
    by_folder: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    groups = {}
    for file, when in taken.items():
        if when is None:
            groups[file] = file
        else:
            by_folder[str(PurePosixPath(file).parent)].append((when, file))
    for folder, frames in by_folder.items():
        frames.sort()
        start, previous = frames[0][0], frames[0][0]
        for when, file in frames:
            if (when - previous).total_seconds() > burst_seconds:
                start = when
            groups[file] = f"{folder}@{start.isoformat()}"
            previous = when
    return groups


def _deviation(test: Counter, target: dict[str, float], total: Counter) -> float:
    return sum(((test[label] - target[label]) / total[label]) ** 2 for label in total)


def assign_splits(crops: Sequence[tuple[str, str, str]], test_fraction: float, seed: int, kind: str) -> SplitPlan:
    """Split ``crops`` = (crop, label, group) so that about ``test_fraction`` of each class's crops are in test and
    every group lies wholly in train or in test. Groups are visited in a seeded order and each goes to test when
    that brings the classes' test counts closer to their targets. A class whose crops all sit in one group cannot
    be tested leak-free: that group stays in train, with a note. ``kind`` names the groups in notes (location,
    sequence, image)."""
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"--test-fraction must be within 0..1 (1 excluded), got {test_fraction}")
    per_group: dict[str, Counter] = defaultdict(Counter)
    groups_of: dict[str, set[str]] = defaultdict(set)
    for _, label, group in crops:
        per_group[group][label] += 1
        groups_of[label].add(group)
    total = Counter(label for _, label, _ in crops)
    notes = []
    held: set[str] = set()
    for label in sorted(groups_of):
        if len(groups_of[label]) == 1 and test_fraction > 0:
            (group,) = groups_of[label]
            held.add(group)
            notes.append(
                f"class '{label}': all {total[label]} crops sit in one {kind} ('{group}'), so it cannot be tested "
                "leak-free: train only"
            )
    target = {label: test_fraction * count for label, count in total.items()}
    order = sorted(per_group)
    random.Random(seed).shuffle(order)
    test_groups: set[str] = set()
    test: Counter = Counter()
    for group in order:
        if group in held:
            continue
        trial = test + per_group[group]
        if _deviation(trial, target, total) < _deviation(test, target, total):
            test_groups.add(group)
            test = trial
    for label in sorted(groups_of):
        if len(groups_of[label]) > 1 and test_fraction > 0 and test[label] == 0:
            notes.append(
                f"class '{label}': none of its {len(groups_of[label])} {kind}s fits its test share "
                f"({target[label]:.1f} of {total[label]} crops) without overshooting it more, so it has no test crops"
            )
    split = {crop: "test" if group in test_groups else "train" for crop, _, group in crops}
    return SplitPlan(split=split, notes=tuple(notes))
