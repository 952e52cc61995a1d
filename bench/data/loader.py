"""Torch datasets and loaders over uint8 images in memory or memory-mapped, seeded for reproducible runs."""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, WeightedRandomSampler

from bench.data.augment import seed_transform
from bench.data.errors import DataError
from bench.data.stack import ImageStack


class ArrayDataset(Dataset):
    """images uint8 [N, H, W, 3] (an array or an ImageStack) + labels int64 [N], seen through indices int64 [M]
    (default: all N, in order); item i -> (transform(image=images[indices[i]])["image"], int labels[indices[i]]).

    The selected images are never copied as a whole. With the pipelines of `bench.data.augment` the image comes
    out as a float32 tensor [3, H, W]. The attribute `labels` holds the M labels of the items.
    """

    def __init__(
        self,
        images: np.ndarray | ImageStack,
        labels: np.ndarray,
        transform: Callable[..., dict[str, Any]],
        indices: np.ndarray | None = None,
    ) -> None:
        if images.ndim != 4 or images.shape[3] != 3:
            raise DataError(f"images must be uint8 [N, H, W, 3], got shape {images.shape}")
        if len(images) != len(labels):
            raise DataError(f"got {len(images)} images but {len(labels)} labels")
        self.images = images
        self.indices = np.arange(len(labels), dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(labels)):
            raise DataError(f"indices must lie in 0..{len(labels) - 1} (one per image)")
        self.labels = np.asarray(labels, dtype=np.int64)[self.indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(image=self.images[self.indices[index]])["image"], int(self.labels[index])


def _seed_worker(worker_id: int) -> None:
    """Seed numpy, random and the worker's copy of the transform from the seed torch gave this worker."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    if info is not None:
        seed_transform(getattr(info.dataset, "transform", None), seed)


def balanced_weights(labels: np.ndarray) -> torch.Tensor:
    """Sampling weight 1 / count(class of sample) per sample: float64 [N]; every class gets the same total."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels)
    return torch.from_numpy(1.0 / counts[labels])


def oversampled_size(class_counts: Sequence[int]) -> int:
    """Items per epoch when every class is oversampled to the largest: C x max count (a long-tailed task's `os`)."""
    return len(class_counts) * max(class_counts)


class DeferredSampler(Sampler[int]):
    """``before`` until epoch ``start_epoch`` (1-based), ``after`` from it on; :meth:`set_epoch` names the next
    epoch. With a plain shuffle before and oversampling after, this is deferred re-sampling (Cao et al. 2019)."""

    def __init__(self, before: Sampler[int], after: Sampler[int], start_epoch: int) -> None:
        self.before = before
        self.after = after
        self.start_epoch = start_epoch
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def current(self) -> Sampler[int]:
        return self.after if self.epoch >= self.start_epoch else self.before

    def __iter__(self) -> Iterator[int]:
        return iter(self.current)

    def __len__(self) -> int:
        return len(self.current)  # type: ignore[arg-type]


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell an epoch-dependent sampler (``oversample_from``) the 1-based epoch about to be loaded."""
    set_epoch = getattr(loader.sampler, "set_epoch", None)
    if set_epoch is not None:
        set_epoch(epoch)


def create_loader(
    images: np.ndarray | ImageStack,
    labels: np.ndarray,
    transform: Callable[..., dict[str, Any]],
    *,
    indices: np.ndarray | None = None,
    batch_size: int,
    train: bool,
    oversample: bool = False,
    oversample_to: int | None = None,
    oversample_from: int | None = None,
    workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches of (float [B, 3, H, W], int64 [B]); the transform is copied, so the caller's object is untouched.

    images uint8 [N, H, W, 3] and labels int64 [N] are read through indices int64 [M] (default: all N), as
    images[indices] would be, without copying them. train: reshuffled every epoch from a torch.Generator seeded
    by `seed`. oversample (train only): sample M items with replacement, weights 1 / class count, so classes come
    out 1:1 on average; `oversample_to` items per epoch instead of M when given (e.g. `oversampled_size`).
    oversample_from (with oversample): the first epoch (1-based) that oversamples; before it the usual shuffle
    (deferred re-sampling); call `set_loader_epoch` before each epoch.
    workers > 0: persistent workers, prefetch 4, each seeding numpy, random and its transform from
    torch.initial_seed(); workers == 0: the transform is seeded from `seed`. Eval (train=False): fixed
    order, no sampler; `oversample` is ignored.
    """
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise DataError(f"number of loader workers must be >= 0, got {workers}")
    transform = copy.deepcopy(transform)
    dataset = ArrayDataset(images, labels, transform, indices)
    generator = torch.Generator().manual_seed(seed)
    sampler = None
    if train and oversample:
        sampler = WeightedRandomSampler(
            balanced_weights(dataset.labels),
            num_samples=len(dataset) if oversample_to is None else int(oversample_to),
            replacement=True,
            generator=generator,
        )
        if oversample_from is not None:  # the same RandomSampler as shuffle=True, so early epochs match `ce`
            sampler = DeferredSampler(RandomSampler(dataset, generator=generator), sampler, oversample_from)
    if workers == 0:
        seed_transform(transform, seed)
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": _seed_worker}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
        pin_memory=pin_memory,
        drop_last=False,
        **extra,
    )


def resolve_workers(requested: int | None) -> int:
    """Loader worker processes: `requested` as given, or 0 on machines with <= 2 CPUs, else min(8, CPUs - 1)."""
    if requested is not None:
        if requested < 0:
            raise DataError(f"number of loader workers must be >= 0, got {requested}")
        return int(requested)
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(8, cpus - 1)
