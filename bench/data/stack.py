"""Images kept in several parts (read-only memmaps of decode-cache entries) and read without copying them whole.

A read-only file mapping's pages count in a process's resident memory (RSS) once touched, so a process that
streams a large cache every epoch would show the whole cache as its own. They are clean pages of the shared page
cache, not copies; an ImageStack hands them back (madvise DONTNEED) whenever it has read more than its budget of
mapped bytes, so RSS stays near what the process really holds. Pages read again afterwards come back, unchanged,
from the page cache (or the file): a read-only shared mapping cannot lose data this way.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Sequence

import numpy as np

RESIDENT_BUDGET = 256 * 2**20
"""Bytes of mapped images an ImageStack reads before it hands their pages back (per process)."""


def release_pages(part: np.ndarray) -> bool:
    """Drop the pages of a read-only memmap from this process's resident set; False if `part` is not one, or the
    platform cannot (no madvise). Views of it stay valid: their pages are read back when touched."""
    mapping = getattr(part, "_mmap", None)  # numpy keeps the memmap's mmap.mmap here (tests check it still does)
    if not isinstance(part, np.memmap) or part.mode != "r" or mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    mapping.madvise(mmap.MADV_DONTNEED)
    return True


class ImageStack:
    """uint8 [N, S, S, 3] images kept in several parts, e.g. read-only memmaps of decode-cache entries.

    Image i is parts[part_of[i]][row_of[i]]; nothing is copied until it is indexed. stack[i] is a uint8 [S, S, 3]
    view (read-only on a memmap); stack[int array or slice] and np.asarray(stack) copy the images they select.
    After every `resident_budget` bytes read from memmap parts, their pages are handed back (module docstring).
    Pickling reopens memmap parts from their files instead of copying their bytes (loader workers).
    """

    def __init__(
        self,
        parts: Sequence[np.ndarray],
        part_of: np.ndarray,
        row_of: np.ndarray,
        *,
        resident_budget: int = RESIDENT_BUDGET,
    ) -> None:
        self.parts = tuple(parts)
        self.part_of = np.asarray(part_of, dtype=np.int64)
        self.row_of = np.asarray(row_of, dtype=np.int64)
        self.shape = (len(self.part_of), *self.parts[0].shape[1:])
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4
        self.resident_budget = resident_budget
        self.mapped = any(isinstance(part, np.memmap) for part in self.parts)
        self.image_bytes = int(np.prod(self.shape[1:]))
        self.read_since_release = 0
        self.releases = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int | slice | np.ndarray) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            image = np.asarray(self.parts[self.part_of[index]][self.row_of[index]])
            self._count(1)
            return image
        positions = np.arange(len(self))[index]
        out = np.empty((len(positions), *self.shape[1:]), dtype=np.uint8)
        for number, part in enumerate(self.parts):
            mine = self.part_of[positions] == number
            out[mine] = part[self.row_of[positions[mine]]]
        self._count(len(positions))
        return out

    def _count(self, images: int) -> None:
        """After a read: hand the mapped pages back once the bytes read since the last release reach the budget."""
        if not self.mapped:
            return
        self.read_since_release += images * self.image_bytes
        if self.read_since_release >= self.resident_budget:
            self.releases += any([release_pages(part) for part in self.parts])
            self.read_since_release = 0

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        return self[:].astype(dtype or np.uint8, copy=False)

    def __reduce__(self) -> tuple[Callable[..., ImageStack], tuple[object, ...]]:
        parts = [(part.filename, part.shape) if isinstance(part, np.memmap) else part for part in self.parts]
        return _reopen_stack, (parts, self.part_of, self.row_of, self.resident_budget)


def _reopen_stack(
    parts: list[np.ndarray | tuple[str, tuple[int, ...]]], part_of: np.ndarray, row_of: np.ndarray, budget: int
) -> ImageStack:
    """Unpickle an ImageStack: (filename, shape) parts become read-only memmaps again."""
    opened = [np.memmap(p[0], dtype=np.uint8, mode="r", shape=p[1]) if isinstance(p, tuple) else p for p in parts]
    return ImageStack(opened, part_of, row_of, resident_budget=budget)
