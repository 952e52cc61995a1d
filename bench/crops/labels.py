"""The class (and optionally location, time and sequence) of each image: from the first folder of its path under
the image root, or from a CSV ``file,label[,location,datetime,sequence]``."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from bench.crops.split import parse_datetime
from bench.data.errors import DataError

COLUMNS = ("file", "label", "location", "datetime", "sequence")


@dataclass(frozen=True)
class ImageLabel:
    """What is known of one image besides its pixels; None where the CSV leaves a column out or empty."""

    label: str
    location: str | None = None
    taken: datetime | None = None
    sequence: str | None = None


@dataclass(frozen=True)
class LabelTable:
    """Image file (relative to the root, with ``/``) -> its label; ``columns``: the CSV's columns (folder labels:
    ``file, label``)."""

    images: dict[str, ImageLabel]
    columns: tuple[str, ...]

    def get(self, file: str) -> ImageLabel | None:
        return self.images.get(normalise_file(file))


def normalise_file(file: str) -> str:
    """A relative image path as the detections file and the CSV may spell it: ``\\`` and a leading ``./`` undone."""
    return str(PurePosixPath(file.replace("\\", "/")))


def check_label(label: str, where: str) -> str:
    """``label`` if it can name a class folder, else a one-line DataError naming ``where``."""
    if not label or label in (".", "..") or "/" in label or "\\" in label or label != label.strip():
        raise DataError(f"{where}: label {label!r} cannot name a class folder; use a name without slashes")
    return label


def labels_from_folders(files: Iterable[str]) -> LabelTable:
    """The first folder of each path is its class (``roe-deer/cam03/IMG_0001.JPG`` -> ``roe-deer``); a file
    directly in the root has no label and is left out."""
    images = {}
    for file in files:
        parts = PurePosixPath(normalise_file(file)).parts
        if len(parts) >= 2:
            images[normalise_file(file)] = ImageLabel(label=check_label(parts[0], f"image '{file}'"))
    return LabelTable(images=images, columns=("file", "label"))


def read_labels_csv(path: Path) -> LabelTable:
    """Read a labels CSV: columns ``file`` and ``label`` required, ``location``, ``datetime`` (EXIF or ISO form),
    ``sequence`` optional, no others. A row with an empty label leaves its image unlabelled."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
            handle.seek(0)
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read labels file {path}: {error}") from None
    columns = tuple(name.strip() for name in header)
    unknown = [name for name in columns if name not in COLUMNS]
    if unknown or not {"file", "label"} <= set(columns):
        problem = f"unknown column '{unknown[0]}'" if unknown else "needs the columns file and label"
        raise DataError(f"{path}: {problem}; columns: file,label and optionally location,datetime,sequence")
    images: dict[str, ImageLabel] = {}
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        values = {name.strip(): (value or "").strip() for name, value in row.items() if name is not None}
        file = normalise_file(values["file"]) if values["file"] else ""
        where = f"{path} line {line}"
        if not file:
            raise DataError(f"{where}: empty file")
        if file in seen:
            raise DataError(f"{where}: '{file}' is listed twice; give each image one row")
        seen.add(file)
        if not values["label"]:
            continue
        taken = None
        if values.get("datetime"):
            taken = parse_datetime(values["datetime"])
            if taken is None:
                raise DataError(f"{where}: datetime {values['datetime']!r} is neither 'YYYY:MM:DD HH:MM:SS' nor ISO")
        images[file] = ImageLabel(
            label=check_label(values["label"], where),
            location=values.get("location") or None,
            taken=taken,
            sequence=values.get("sequence") or None,
        )
    return LabelTable(images=images, columns=columns)
