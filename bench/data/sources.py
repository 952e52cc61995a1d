"""Open a data set by name or path: the built-in "digits" and "cifar10", or an ImageFolder root."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bench.data.cifar import open_cifar10
from bench.data.digits import open_digits
from bench.data.folder import open_folder
from bench.data.splits import DatasetSource, ImageSplit
from bench.data.taskfile import load_task_file

__all__ = ["BUILTIN_SOURCES", "DatasetSource", "ImageSplit", "default_cache_dir", "load_task_file", "open_source"]

BUILTIN_SOURCES = ("digits", "cifar10")


def default_cache_dir() -> Path:
    """$BENCH_CACHE if set, else ~/.cache/bench."""
    env = os.environ.get("BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bench"


def open_source(
    data: str | Path | None, *, cache_dir: Path | None = None, classes: Sequence[str] | None = None
) -> DatasetSource:
    """None or "digits": sklearn digits; "cifar10": CIFAR-10 (downloaded into cache_dir once); else an ImageFolder root,
    of which only ``classes`` are indexed when given (the index is kept in cache_dir, see :mod:`bench.data.index`).

    The built-in names win over a folder of the same name; write "./cifar10" to mean the folder.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if data is None or str(data) == "digits":
        return open_digits()
    if str(data) == "cifar10":
        return open_cifar10(cache)
    return open_folder(data, classes, cache_dir=cache)
