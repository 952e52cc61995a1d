"""One training epoch with a cold decode cache, a warm one and none, against a torchvision ImageFolder + PIL loop."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from backbones import create_backbone
from bench.config import PAPER_DEFAULTS, TrainSettings
from bench.data import DatasetSource, create_loader, create_train_transform, subsample_task
from bench.data import decode as decode_module
from bench.device import DeviceSetup, autocast, create_grad_scaler, prepare_model, to_device
from bench.engine import train_one_epoch
from bench.methods import create_method_loss, parse_method
from bench.metrics import MAJORITY, MINORITY
from bench.runner import create_optimizer
from bench.speed.pipeline import _identity_stats
from bench.speed.steps import _synchronize
from bench.task import prepare_task


@dataclass(frozen=True)
class EpochFigures:
    """Wall seconds of one training epoch over the same images, each way of feeding them."""

    img_size: int
    workers: int  # loader worker processes of both epochs
    images: int  # training images in the epoch
    cold_cache_prepare: float  # decode both classes of both splits into an empty cache
    warm_cache_prepare: float  # the same again: open the cache
    warm_cache_decodes: int  # image files decoded by the warm preparation (0 when the cache works)
    no_cache_prepare: float  # decode in memory (--no-decode-cache)
    harness_epoch: float  # one CE epoch of the harness over the cached images (median of the rounds)
    torchvision_epoch: float  # ImageFolder-style PIL decode + torchvision transforms of every image, every epoch
    harness_rounds: tuple[float, ...] = ()  # every timed round, in order (rounds alternate harness, torchvision)
    torchvision_rounds: tuple[float, ...] = ()

    @property
    def round_ratios(self) -> tuple[float, ...]:
        """torchvision epoch / harness epoch of each round (the two epochs of a round ran back to back)."""
        return tuple(t / h for h, t in zip(self.harness_rounds, self.torchvision_rounds, strict=True))

    @property
    def torchvision_over_harness(self) -> float:
        """How many times longer the torchvision epoch takes (target >= 1): the median of the rounds' paired
        ratios, or the ratio of the two epochs when no rounds are recorded."""
        ratios = self.round_ratios
        return float(np.median(ratios)) if ratios else self.torchvision_epoch / self.harness_epoch


@contextlib.contextmanager
def count_decodes() -> Iterator[list[int]]:
    """Count the image files decoded in this process during the block (wraps the one function that decodes)."""
    counter = [0]
    original = decode_module.read_image

    def counting(path: Path, size: int, resize: str = "stretch") -> np.ndarray:
        counter[0] += 1
        return original(path, size, resize)

    decode_module.read_image = counting
    try:
        yield counter
    finally:
        decode_module.read_image = original


@dataclass(frozen=True)
class EpochJob:
    """What a timed epoch trains: ``per_class`` training images of each of ``classes`` of ``source``."""

    source: DatasetSource
    classes: tuple[str, str]
    img_size: int
    batch_size: int
    per_class: int
    setup: DeviceSetup
    backbone: str
    workers: int


def _harness_epoch(job: EpochJob, cache_dir: Path | None) -> tuple[float, float, int]:
    """Seconds for task preparation (decode or cache), seconds of one CE epoch on ``job.per_class`` images of each
    class, and the number of those images."""
    started = time.perf_counter()
    task = prepare_task(job.source, job.classes, job.img_size, cache_dir=cache_dir)
    prepared = time.perf_counter()
    subset = subsample_task(task.train_labels, MAJORITY, MINORITY, majority_count=job.per_class, ratio=1.0, seed=0)
    mean, std = _identity_stats()
    loader = create_loader(
        task.train_images, task.train_labels, create_train_transform(mean, std), indices=subset.indices,
        batch_size=job.batch_size, train=True, workers=job.workers, seed=0, pin_memory=job.setup.pin_memory,
    )  # fmt: skip
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "img_size": job.img_size, "batch_size": job.batch_size})
    torch.manual_seed(0)
    model = prepare_model(create_backbone(job.backbone, num_classes=2, taps=(), img_size=job.img_size), job.setup)
    loss_fn = create_method_loss(parse_method("ce"), [job.per_class, job.per_class], settings).to(job.setup.device)
    optimizer = create_optimizer([*model.parameters(), *loss_fn.parameters()], settings, job.setup.device)
    epoch_started = time.perf_counter()
    train_one_epoch(model, loader, loss_fn, optimizer, create_grad_scaler(job.setup), job.setup)
    _synchronize(job.setup)
    return prepared - started, time.perf_counter() - epoch_started, len(subset.indices)


class PilFolder(torch.utils.data.Dataset):
    """What torchvision's ImageFolder does per item: open the file with PIL, convert to RGB, transform."""

    def __init__(self, samples: list[tuple[Path, int]], transform: Callable[[Any], torch.Tensor]) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from torchvision.datasets.folder import pil_loader

        path, label = self.samples[index]
        return self.transform(pil_loader(str(path))), label


