"""Which detector boxes become crops, and the pixel region each crop cuts from the displayed frame."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from bench.config import ConfigError
from bench.crops.detections import Detection

PER_IMAGE = ("all", "top")


@dataclass(frozen=True)
class BoxRules:
    """``min_conf``: lowest confidence kept; ``categories``: category names kept; ``per_image``: every kept box
    (``all``) or the most confident one (``top``); ``min_size``: boxes shorter than this many pixels on a side (in
    the displayed frame) are dropped."""

    min_conf: float = 0.2
    categories: tuple[str, ...] = ("animal",)
    per_image: str = "all"
    min_size: int = 32

    def __post_init__(self) -> None:
        if not 0 <= self.min_conf <= 1:
            raise ConfigError(f"--min-conf must be within 0..1, got {self.min_conf}")
        if self.per_image not in PER_IMAGE:
            raise ConfigError(f"--per-image must be one of {', '.join(PER_IMAGE)}, got '{self.per_image}'")
        if self.min_size < 0:
            raise ConfigError(f"--min-size must be 0 or more pixels, got {self.min_size}")
        if not self.categories:
            raise ConfigError("--categories needs at least one category name, e.g. animal")

    def check_categories(self, known: dict[str, str]) -> None:
        """Every name in ``categories`` must be one of the file's ``detection_categories`` (id -> name)."""
        names = sorted(set(known.values()))
        unknown = [name for name in self.categories if name not in names]
        if unknown:
            raise ConfigError(
                f"--categories: '{unknown[0]}' is not a category of the detections file; its categories: "
                f"{', '.join(names)}"
            )


@dataclass(frozen=True)
class CropBox:
    """A pixel region of the displayed frame: top-left corner, width and height."""

    x: int
    y: int
    width: int
    height: int

    @property
    def corners(self) -> tuple[int, int, int, int]:
        """(left, upper, right, lower), as PIL's ``Image.crop`` takes it."""
        return self.x, self.y, self.x + self.width, self.y + self.height


def select_boxes(
    detections: tuple[Detection, ...], frame_size: tuple[int, int], rules: BoxRules, dropped: Counter
) -> list[Detection]:
    """The boxes of one image that become crops, most confident first. Each box left out is counted once in
    ``dropped`` under its first reason: ``category``, ``confidence``, ``size`` (checked in that order), or ``top``
    (a further box when ``per_image`` is ``top``). ``frame_size`` = (width, height) of the displayed frame."""
    width, height = frame_size
    kept = []
    for detection in sorted(detections, key=lambda d: -d.conf):
        _, _, box_width, box_height = detection.bbox
        if detection.category not in rules.categories:
            dropped["category"] += 1
        elif detection.conf < rules.min_conf:
            dropped["confidence"] += 1
        elif min(box_width * width, box_height * height) < rules.min_size:
            dropped["size"] += 1
        else:
            kept.append(detection)
    if rules.per_image == "top" and len(kept) > 1:
        dropped["top"] += len(kept) - 1
        kept = kept[:1]
    return kept


def crop_box(
    bbox: tuple[float, float, float, float], frame_size: tuple[int, int], *, square: bool = True, margin: float = 0.1
) -> CropBox:
    """The pixel region cut for a normalised ``bbox`` = (x_min, y_min, width, height) in a frame of ``frame_size`` =
    (width, height). ``square`` grows the shorter side to the longer around the box's centre; ``margin`` then
    pushes each edge out by that fraction of the box's side along it (0.1: a 100 px side becomes 120 px); the result
    is clipped at the frame border (so a square near the border may come out narrower). ``square=False,
    margin=0`` is exactly the box."""
    if margin < 0:
        raise ConfigError(f"--margin must be 0 or more (a fraction of the box side), got {margin}")
    frame_width, frame_height = frame_size
    x, y, w, h = bbox
    centre_x, centre_y = (x + w / 2) * frame_width, (y + h / 2) * frame_height
    side_x, side_y = w * frame_width, h * frame_height
    if square:
        side_x = side_y = max(side_x, side_y)
    half_x, half_y = side_x * (0.5 + margin), side_y * (0.5 + margin)
    left, right = max(0, round(centre_x - half_x)), min(frame_width, round(centre_x + half_x))
    upper, lower = max(0, round(centre_y - half_y)), min(frame_height, round(centre_y + half_y))
    right, lower = max(right, min(left + 1, frame_width)), max(lower, min(upper + 1, frame_height))
    return CropBox(x=left, y=upper, width=right - left, height=lower - upper)


def open_displayed(path: Path) -> Image.Image:
    """The image at ``path`` as displayed: EXIF orientation applied (boxes refer to this), in RGB."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def cut(image: Image.Image, box: CropBox) -> Image.Image:
    """The region ``box`` of ``image`` (the displayed frame)."""
    return image.crop(box.corners)
