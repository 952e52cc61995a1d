"""Throughput of the input pipeline alone: uint8 images -> augmented, normalised batches, per loader worker count."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.data import create_loader, create_train_transform


@dataclass(frozen=True)
class PipelineFigures:
    """Augmented images per second out of the loader, per worker count."""

    img_size: int
    images_per_second: dict[int, float]


def _identity_stats() -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    return (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def measure_pipeline(
    images: np.ndarray | Any, labels: np.ndarray, batch_size: int, workers: Sequence[int], *, batches: int = 30
) -> dict[int, float]:
    """Augmented images per second out of ``create_loader`` for each worker count, after the first batch."""
    mean, std = _identity_stats()
    result = {}
    for count in workers:
        loader = create_loader(
            images, labels, create_train_transform(mean, std), batch_size=batch_size, train=True, workers=count, seed=0
        )  # fmt: skip
        seen, started = 0, 0.0
        for index, (batch, _) in enumerate(loader):
            if index == 0:
                started = time.perf_counter()  # worker start-up and the first batch are not steady state
                continue
            seen += batch.shape[0]
            if index >= batches:
                break
        elapsed = time.perf_counter() - started
        result[count] = seen / elapsed if elapsed > 0 else float("nan")
        del loader
    return result
