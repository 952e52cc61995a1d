"""Peak resident memory of a fresh process training over a memory-mapped decode cache, and of its loader workers."""

from __future__ import annotations

import tempfile
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
    loader once; put (cache bytes, peak RSS of this process, of its largest worker) on ``results``."""
    import resource

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
    cache_bytes = sum(f.stat().st_size for f in Path(cache).rglob("*.u8"))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    results.put((cache_bytes, own, children if workers else 0))


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
        cache_bytes, own, worker = results.get(timeout=10)
    return MemoryFigures(count, img_size, cache_bytes, workers, steps, own, worker, time.perf_counter() - started)
