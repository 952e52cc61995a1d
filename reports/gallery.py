"""A gallery of the minority-class test images that the method chosen on validation gets wrong (binary tasks).

The method is the one with the best mean validation headline metric (``val_minority_acc``) at the ratio — never
chosen on test. Its runs' ``test_outputs.npz`` name each test image (``ids``): a path relative to the data set root
for an ImageFolder data set (the run's ``dataset`` is that root, resolved), the index in the test split for a
built-in one (``digits``, ``cifar10``, opened with :func:`bench.data.sources.open_source`, never downloaded here).
Whatever keeps the images out of reach (older runs without ids, moved data, CIFAR-10 not in the cache) gives a
one-line note instead of a figure, never an error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from bench.calibration import softmax
from reports.collect import RunRecord
from reports.formatting import fmt_ratio
from reports.plots import load_outputs, runs_by_label, seed_count_text, task_title

#: At most this many images in a gallery, the most often wrong first.
GALLERY_SIZE = 24
GALLERY_COLUMNS = 6
SELECT_METRIC = "val_minority_acc"
MINORITY = 1  # label of the minority class in a binary task

ImageReader = Callable[[str], np.ndarray]  # image id -> uint8 [H, W, 3]


@dataclass(frozen=True)
class Choice:
    """The method (run label) with the best mean ``metric`` over its runs at one ratio."""

    label: str
    runs: tuple[RunRecord, ...]
    metric: str
    mean: float


def choose_on_validation(records: Sequence[RunRecord], metric: str = SELECT_METRIC) -> Choice | None:
    """Among the trained runs of one ratio, the label whose finished runs have the best mean ``metric`` (a
    validation metric; ties: the first label in the preferred order); None when no run reports ``metric``."""
    best: Choice | None = None
    for label, runs in runs_by_label(records).items():
        values = [r.metrics[metric] for r in runs if metric in r.metrics]
        if values and (best is None or float(np.mean(values)) > best.mean):
            best = Choice(label=label, runs=tuple(runs), metric=metric, mean=float(np.mean(values)))
    return best


@dataclass(frozen=True)
class Miss:
    """A minority test image some runs get wrong: in ``wrong`` of the ``seeds`` runs that scored it, with the mean
    minority-class softmax probability over those runs."""

    image_id: str
    wrong: int
    seeds: int
    minority_probability: float


def minority_misses(runs: Sequence[RunRecord]) -> list[Miss] | str:
    """The minority test images any of ``runs`` predicts as another class, the most often wrong first (then the
    lowest minority probability, then the id); a note (str) when a run's outputs or image ids cannot be read."""
    scored: dict[str, list[tuple[bool, float]]] = {}
    for record in runs:
        outputs = load_outputs(record.folder, ("labels", "logits"))
        if outputs is None:
            return f"the test outputs of {record.folder.name} cannot be read"
        if "ids" not in outputs or len(outputs["ids"]) != len(outputs["labels"]):
            return f"{record.folder.name} saved no test image ids (written before they were recorded)"
        probabilities = softmax(outputs["logits"])
        for index in np.flatnonzero(outputs["labels"] == MINORITY):
            row = probabilities[index]
            wrong = int(row.argmax()) != MINORITY
            scored.setdefault(str(outputs["ids"][index]), []).append((wrong, float(row[MINORITY])))
    misses = [
        Miss(image_id, sum(w for w, _ in marks), len(marks), float(np.mean([p for _, p in marks])))
        for image_id, marks in scored.items()
        if any(w for w, _ in marks)
    ]
    return sorted(misses, key=lambda m: (-m.wrong, m.minority_probability, m.image_id))


@functools.lru_cache(maxsize=2)
def _builtin_test_images(name: str) -> np.ndarray | str:
    """The test split's images uint8 [N, H, W, 3] of a built-in data set, or a note; CIFAR-10 only from the cache."""
    from bench.data.cifar import CIFAR10_FOLDER, META_FILE, TEST_BATCH, TRAIN_BATCHES
    from bench.data.errors import DataError
    from bench.data.sources import BUILTIN_SOURCES, default_cache_dir, open_source

    if name not in BUILTIN_SOURCES:
        return f"data set {name!r} is neither a folder nor a built-in data set"
    cache = default_cache_dir()
    if name == "cifar10" and not all(
        (cache / CIFAR10_FOLDER / part).is_file() for part in (*TRAIN_BATCHES, TEST_BATCH, META_FILE)
    ):
        return f"CIFAR-10 is not in {cache} (the report does not download it)"
    try:
        return open_source(name, cache_dir=cache).test.images
    except DataError as exc:
        return str(exc)


