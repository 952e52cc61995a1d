"""Decode the images of chosen classes to uint8 RGB squares of one size, in parallel, skipping broken files."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bench.data.errors import DataError
from bench.data.splits import ImageSplit
from bench.data.stack import ImageStack


@dataclass(frozen=True, eq=False)
class DecodedImages:
    """Decoded images of some classes of an ImageSplit.

    images: uint8 [N, S, S, 3] RGB, an array or (from the decode cache) an ImageStack of memmaps.
    labels: int64 [N] class indices of the split. source_indices: int64 [N] indices into the split.
    skipped: "path: reason" of unreadable files.
    """

    images: np.ndarray | ImageStack
    labels: np.ndarray
    source_indices: np.ndarray
    skipped: tuple[str, ...] = ()


def _scale(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [H, W, 3] -> [height, width, 3] with cv2: INTER_AREA when shrinking both sides, else INTER_LINEAR."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    shrinking = image.shape[0] >= height and image.shape[1] >= width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def resize_square(image: np.ndarray, size: int, resize: str = "stretch") -> np.ndarray:
    """uint8 [H, W, 3] -> [size, size, 3] as ``resize`` says (a square image gives the same pixels in every mode).

    stretch: both sides scaled to ``size`` (the paper's protocol; a 16:9 frame is squeezed). pad: the longer side
    scaled to ``size``, the aspect ratio kept, centred on a square of the image's own mean colour (per channel,
    rounded). center-crop: the centre square of side min(H, W), scaled to ``size``.
    """
    if resize not in ("stretch", "pad", "center-crop"):
        raise ValueError(f"unknown resize mode {resize!r}; expected stretch, pad or center-crop")
    height, width = image.shape[:2]
    if resize == "stretch" or height == width:
        return _scale(image, size, size)
    if resize == "center-crop":
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        return _scale(image[top : top + side, left : left + side], size, size)
    longer = max(height, width)
    new_height, new_width = (max(1, round(n * size / longer)) for n in (height, width))
    mean = np.rint(image.reshape(-1, image.shape[2]).mean(axis=0, dtype=np.float64)).astype(np.uint8)
    out = np.empty((size, size, image.shape[2]), dtype=np.uint8)
    out[:] = mean
    top, left = (size - new_height) // 2, (size - new_width) // 2
    out[top : top + new_height, left : left + new_width] = _scale(image, new_width, new_height)
    return out


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 [H, W, 3] RGB.

    16-bit greys (and 32-bit ones with values above 255) are scaled by 1/257; float greys are read as 0..1.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(image).astype(np.float64)
        wide = image.mode.startswith("I;16") or (grey.size and grey.max() > 255)
        scale = 1.0 / 257.0 if wide else 1.0
        grey = np.clip(np.rint(grey * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        scale = 255.0 if grey.size and grey.max() <= 1.0 else 1.0
        grey = np.clip(np.rint(grey * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # avoids Pillow's warning about palette transparency
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def read_image(path: Path, size: int, resize: str = "stretch") -> np.ndarray:
    """One file -> uint8 [size, size, 3] RGB: EXIF orientation applied, converted to RGB, made square by
    :func:`resize_square` in mode ``resize``.

    JPEGs are decoded at a reduced DCT scale when that still leaves at least `size` pixels a side.
    Raises whatever Pillow raises for files it cannot read.
    """
    with Image.open(path) as image:
        if image.format == "JPEG":
            image.draft(image.mode, (size, size))
        image.load()
        try:
            oriented = ImageOps.exif_transpose(image)
        except Exception:  # a damaged EXIF block: keep the pixels as stored
            oriented = image
        return np.ascontiguousarray(resize_square(_to_rgb(oriented), size, resize))


def _reason(path: Path, error: Exception) -> str:
    try:
        if path.stat().st_size == 0:
            return "empty file"
    except OSError:
        pass
    if isinstance(error, UnidentifiedImageError):
        return "not a recognised image"
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def decode_files(
    paths: Sequence[Path],
    img_size: int,
    store: Callable[[int, np.ndarray], None],
    *,
    resize: str = "stretch",
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, str]:
    """Decode `paths` with read_image (in mode `resize`) in a thread pool of `threads` (default min(8, cpu count)).

    store(position, uint8 [img_size, img_size, 3]) is called in path order, from the calling thread, for every
    file that could be read. progress(done, total) is called about every 1% and at the end.
    Returns position -> "path: reason" for the files that could not be read.
    """
    total = len(paths)
    step = max(1, total // 100)
    failures: dict[int, str] = {}

    def work(path: Path) -> np.ndarray | str:
        try:
            return read_image(path, img_size, resize)
        except Exception as error:  # truncated, empty, not an image, unsupported mode ...
            return f"{path}: {_reason(path, error)}"

    workers = threads if threads is not None else min(8, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bench-decode")
    try:
        for position, result in enumerate(pool.map(work, paths)):
            if isinstance(result, str):
                failures[position] = result
            else:
                store(position, result)
            if progress is not None and ((position + 1) % step == 0 or position + 1 == total):
                progress(position + 1, total)
    except BaseException:  # Ctrl-C, a failing store or progress callback: drop the queued files
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return failures


def select_classes(split: ImageSplit, class_names: Sequence[str], img_size: int) -> tuple[list[int], np.ndarray]:
    """Labels of `class_names`, ascending, and the int64 [N] split indices of their images, ascending."""
    if img_size < 1:
        raise DataError(f"image size must be a positive number of pixels, got {img_size}")
    labels_wanted = sorted({split.class_index(name) for name in class_names})
    return labels_wanted, np.flatnonzero(np.isin(split.labels, labels_wanted)).astype(np.int64)


def require_readable(class_name: str, n_files: int, failures: Sequence[str]) -> None:
    """DataError if a class has no files in the split, or if none of its `n_files` could be read."""
    if n_files == 0:
        raise DataError(f"class {class_name!r} has no images in this split; pick classes that have images")
    if len(failures) == n_files:
        raise DataError(
            f"no image of class {class_name!r} could be read (first: {failures[0]}); check the files of that class"
        )


def warn_skipped(skipped: Sequence[str], total: int) -> None:
    """One warning, addressed to the caller of the decode function, if any of `total` files was skipped."""
    if skipped:
        warnings.warn(
            f"skipped {len(skipped)} of {total} image files that could not be read (first: {skipped[0]})",
            stacklevel=3,
        )


def decode_split(
    split: ImageSplit,
    class_names: Sequence[str],
    img_size: int,
    *,
    resize: str = "stretch",
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DecodedImages:
    """Decode every image of `class_names` (in split index order) to uint8 [N, img_size, img_size, 3], made square
    as `resize` says (see :func:`resize_square`).

    Files are read by a thread pool of `threads` (default min(8, cpu count)); unreadable ones are
    skipped, listed in `skipped` and announced by one warning. progress(done, total) is called
    about every 1% and at the end. DataError if a requested class ends up with no image.
    """
    labels_wanted, indices = select_classes(split, class_names, img_size)
    total = len(indices)
    out = np.empty((total, img_size, img_size, 3), dtype=np.uint8)
    failures: dict[int, str] = {}  # position -> "path: reason"
    if split.images is not None:
        step = max(1, total // 100)
        for position, index in enumerate(indices):
            out[position] = resize_square(split.images[index], img_size, resize)
            if progress is not None and ((position + 1) % step == 0 or position + 1 == total):
                progress(position + 1, total)
    else:
        assert split.paths is not None
        paths = [split.paths[i] for i in indices]
        failures = decode_files(paths, img_size, out.__setitem__, resize=resize, threads=threads, progress=progress)

    labels = split.labels[indices]
    for label in labels_wanted:
        failed = [failures[p] for p in sorted(failures) if labels[p] == label]
        require_readable(split.classes[label], int(np.sum(labels == label)), failed)
    skipped = [failures[p] for p in sorted(failures)]
    warn_skipped(skipped, total)
    if skipped:
        keep = np.flatnonzero(~np.isin(np.arange(total), list(failures)))
        for target, position in enumerate(keep):  # compact in place rather than copying every image
            if target != position:
                out[target] = out[position]
        out, labels, indices = out[: len(keep)], labels[keep], indices[keep]
    return DecodedImages(images=out, labels=labels, source_indices=indices, skipped=tuple(skipped))
