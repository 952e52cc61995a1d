"""Read and validate a MegaDetector batch-output file (format 1.x), the JSON that MegaDetector, SpeciesNet and
AddaxAI write.

The format is validated here rather than with the ``megadetector-utils`` package: that package carries the
format's own validator, but its dependencies (torch-based detector code, YOLO tooling, many more) are far too heavy
for bench's base install, and the part bench needs (the keys below, their types and ranges) is small.

What is read: ``info.format_version`` (1.x), ``detection_categories`` (id -> name, e.g. ``{"1": "animal"}``) and
``images[]``, each with ``file`` (relative to the image root) and ``detections[]`` of ``category`` (an id),
``conf`` (0..1) and ``bbox`` = [x_min, y_min, width, height] normalised to 0..1, origin top left, referring to the
image as displayed (EXIF orientation applied). An image with ``failure`` (detections null) is kept as a failure;
an empty list means nothing was detected. Other keys (``classifications``, ``max_detection_conf``, ...) are
ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.data.errors import DataError

_VERSION = re.compile(r"1(\.\d+)*")
_EDGE_TOLERANCE = 1e-3  # x_min + width may pass 1 by rounding in the file (4 decimals)


class DetectionsFormatError(DataError):
    """A malformed detections file; ``problems`` holds one line per kind of problem (which image, what is wrong)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Detection:
    """One box: ``category`` is the category's name, ``bbox`` = (x_min, y_min, width, height) normalised to 0..1."""

    category: str
    conf: float
    bbox: tuple[float, float, float, float]


@dataclass(frozen=True)
class ImageDetections:
    """One entry of ``images[]``: ``detections`` is None when the detector failed on it (``failure`` says why)."""

    file: str
    detections: tuple[Detection, ...] | None
    failure: str | None = None


@dataclass(frozen=True)
class DetectionsFile:
    """A validated batch-output file."""

    format_version: str
    categories: dict[str, str]  # id -> name
    images: tuple[ImageDetections, ...]

    @property
    def failures(self) -> int:
        return sum(image.detections is None for image in self.images)

    @property
    def detections(self) -> int:
        return sum(len(image.detections or ()) for image in self.images)


