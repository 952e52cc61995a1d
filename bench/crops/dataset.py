"""Detector output -> an ImageFolder of crops: ``OUT/{train,test}/<label>/<name>.jpg``, ``OUT/crops.csv`` (one row
per crop, the pixel box actually cut), ``OUT/bench.toml`` naming the classes and ``OUT/crops.json`` (the settings
that made it, so that a rerun writes nothing new and another command into the same folder is refused)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from bench.config import ConfigError
from bench.crops.boxes import BoxRules, CropBox, crop_box, cut, open_displayed, select_boxes
from bench.crops.detections import Detection, read_detections
from bench.crops.labels import ImageLabel, LabelTable, labels_from_folders, normalise_file, read_labels_csv
from bench.crops.split import GROUPINGS, LEAK_NOTE, assign_splits, bursts, read_exif_datetime
from bench.data.errors import DataError

CSV_COLUMNS = ("crop", "source", "label", "split", "group", "conf", "x", "y", "width", "height")
SETTINGS_FILE = "crops.json"
_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height
Chosen = tuple[str, ImageLabel, Detection, CropBox]  # source image, its label, a kept box, the region cut for it


@dataclass(frozen=True)
class CropSettings:
    """Everything that decides a crops data set (paths resolved), as ``bench crops`` takes it."""

    detections: str
    images: str
    labels: str | None = None
    min_conf: float = 0.2
    categories: tuple[str, ...] = ("animal",)
    per_image: str = "all"
    square: bool = True
    margin: float = 0.1
    min_size: int = 32
    test_fraction: float = 0.2
    group: str | None = None  # None: location when the labels CSV has locations, else sequence
    burst_seconds: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        BoxRules(self.min_conf, tuple(self.categories), self.per_image, self.min_size)  # its one-line errors
        if self.group is not None and self.group not in GROUPINGS:
            raise ConfigError(f"--group must be one of {', '.join(GROUPINGS)}, got '{self.group}'")
        if self.burst_seconds < 0:
            raise ConfigError(f"--burst-seconds must be 0 or more, got {self.burst_seconds}")
        if self.margin < 0:
            raise ConfigError(f"--margin must be 0 or more (a fraction of the box side), got {self.margin}")
        if not 0 <= self.test_fraction < 1:
            raise ConfigError(f"--test-fraction must be within 0..1 (1 excluded), got {self.test_fraction}")

    @property
    def rules(self) -> BoxRules:
        return BoxRules(self.min_conf, tuple(self.categories), self.per_image, self.min_size)

    def as_table(self) -> dict:
        table = asdict(self)
        table["categories"] = list(self.categories)
        return table


@dataclass(frozen=True)
class PlannedCrop:
    """One crop to cut: ``crop`` is its path under OUT (``train/deer/...jpg``)."""

    crop: str
    source: str
    label: str
    split: str
    group: str
    conf: float
    box: CropBox


@dataclass
class CropSummary:
    """What one ``bench crops`` did. Every detection of a readable image is kept or dropped under one reason, so
    ``kept + sum(dropped.values()) == detections``."""

    images: int = 0
    failures: int = 0
    detections: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    unlabelled_images: int = 0
    group: str = ""
    per_class: dict[str, Counter] = field(default_factory=dict)  # label -> {"train": n, "test": n}
    notes: list[str] = field(default_factory=list)
    written: int = 0


def displayed_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image as displayed, from its header (EXIF orientation applied)."""
    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112)
    return (height, width) if orientation in _ROTATED else (width, height)