def image_reader(dataset: str) -> ImageReader | str:
    """How to read a test image of ``dataset`` by its id, or a note why the images cannot be read: a folder's image
    is ``dataset / id`` (an id that is a path relative to the root); a built-in's the test split's image ``int(id)``."""
    if not dataset:
        return "the runs do not record their data set"
    if Path(dataset).is_absolute():
        root = Path(dataset)
        if not root.is_dir():
            return f"data set folder {root} not found (moved?)"

        def read_file(image_id: str) -> np.ndarray:
            with Image.open(root / image_id) as image:
                return np.asarray(image.convert("RGB"))

        return read_file
    images = _builtin_test_images(dataset)
    if isinstance(images, str):
        return images
    return lambda image_id: images[int(image_id)]


def read_images(dataset: str, ids: Sequence[str]) -> list[np.ndarray] | str:
    """The images uint8 [H, W, 3] of ``ids`` in order, or a one-line note naming the first that cannot be read."""
    reader = image_reader(dataset)
    if isinstance(reader, str):
        return reader
    images = []
    for image_id in ids:
        try:
            images.append(reader(image_id))
        except (OSError, ValueError, IndexError):
            return f"test image {image_id!r} of {dataset} cannot be read (moved or changed data?)"
    return images


@dataclass(frozen=True)
class Gallery:
    """A drawn gallery and its one-line caption, or no figure and a one-line note saying why."""

    figure: Figure | None
    text: str


def draw_gallery(records: Sequence[RunRecord], *, limit: int = GALLERY_SIZE) -> Gallery:
    """The gallery of one binary task, backbone and ratio: up to ``limit`` minority test images that the method
    chosen on validation (:func:`choose_on_validation`) gets wrong in any of its seeds, each titled with the
    predicted class, in how many seeds it is wrong and the mean minority probability."""
    ratio = fmt_ratio(records[0].ratio) if records else "?"
    choice = choose_on_validation(records)
    if choice is None:
        return Gallery(None, f"No gallery at ratio {ratio}: no run has validation metrics to choose a method on.")
    misses = minority_misses(choice.runs)
    if isinstance(misses, str):
        return Gallery(None, f"No gallery at ratio {ratio}: {misses}.")
    if not misses:
        return Gallery(None, f"No gallery at ratio {ratio}: {choice.label} gets every minority test image right.")
    shown = misses[:limit]
    images = read_images(choice.runs[0].dataset, [m.image_id for m in shown])
    if isinstance(images, str):
        return Gallery(None, f"No gallery at ratio {ratio}: {images}.")
    classes = next((r.classes for r in records if len(r.classes) == 2), ("majority", "minority"))
    columns = min(GALLERY_COLUMNS, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure = Figure(figsize=(1.6 * columns + 0.4, 1.9 * rows + 1.0), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes in grid.flat:
        axes.set_axis_off()
    for axes, miss, image in zip(grid.flat, shown, images, strict=False):
        axes.imshow(image, interpolation="nearest")
        axes.set_title(
            f"predicted {classes[0]} ({miss.wrong}/{miss.seeds})\n"
            f"mean p({classes[1]}) = {miss.minority_probability:.2f}",
            fontsize="x-small",
        )
    n = seed_count_text([len(choice.runs)])
    figure.suptitle(
        f"{task_title(records)}, ratio {ratio}: minority test images {choice.label} gets wrong\n"
        f"{choice.label} chosen on validation ({choice.metric} {choice.mean:.3f}); {len(shown)} of {len(misses)} "
        f"shown, {n} pooled\n(k/n): the seeds that get it wrong, most often wrong first; mean p over the n seeds",
        fontsize="small",
    )
    caption = (
        f"Minority ({classes[1]}) test images that {choice.label} gets wrong at ratio {ratio}: {len(shown)} of "
        f"{len(misses)}, {n} pooled, each with the predicted class, the seeds that miss it and the mean "
        f"{classes[1]} probability; {choice.label} has the best mean {choice.metric} ({choice.mean:.3f})."
    )
    return Gallery(figure, caption)