class _Problems:
    """Problems grouped by kind, in the order first seen: each kind becomes one line naming its first image."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.kinds: dict[str, list[tuple[str, str]]] = {}

    def add(self, kind: str, where: str, detail: str) -> None:
        self.kinds.setdefault(kind, []).append((where, detail))

    def lines(self) -> list[str]:
        lines = []
        for kind, cases in self.kinds.items():
            where, detail = cases[0]
            more = f" (and {len(cases) - 1} more)" if len(cases) > 1 else ""
            place = f"image '{where}'" if where else "the file"
            lines.append(f"{self.label}: {kind}: {place}{more}: {detail}")
        return lines


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_categories(table: Any, problems: _Problems) -> dict[str, str]:
    if not isinstance(table, dict) or not table:
        problems.add("bad detection_categories", "", 'expected an object of id -> name, e.g. {"1": "animal"}')
        return {}
    categories = {}
    for key, name in table.items():
        if not isinstance(name, str) or not name:
            problems.add("bad detection_categories", "", f"category {key!r} has name {name!r}, expected a string")
        else:
            categories[str(key)] = name
    return categories


def _read_detection(entry: Any, file: str, categories: dict[str, str], problems: _Problems) -> Detection | None:
    if not isinstance(entry, dict) or not {"category", "conf", "bbox"} <= set(entry):
        missing = sorted({"category", "conf", "bbox"} - set(entry)) if isinstance(entry, dict) else None
        detail = f"missing {', '.join(missing)}" if missing else f"expected an object, got {entry!r}"
        problems.add("detection without category, conf and bbox", file, detail)
        return None
    category, conf, bbox = str(entry["category"]), entry["conf"], entry["bbox"]
    ok = True
    if categories and category not in categories:  # (no categories: already reported once)
        known = ", ".join(sorted(categories)) or "none"
        problems.add("unknown category id", file, f"category {category!r} is not in detection_categories ({known})")
        ok = False
    if not _is_number(conf) or not 0 <= conf <= 1:
        problems.add("conf outside 0..1", file, f"conf {conf!r}")
        ok = False
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        problems.add("bbox is not 4 numbers", file, f"bbox {bbox!r}, expected [x_min, y_min, width, height]")
        return None
    x, y, w, h = (float(v) for v in bbox)
    if min(x, y, w, h) < 0 or max(x, y, w, h) > 1 or x + w > 1 + _EDGE_TOLERANCE or y + h > 1 + _EDGE_TOLERANCE:
        problems.add("bbox outside 0..1", file, f"bbox {bbox!r} (normalised [x_min, y_min, width, height])")
        ok = False
    if not ok:
        return None
    return Detection(category=categories.get(category, category), conf=float(conf), bbox=(x, y, w, h))


def _read_image(entry: Any, index: int, categories: dict[str, str], problems: _Problems) -> ImageDetections | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"]:
        problems.add("image without 'file'", f"#{index}", "every entry of images[] needs a relative path in 'file'")
        return None
    file = entry["file"]
    if Path(file).is_absolute() or ".." in Path(file).parts:
        problems.add("'file' not relative to the image root", file, "use a path under --images, without '..'")
        return None
    failure = entry.get("failure")
    if failure is not None:
        if entry.get("detections") is not None:
            problems.add("failure with detections", file, "an image with 'failure' must have detections null")
            return None
        return ImageDetections(file=file, detections=None, failure=str(failure))
    if "detections" not in entry:
        problems.add("image without 'detections'", file, "give a list (empty when nothing was detected)")
        return None
    raw = entry["detections"]
    if not isinstance(raw, list):
        problems.add("'detections' is not a list", file, f"got {raw!r} and no 'failure'")
        return None
    detections = [_read_detection(item, file, categories, problems) for item in raw]
    if any(detection is None for detection in detections):
        return None
    return ImageDetections(file=file, detections=tuple(d for d in detections if d is not None))


def parse_detections(table: Any, label: str = "detections") -> DetectionsFile:
    """Validate a decoded batch-output file; raises DetectionsFormatError with one line per problem kind."""
    problems = _Problems(label)
    if not isinstance(table, dict):
        raise DetectionsFormatError([f"{label}: expected a JSON object with info, detection_categories and images"])
    info = table.get("info")
    version = info.get("format_version") if isinstance(info, dict) else None
    version = str(version) if _is_number(version) or isinstance(version, str) else None
    if version is None:
        problems.add("no info.format_version", "", "a MegaDetector batch-output file has info.format_version '1.x'")
    elif not _VERSION.fullmatch(version):
        problems.add("unsupported format_version", "", f"format_version {version!r}; bench reads 1.x")
    categories = _read_categories(table.get("detection_categories"), problems)
    raw_images = table.get("images")
    images: list[ImageDetections] = []
    if not isinstance(raw_images, list):
        problems.add("no images list", "", 'expected \'images\': [{"file": ..., "detections": [...]}, ...]')
    else:
        seen: set[str] = set()
        for index, entry in enumerate(raw_images):
            image = _read_image(entry, index, categories, problems)
            if image is None:
                continue
            if image.file in seen:
                problems.add("file listed twice", image.file, "each image may appear once in images[]")
                continue
            seen.add(image.file)
            images.append(image)
    if problems.kinds:
        raise DetectionsFormatError(problems.lines())
    return DetectionsFile(format_version=version or "", categories=categories, images=tuple(images))


def read_detections(path: Path) -> DetectionsFile:
    """Read and validate ``path``; a missing, unreadable or malformed file raises DataError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read detections file {path}: {error.__class__.__name__}: {error}") from None
    try:
        table = json.loads(text)
    except json.JSONDecodeError as error:
        raise DetectionsFormatError([f"{path}: not valid JSON: {error}"]) from None
    return parse_detections(table, label=str(path))
