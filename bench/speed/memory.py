"""Peak resident memory of a fresh process training over a memory-mapped decode cache, and of its loader workers."""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backbones import create_backbone
from bench.config import PAPER_DEFAULTS, TrainSettings
from bench.data import DatasetSource, create_loader, create_train_transform
from bench.device import DeviceSetup, create_grad_scaler
from bench.engine import train_one_epoch
from bench.methods import create_method_loss, parse_method
from bench.speed.pipeline import _identity_stats
from bench.task import prepare_task


@dataclass(frozen=True)
class MemoryFigures:
    """Peak resident memory of a training process over a memory-mapped decode cache, and of its loader workers."""

    images: int
    img_size: int
    cache_bytes: int
    workers: int
    train_steps: int
    peak_rss_bytes: int  # the training process
    peak_worker_rss_bytes: int  # the largest loader worker (0 without workers)
    seconds: float
    # The training process's RSS in two parts, sampled (Linux /proc; 0 where it is not readable): anonymous memory
    # is private to the process (model, optimizer, activations, batches); file-backed pages are mapped files, above
    # all the decode cache, shared by every process that maps it and dropped by the kernel when memory is short.
    peak_anon_bytes: int = 0
    peak_file_bytes: int = 0
    peak_worker_anon_bytes: int = 0  # the largest loader worker's anonymous memory, sampled


STATUS_FIELDS = {"RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}


def resident_parts(pid: int | str = "self") -> dict[str, int]:
    """A process's resident memory by kind from /proc/PID/status, in bytes ({} where /proc is not readable)."""
    parts: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            words = line.split()  # "RssAnon:", "156", "kB"
            if words and words[0] in STATUS_FIELDS:
                parts[STATUS_FIELDS[words[0]]] = int(words[1]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    return parts


def child_pids() -> list[int]:
    """The direct children of this process (its loader workers), from /proc ([] where it is not readable)."""
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                pids += [int(pid) for pid in (task / "children").read_text().split()]
    return pids


class PeakSampler:
    """Samples this process's anonymous and file-backed resident memory, and its children's anonymous memory, every
    ``interval`` seconds on a thread, keeping the peaks (the kernel keeps only the peak of the total, ru_maxrss)."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.anon = self.file = self.worker_anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        own = resident_parts()
        self.anon = max(self.anon, own.get("anon", 0) + own.get("shmem", 0))
        self.file = max(self.file, own.get("file", 0))
        for pid in child_pids():
            child = resident_parts(pid)
            self.worker_anon = max(self.worker_anon, child.get("anon", 0) + child.get("shmem", 0))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> PeakSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def link_images(source: DatasetSource, images: int, root: Path) -> int:
    """An ImageFolder of symbolic links to the first ``images`` training files of ``source``, dealt alternately
    into two classes ``a`` and ``b`` (a binary task of any size the data set can supply); returns how many."""
    paths = source.train.paths or ()
    chosen = list(paths)[:images]
    for split, members in (("train", chosen), ("test", chosen[:2])):
        for index, path in enumerate(members):
            folder = root / split / ("a", "b")[index % 2]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:06d}{Path(path).suffix}").symlink_to(Path(path).resolve())
    return len(chosen)


def memory_probe(root: str, cache: str, img_size: int, batch_size: int, workers: int, steps: int, backbone: str,
                  results: Any) -> None:  # fmt: skip
    """Spawned: build (or open) the cache, train ``steps`` steps, then stream every image through the augmenting
    loader once; put (cache bytes, peak RSS of this process, of its largest worker, and the sampled peaks of this
    process's anonymous and file-backed memory and of its largest worker's anonymous memory) on ``results``."""
    import resource

    with PeakSampler() as sampler:
        cache_bytes = _probe_training(root, cache, img_size, batch_size, workers, steps, backbone)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    results.put((cache_bytes, own, children if workers else 0, sampler.anon, sampler.file, sampler.worker_anon))


def _probe_training(root: str, cache: str, img_size: int, batch_size: int, workers: int, steps: int,
                    backbone: str) -> int:  # fmt: skip
    from bench.data import open_source

    setup = DeviceSetup(torch.device("cpu"), None, channels_last=False, pin_memory=False)
    source = open_source(root)
    task = prepare_task(source, ("a", "b"), img_size, cache_dir=Path(cache))
    mean, std = _identity_stats()
    loader = create_loader(
        task.train_images, task.train_labels, create_train_transform(mean, std), batch_size=batch_size, train=True,
        workers=workers, seed=0,
    )  # fmt: skip
    model = create_backbone(backbone, num_classes=2, taps=None, img_size=img_size)
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "img_size": img_size, "batch_size": batch_size})
    loss_fn = create_method_loss(parse_method("fscl"), [1, 1], settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    for index, (images, labels) in enumerate(loader):
        if index < steps:
            train_one_epoch(model, [(images, labels)], loss_fn, optimizer, create_grad_scaler(setup), setup)
    del loader  # ends the persistent workers, so their peak is counted among this process's children
    return sum(f.stat().st_size for f in Path(cache).rglob("*.u8"))


def measure_memory(
    source: DatasetSource,
    *,
    images: int,
    img_size: int,
    batch_size: int,
    workers: int,
    steps: int,
    backbone: str,
) -> MemoryFigures:
    """(e): peak RSS of a fresh process that caches ``images`` training images of ``source`` at ``img_size``, trains
    ``steps`` steps of ``fscl`` and streams every cached image through the augmenting loader (Linux ru_maxrss)."""
    import multiprocessing

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-speed-memory-") as scratch:
        count = link_images(source, images, Path(scratch) / "data")
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        child = context.Process(
            target=memory_probe,
            args=(str(Path(scratch) / "data"), str(Path(scratch) / "cache"), img_size, batch_size, workers, steps,
                  backbone, results),
        )  # fmt: skip
        child.start()
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"the memory measurement process failed with exit code {child.exitcode}")
        cache_bytes, own, worker, anon, file, worker_anon = results.get(timeout=10)
    seconds = time.perf_counter() - started
    return MemoryFigures(count, img_size, cache_bytes, workers, steps, own, worker, seconds, anon, file, worker_anon)