def _digest(path: str | None) -> str | None:
    """SHA-256 of a file's bytes; None for no file or one that cannot be read (reading it later says why)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None


def _record(settings: CropSettings) -> dict:
    """What crops.json holds: the settings and the SHA-256 of the detections and labels files read."""
    inputs = {"detections": _digest(settings.detections), "labels": _digest(settings.labels)}
    return {**settings.as_table(), "inputs_sha256": inputs}


def _check_out(out: Path, settings: CropSettings) -> None:
    """A folder made by the same settings from the same files may be written again (nothing new); anything else
    there is refused."""
    saved = out / SETTINGS_FILE
    if saved.is_file():
        try:
            before = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise DataError(f"cannot read {saved}: {error}; delete {out} to make it again") from None
        now = settings.as_table()
        differ = [key for key in now if before.get(key) != now[key]]
        if differ:
            key = differ[0]
            raise DataError(
                f"{out} was made by another bench crops command ({key.replace('_', '-')}: {before.get(key)!r} there, "
                f"{now[key]!r} now); pass a new --out or delete {out}"
            )
        changed = [name for name, digest in _record(settings)["inputs_sha256"].items()
                   if before.get("inputs_sha256", {}).get(name) != digest]  # fmt: skip
        if changed:
            raise DataError(
                f"{out} was made from another {changed[0]} file (its content changed since); pass a new --out or "
                f"delete {out}"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out} exists and was not made by bench crops; pass a new or empty --out folder")


def _crop_name(source: str, index: int) -> str:
    return "__".join(PurePosixPath(source).with_suffix("").parts) + f"__{index}.jpg"


def plan_crops(settings: CropSettings) -> tuple[list[PlannedCrop], CropSummary]:
    """Read the detections and labels, select boxes, work out each crop's region, group and split; writes nothing.
    Raises DataError/ConfigError (one line) for a malformed file, a missing image or settings that do not fit."""
    rules = settings.rules
    detections = read_detections(Path(settings.detections))
    rules.check_categories(detections.categories)
    root = Path(settings.images)
    if not root.is_dir():
        raise DataError(f"--images {root} is not a folder; pass the root the detections' file paths are under")
    files = [image.file for image in detections.images]
    table: LabelTable = read_labels_csv(Path(settings.labels)) if settings.labels else labels_from_folders(files)
    group = settings.group or ("location" if "location" in table.columns else "sequence")
    if group == "location" and "location" not in table.columns:
        raise ConfigError("--group location needs a location column in --labels; or use --group sequence")
    summary = CropSummary(images=len(detections.images), failures=detections.failures, group=group)
    wanted = [image for image in detections.images if image.detections is not None]
    missing = [image.file for image in wanted if image.detections and not (root / image.file).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise DataError(f"image '{missing[0]}'{more} of the detections file not found under {root}; check --images")
    chosen: list[Chosen] = []
    for image in wanted:
        summary.detections += len(image.detections)
        label = table.get(image.file)
        if label is None:
            summary.unlabelled_images += 1
            summary.dropped["no label"] += len(image.detections)
            continue
        if not image.detections:
            continue
        try:
            size = displayed_size(root / image.file)
        except OSError as error:
            raise DataError(f"image '{image.file}' cannot be read: {error}") from None
        for detection in select_boxes(image.detections, size, rules, summary.dropped):
            box = crop_box(detection.bbox, size, square=settings.square, margin=settings.margin)
            chosen.append((normalise_file(image.file), label, detection, box))
    summary.kept = len(chosen)
    groups = _groups(chosen, group, settings, root, summary)
    named = []
    counts: Counter = Counter()
    for file, label, detection, box in chosen:
        name = _crop_name(file, counts[file])
        counts[file] += 1
        named.append((f"{label.label}/{name}", file, label.label, groups[file], detection.conf, box))
    kind = {"location": "location", "sequence": "sequence", "none": "image"}[group]
    plan = assign_splits([(crop, label, grp) for crop, _, label, grp, _, _ in named], settings.test_fraction,
                         settings.seed, kind)  # fmt: skip
    summary.notes.extend(plan.notes)
    crops = []
    for crop, file, label, grp, conf, box in named:
        split = plan.split[crop]
        summary.per_class.setdefault(label, Counter())[split] += 1
        crops.append(PlannedCrop(f"{split}/{crop}", file, label, split, grp, conf, box))
    return crops, summary


def _groups(
    chosen: list[Chosen], group: str, settings: CropSettings, root: Path, summary: CropSummary
) -> dict[str, str]:
    """Source image -> its group name."""
    files = {file: label for file, label, _, _ in chosen}
    if group == "none":
        summary.notes.append(LEAK_NOTE)
        return {file: file for file in files}
    if group == "location":
        unplaced = [file for file, label in files.items() if not label.location]
        if unplaced:
            raise DataError(f"--group location: image '{unplaced[0]}' has no location in {settings.labels}")
        return {file: label.location for file, label in files.items()}
    groups = {file: f"sequence {label.sequence}" for file, label in files.items() if label.sequence}
    taken = {
        file: label.taken or read_exif_datetime(root / file) for file, label in files.items() if file not in groups
    }
    untimed = sum(when is None for when in taken.values())
    if untimed:
        summary.notes.append(
            f"{untimed} image(s) have no sequence and no time (CSV datetime or EXIF DateTimeOriginal): each is a "
            "sequence of its own"
        )
    groups.update(bursts(taken, settings.burst_seconds))
    return groups


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def _cut_image(root: Path, out: Path, source: str, crops: list[PlannedCrop]) -> int:
    todo = [crop for crop in crops if not (out / crop.crop).is_file()]
    if not todo:
        return 0
    frame = open_displayed(root / source)
    for crop in todo:
        target = out / crop.crop
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        cut(frame, crop.box).save(partial, format="JPEG", quality=95)
        os.replace(partial, target)
    return len(todo)


def bench_toml(summary: CropSummary) -> str:
    """The data root's bench.toml: the classes named in a comment; a long-tailed (or two-class) task of every class
    with crops in both splits, head first, when there are two or more."""
    lines = ["# Made by bench crops from detector output (see crops.csv and crops.json)."]
    for label in sorted(summary.per_class):
        counts = summary.per_class[label]
        lines.append(f"# class {label}: {counts['train']} train, {counts['test']} test crops")
    both = [label for label, counts in summary.per_class.items() if counts["train"] and counts["test"]]
    both.sort(key=lambda label: (-summary.per_class[label]["train"], label))
    if len(both) >= 2:
        lines += ["", "[tasks.crops]", f"classes = {json.dumps(both)}"]
    return "\n".join(lines) + "\n"


def write_crops(
    settings: CropSettings, out: Path, *, workers: int | None = None, progress: Callable[[int, int], None] | None = None
) -> CropSummary:
    """Plan the crops and write the data set at ``out`` (see the module docstring); files already there from the
    same settings are left as they are. ``progress(done, total)`` is called per source image."""
    out = Path(out)
    _check_out(out, settings)
    crops, summary = plan_crops(settings)
    out.mkdir(parents=True, exist_ok=True)
    _write_if_changed(out / SETTINGS_FILE, json.dumps(_record(settings), indent=2) + "\n")
    by_source: dict[str, list[PlannedCrop]] = {}
    for crop in crops:
        by_source.setdefault(crop.source, []).append(crop)
    root = Path(settings.images)
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        jobs = [pool.submit(_cut_image, root, out, source, items) for source, items in by_source.items()]
        for done, job in enumerate(jobs, start=1):
            summary.written += job.result()
            if progress:
                progress(done, len(jobs))
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for crop in crops:
        box = crop.box
        writer.writerow(
            [crop.crop, crop.source, crop.label, crop.split, crop.group, f"{crop.conf:g}", box.x, box.y, box.width,
             box.height]
        )  # fmt: skip
    _write_if_changed(out / "crops.csv", rows.getvalue())
    _write_if_changed(out / "bench.toml", bench_toml(summary))
    return summary


def render_summary(summary: CropSummary) -> list[str]:
    """The summary table printed by ``bench crops``."""
    lines = [
        f"images {summary.images}, failures {summary.failures} (skipped), without a label {summary.unlabelled_images}",
        f"detections {summary.detections}: kept {summary.kept}, dropped "
        + (", ".join(f"{reason} {n}" for reason, n in sorted(summary.dropped.items())) or "none"),
        f"split by {summary.group}; crops written now: {summary.written}",
        f"{'class':20} {'train':>7} {'test':>7}",
    ]
    for label in sorted(summary.per_class):
        counts = summary.per_class[label]
        lines.append(f"{label:20} {counts['train']:7} {counts['test']:7}")
    lines += [f"note: {note}" for note in summary.notes]
    return lines
