"""Data for the benchmark: open a source, decode chosen classes, subsample a task, augment and load.

source = open_source("digits")                                  # or "cifar10" or an ImageFolder root
decoded = decode_split(source.train, ["1", "8"], img_size=32)  # uint8 [N, 32, 32, 3]
# ImageFolder roots: decode_split_cached(split, classes, img_size, cache_dir) keeps the pixels in a disk cache
subset = subsample_task(decoded.labels, 1, 8, majority_count=100, ratio=0.1, seed=0)
mean, std = compute_channel_stats(decoded.images, subset.indices)
loader = create_loader(decoded.images, decoded.labels, create_train_transform(mean, std), indices=subset.indices,
                       batch_size=32, train=True, oversample=True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.lazy_names import lazy_names

if TYPE_CHECKING:  # for type checkers and editors; at run time each name is imported on first use
    from bench.data.augment import (
        compute_channel_stats,
        create_randaugment,
        create_test_transform,
        create_train_transform,
        seed_transform,
    )
    from bench.data.cache import decode_split_cached
    from bench.data.decode import DecodedImages, decode_split, read_image, resize_square
    from bench.data.errors import DataError
    from bench.data.loader import (
        ArrayDataset,
        balanced_weights,
        create_loader,
        epoch_seed,
        oversampled_size,
        resolve_workers,
        set_loader_epoch,
    )
    from bench.data.sources import (
        BUILTIN_SOURCES,
        DatasetSource,
        ImageSplit,
        default_cache_dir,
        load_task_file,
        open_source,
    )
    from bench.data.stack import ImageStack
    from bench.data.subsample import LongTailSubset, TaskSubset, long_tail_counts, subsample_long_tail, subsample_task

#: Where each public name lives. Imported lazily (PEP 562), so that a command that only lists or counts images
#: does not pay for torch and albumentations (augmentation and loaders import them).
_HOMES: dict[str, str] = {
    "ArrayDataset": "loader",
    "BUILTIN_SOURCES": "sources",
    "DataError": "errors",
    "DatasetSource": "sources",
    "DecodedImages": "decode",
    "ImageSplit": "sources",
    "ImageStack": "stack",
    "LongTailSubset": "subsample",
    "TaskSubset": "subsample",
    "balanced_weights": "loader",
    "compute_channel_stats": "augment",
    "create_loader": "loader",
    "create_randaugment": "augment",
    "create_test_transform": "augment",
    "create_train_transform": "augment",
    "decode_split": "decode",
    "decode_split_cached": "cache",
    "default_cache_dir": "sources",
    "epoch_seed": "loader",
    "load_task_file": "sources",
    "long_tail_counts": "subsample",
    "open_source": "sources",
    "oversampled_size": "loader",
    "read_image": "decode",
    "resize_square": "decode",
    "resolve_workers": "loader",
    "seed_transform": "augment",
    "set_loader_epoch": "loader",
    "subsample_long_tail": "subsample",
    "subsample_task": "subsample",
}

__all__ = [
    "ArrayDataset",
    "BUILTIN_SOURCES",
    "DataError",
    "DatasetSource",
    "DecodedImages",
    "ImageSplit",
    "ImageStack",
    "LongTailSubset",
    "TaskSubset",
    "balanced_weights",
    "compute_channel_stats",
    "create_loader",
    "create_randaugment",
    "create_test_transform",
    "create_train_transform",
    "decode_split",
    "decode_split_cached",
    "default_cache_dir",
    "epoch_seed",
    "load_task_file",
    "long_tail_counts",
    "open_source",
    "oversampled_size",
    "read_image",
    "resize_square",
    "resolve_workers",
    "seed_transform",
    "set_loader_epoch",
    "subsample_long_tail",
    "subsample_task",
]  # the names of _HOMES


__getattr__, __dir__ = lazy_names(__name__, _HOMES, globals())
