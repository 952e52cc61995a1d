"""ImageStack hands the pages of its read-only memmaps back after a budget of reads, and still reads every pixel."""

from __future__ import annotations

import mmap
import pickle
from pathlib import Path

import numpy as np
import pytest

from bench.data.stack import ImageStack, release_pages
from bench.speed.memory import resident_parts

CAN_RELEASE = hasattr(mmap, "MADV_DONTNEED")


def write_parts(folder: Path, sizes: list[int], side: int) -> tuple[list[np.memmap], np.ndarray]:
    """Random uint8 parts of sizes[k] images of side x side x 3 as read-only memmaps, and all images in order."""
    rng = np.random.default_rng(0)
    parts, images = [], []
    for number, size in enumerate(sizes):
        data = rng.integers(0, 256, (size, side, side, 3), dtype=np.uint8)
        (folder / f"part{number}.u8").write_bytes(data.tobytes())
        parts.append(np.memmap(folder / f"part{number}.u8", dtype=np.uint8, mode="r", shape=data.shape))
        images.append(data)
    return parts, np.concatenate(images)


def stack_of(parts: list[np.memmap], budget: int) -> ImageStack:
    part_of = np.concatenate([np.full(len(p), k) for k, p in enumerate(parts)])
    row_of = np.concatenate([np.arange(len(p)) for p in parts])
    return ImageStack(parts, part_of, row_of, resident_budget=budget)


def test_numpy_memmap_still_keeps_its_mapping() -> None:
    """release_pages reads np.memmap's private _mmap: fail loudly if a numpy release renames it."""
    assert "_mmap" in np.memmap.__array_finalize__.__code__.co_names


@pytest.mark.skipif(not CAN_RELEASE, reason="needs madvise")
def test_release_pages_only_for_read_only_memmaps(tmp_path: Path) -> None:
    parts, images = write_parts(tmp_path, [4], 8)
    assert release_pages(parts[0]) and np.array_equal(parts[0], images)  # read back unchanged after the release
    assert not release_pages(images)  # in memory: nothing to hand back
    writable = np.memmap(tmp_path / "part0.u8", dtype=np.uint8, mode="c", shape=images.shape)
    writable[0] = 0
    assert not release_pages(writable)  # copy-on-write pages would lose their changes
    assert np.all(writable[0] == 0)


@pytest.mark.skipif(not CAN_RELEASE, reason="needs madvise")
def test_every_pixel_is_read_across_releases_and_views_stay_valid(tmp_path: Path) -> None:
    parts, images = write_parts(tmp_path, [5, 7], 16)
    image_bytes = 16 * 16 * 3
    stack = stack_of(parts, budget=3 * image_bytes)
    held = stack[0]  # a view into the mapping, read again after its pages are released
    for index in range(12):
        assert np.array_equal(stack[index], images[index])
    assert stack.releases == 4 and stack.read_since_release == image_bytes  # 13 reads: released at 3, 6, 9, 12
    picks = np.array([11, 0, 6, 6])
    assert np.array_equal(stack[picks], images[picks]) and stack.releases == 5  # 1 + 4 images: over the budget
    assert np.array_equal(held, images[0]) and np.array_equal(np.asarray(stack), images)
    copy = pickle.loads(pickle.dumps(stack))
    assert copy.resident_budget == 3 * image_bytes and copy.releases == 0 and np.array_equal(copy[11], images[11])


def test_in_memory_stacks_count_nothing() -> None:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    stack = ImageStack([images], np.zeros(2), np.arange(2), resident_budget=1)
    assert np.array_equal(stack[1], images[1]) and np.array_equal(stack[:], images)
    assert stack.releases == 0 and stack.read_since_release == 0


@pytest.mark.skipif(not (CAN_RELEASE and resident_parts()), reason="needs madvise and Linux /proc/self/status")
def test_streaming_a_stack_keeps_its_mapped_pages_within_the_budget(tmp_path: Path) -> None:
    parts, _ = write_parts(tmp_path, [256, 256], 128)  # 2 x 12 MiB
    total = sum(part.nbytes for part in parts)
    for budget, most, least in ((2 * 2**20, 6 * 2**20, 0), (2 * total, None, 0.9 * total)):
        stack = stack_of([np.memmap(p.filename, dtype=np.uint8, mode="r", shape=p.shape) for p in parts], budget)
        before = resident_parts()["file"]
        checksum = sum(int(stack[index][::4, ::4].sum()) for index in range(len(stack)))  # touches every page
        grown = resident_parts()["file"] - before
        assert checksum > 0 and grown >= least and (most is None or grown < most), (budget, grown)
