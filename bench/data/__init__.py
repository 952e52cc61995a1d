"""Data for the benchmark: open a source, decode chosen classes, subsample a task, augment and load.

source = open_source("digits")                                  # or "cifar10" or an ImageFolder root
decoded = decode_split(source.train, ["1", "8"], img_size=32)  # uint8 [N, 32, 32, 3]
# ImageFolder roots: decode_split_cached(split, classes, img_size, cache_dir) keeps the pixels in a disk cache
subset = subsample_task(decoded.labels, 1, 8, majority_count=100, ratio=0.1, seed=0)
mean, std = compute_channel_stats(decoded.images, subset.indices)
loader = create_loader(decoded.images, decoded.labels, create_train_transform(mean, std), indices=subset.indices,
                       batch_size=32, train=True, oversample=True)
"""

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

__all__ = [
    "BUILTIN_SOURCES",
    "ArrayDataset",
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
    "epoch_seed",
    "create_randaugment",
    "create_test_transform",
    "create_train_transform",
    "decode_split",
    "decode_split_cached",
    "default_cache_dir",
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
]
