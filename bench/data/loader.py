"""Torch datasets and loaders over uint8 images in memory or memory-mapped, seeded for reproducible runs."""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, WeightedRandomSampler

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
        *,
        seed: int = 0,
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
        self.seed = seed
        self.epoch: int | None = None  # the epoch the transform was last seeded for

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """Item ``index``; an (index, epoch) pair (from :class:`EpochSampler`) first seeds the transform for that
        epoch if it is not yet: from (seed, epoch, 1 + loader worker id, 0 in the main process), so an epoch's
        augmentations do not depend on what earlier epochs drew."""
        if isinstance(index, tuple):
            index, epoch = index
            if epoch != self.epoch:
                info = torch.utils.data.get_worker_info()
                seed_transform(self.transform, epoch_seed(self.seed, epoch, 1 + (0 if info is None else info.id)))
                self.epoch = epoch
        return self.transform(image=self.images[self.indices[index]])["image"], int(self.labels[index])


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for ``stream`` (0: the sampler; 1 + a loader worker's id: its augmentations) of ``epoch`` of
    a run seeded ``seed``, through numpy's SeedSequence (independent streams for nearby integers)."""
    return int(np.random.SeedSequence([seed, epoch, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _seed_worker(worker_id: int) -> None:
    """Seed numpy's and random's global generators from the seed torch gave this worker (the transform is seeded
    per epoch by ArrayDataset)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def balanced_weights(labels: np.ndarray) -> torch.Tensor:
    """Sampling weight 1 / count(class of sample) per sample: float64 [N]; every class gets the same total."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels)
    return torch.from_numpy(1.0 / counts[labels])


def oversampled_size(class_counts: Sequence[int]) -> int:
    """Items per epoch when every class is oversampled to the largest: C x max count (``--oversample-epoch full``)."""
    return len(class_counts) * max(class_counts)


def steps_per_epoch(items: int, batch_size: int) -> int:
    """Batches (optimizer steps) of a training epoch of ``items`` items: a last batch of one is folded into the
    batch before it (:class:`FoldingBatchSampler`), so e.g. 65 items at batch size 64 are one step of 65."""
    full, rest = divmod(items, batch_size)
    return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)


class FoldingBatchSampler(BatchSampler):
    """``sampler``'s items in batches of ``batch_size``, except that a last batch of one item is folded into the
    batch before it (which then holds ``batch_size + 1``). BatchNorm cannot normalise a batch of one image in
    training; folding, rather than dropping, keeps every item of the epoch (a rare class's only image, say).
    An epoch of fewer items than ``batch_size`` is one batch of them all."""

    def __init__(self, sampler: Sampler[Any], batch_size: int) -> None:
        super().__init__(sampler, batch_size, drop_last=False)

    def __iter__(self) -> Iterator[list[Any]]:
        held: list[Any] | None = None  # a full batch held back until it is known not to be the last
        batch: list[Any] = []
        for item in self.sampler:
            batch.append(item)
            if len(batch) == self.batch_size:
                if held is not None:
                    yield held
                held, batch = batch, []
        if held is not None and len(batch) == 1:
            held, batch = held + batch, []
        if held is not None:
            yield held
        if batch:
            yield batch

    def __len__(self) -> int:
        return steps_per_epoch(len(self.sampler), self.batch_size)  # type: ignore[arg-type]


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


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields (index, epoch) pairs of ``inner``'s indices; before each epoch it reseeds ``generator`` (which
    ``inner`` draws from) from (seed, epoch). So an epoch's order, and through :class:`ArrayDataset` its
    augmentations, depend only on the run's seed and the epoch's number: a run resumed at epoch k from a
    checkpoint continues exactly as if it had never stopped. Epochs count 1, 2, ... one per pass unless
    :meth:`set_epoch` names the next; an ``inner`` with set_epoch (:class:`DeferredSampler`) is told too."""

    def __init__(self, inner: Sampler[int], generator: torch.Generator, seed: int) -> None:
        self.inner = inner
        self.generator = generator
        self.seed = seed
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        set_epoch = getattr(self.inner, "set_epoch", None)
        if set_epoch is not None:  # so that len() is the named epoch's (drs changes it at its switch)
            set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        self.generator.manual_seed(epoch_seed(self.seed, epoch))
        set_epoch = getattr(self.inner, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        return ((int(index), epoch) for index in self.inner)

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Name the 1-based epoch the loader's next pass loads (a training loader counts passes from 1 by itself)."""
    set_epoch = getattr(getattr(loader.batch_sampler, "sampler", loader.sampler), "set_epoch", None)
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
    images[indices] would be, without copying them. train: reshuffled every epoch; each epoch's order and
    augmentations are seeded from (`seed`, epoch number) alone (:class:`EpochSampler`), the augmentations per
    loader worker (workers 0 and 1 give the same batches), and a last batch of one item is folded into the batch
    before it (:class:`FoldingBatchSampler`: BatchNorm cannot train on one image). oversample (train only): sample
    M items with replacement, weights 1 / class count, so classes come out 1:1 on average; `oversample_to` items per
    epoch instead of M when given (e.g. `oversampled_size`). oversample_from (with oversample): the first epoch
    (1-based) that oversamples; before it the usual shuffle (deferred re-sampling). Epochs count one per pass;
    `set_loader_epoch` names the next (a resumed run). workers > 0: persistent workers, prefetch 4, each seeding
    numpy's and random's global generators from torch.initial_seed(). Eval (train=False): fixed order, no
    sampler; `oversample` is ignored.
    """
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if workers < 0:
        raise DataError(f"number of loader workers must be >= 0, got {workers}")
    transform = copy.deepcopy(transform)
    dataset = ArrayDataset(images, labels, transform, indices, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    sampler: Sampler[Any] | None = None
    if train:
        sampler = RandomSampler(dataset, generator=generator)
        if oversample:
            weighted = WeightedRandomSampler(
                balanced_weights(dataset.labels),
                num_samples=len(dataset) if oversample_to is None else int(oversample_to),
                replacement=True,
                generator=generator,
            )  # deferred: the same shuffle as `ce` until the drw epoch
            sampler = weighted if oversample_from is None else DeferredSampler(sampler, weighted, oversample_from)
        sampler = EpochSampler(sampler, generator, seed)
    extra: dict[str, Any] = {}
    if workers > 0:
        extra = {"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": _seed_worker}
    if sampler is None:
        batching: dict[str, Any] = {"batch_size": batch_size, "drop_last": False}
    else:
        batching = {"batch_sampler": FoldingBatchSampler(sampler, batch_size)}
    return DataLoader(dataset, num_workers=workers, generator=generator, pin_memory=pin_memory, **batching, **extra)


def resolve_workers(requested: int | None) -> int:
    """Loader worker processes: `requested` as given, or 0 on machines with <= 2 CPUs, else min(8, CPUs - 1)."""
    if requested is not None:
        if requested < 0:
            raise DataError(f"number of loader workers must be >= 0, got {requested}")
        return int(requested)
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(8, cpus - 1)