def _torchvision_epoch(job: EpochJob) -> float:
    """One epoch the way the reference research code feeds a model: an ImageFolder-style dataset that opens each
    file with PIL and applies torchvision transforms every epoch; ``job.per_class`` images of each class (a seeded
    draw), the same batch size, model and loader job.workers as the harness's epoch."""
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    mean, std = _identity_stats()
    transform = T.Compose(
        [
            T.Resize((job.img_size, job.img_size)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.4, 0.4, 0.4, 0.1),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    split = job.source.train
    assert split.paths is not None
    rng = np.random.default_rng(0)
    samples = [
        (split.paths[int(i)], label)
        for label, name in enumerate(job.classes)
        for i in rng.permutation(split.indices_of(name))[: job.per_class]
    ]

    loader = DataLoader(
        PilFolder(samples, transform), batch_size=job.batch_size, shuffle=True, num_workers=job.workers,
        persistent_workers=job.workers > 0, pin_memory=job.setup.pin_memory,
    )  # fmt: skip
    torch.manual_seed(0)
    model = prepare_model(create_backbone(job.backbone, num_classes=2, taps=(), img_size=job.img_size).model, job.setup)
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "img_size": job.img_size, "batch_size": job.batch_size})
    optimizer = create_optimizer(list(model.parameters()), settings, job.setup.device)  # as the harness: only the
    # feeding differs
    model.train()
    started = time.perf_counter()
    for images, labels in loader:
        images, labels = to_device(images, labels, job.setup)
        with autocast(job.setup):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _synchronize(job.setup)
    return time.perf_counter() - started


def measure_epochs(
    source: DatasetSource,
    classes: tuple[str, str],
    img_size: int,
    batch_size: int,
    per_class: int,
    setup: DeviceSetup,
    *,
    backbone: str,
    workers: int,
    rounds: int = 1,
) -> EpochFigures:
    """(d): task preparation with a cold cache, a warm cache and no cache; ``rounds`` alternating rounds of the
    harness's epoch (each after a warm preparation) and the torchvision loop's epoch, the median of each kept."""
    job = EpochJob(source, classes, img_size, batch_size, per_class, setup, backbone, workers)
    harness: list[float] = []
    plain: list[float] = []
    warm: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-speed-cache-") as cache:
        cold, _, images = _harness_epoch(job, Path(cache))
        with count_decodes() as decodes:
            for _ in range(rounds):
                prepare, epoch, _ = _harness_epoch(job, Path(cache))
                warm.append(prepare)
                harness.append(epoch)
                plain.append(_torchvision_epoch(job))
    no_cache = _prepare_seconds(source, classes, img_size)
    return EpochFigures(
        img_size, workers, images, cold, float(np.median(warm)), decodes[0], no_cache,
        harness_epoch=float(np.median(harness)), torchvision_epoch=float(np.median(plain)),
        harness_rounds=tuple(harness), torchvision_rounds=tuple(plain),
    )  # fmt: skip


def _prepare_seconds(source: DatasetSource, classes: tuple[str, str], img_size: int) -> float:
    started = time.perf_counter()
    prepare_task(source, classes, img_size, cache_dir=None)
    return time.perf_counter() - started
