"""Albumentations pipelines for uint8 HWC images that are already at their final size."""

from __future__ import annotations

import math
from collections.abc import Sequence

import albumentations as A
import numpy as np
from albumentations.pytorch import ToTensorV2

from bench.data.errors import DataError
from bench.data.stack import ImageStack

MAX_MAGNITUDE = 30


def create_randaugment(num_ops: int = 2, magnitude: int = 9) -> A.BaseCompose:
    """RandAugment with albumentations ops: each image gets `num_ops` ops drawn from 14 without replacement.

    Strengths follow torchvision's RandAugment scaled by f = magnitude / 30 (magnitude 0..30), but each
    signed strength is drawn uniformly from [-max, +max] instead of being +-max:
      identity; rotate <= 30f degrees; shear x / shear y <= atan(0.3f) (16.7 degrees at f=1);
      translate x / translate y <= 0.45f of the side; brightness, contrast <= 0.9f (RandomBrightnessContrast);
      saturation factor 1 +- 0.9f (ColorJitter); sharpen alpha 0..0.9f; posterize to 8 - round(4f) bits
      (identity while that is 8); solarize above 1 - f of the range; auto-contrast; equalize.
    Geometric ops fill with black, as torchvision does.
    """
    if num_ops < 0:
        raise DataError(f"RandAugment needs num_ops >= 0, got {num_ops}")
    if not 0 <= magnitude <= MAX_MAGNITUDE:
        raise DataError(f"RandAugment magnitude must be in 0..{MAX_MAGNITUDE}, got {magnitude}")
    f = magnitude / MAX_MAGNITUDE
    shear = math.degrees(math.atan(0.3 * f))
    shift = 0.45 * f
    tone = 0.9 * f
    bits = 8 - round(4 * f)
    ops: list[A.BasicTransform] = [
        A.NoOp(p=1.0),
        A.Affine(rotate=(-30 * f, 30 * f), p=1.0),
        A.Affine(shear={"x": (-shear, shear), "y": (0.0, 0.0)}, p=1.0),
        A.Affine(shear={"x": (0.0, 0.0), "y": (-shear, shear)}, p=1.0),
        A.Affine(translate_percent={"x": (-shift, shift), "y": (0.0, 0.0)}, p=1.0),
        A.Affine(translate_percent={"x": (0.0, 0.0), "y": (-shift, shift)}, p=1.0),
        A.RandomBrightnessContrast(brightness_limit=(-tone, tone), contrast_limit=(0.0, 0.0), p=1.0),
        A.RandomBrightnessContrast(brightness_limit=(0.0, 0.0), contrast_limit=(-tone, tone), p=1.0),
        A.ColorJitter(brightness=(1, 1), contrast=(1, 1), saturation=(1 - tone, 1 + tone), hue=(0, 0), p=1.0),
        A.Sharpen(alpha=(0.0, tone), lightness=(1.0, 1.0), p=1.0),
        A.Posterize(num_bits=bits, p=1.0) if bits < 8 else A.NoOp(p=1.0),
        A.Solarize(threshold_range=(1 - f, 1 - f), p=1.0),
        A.AutoContrast(p=1.0),
        A.Equalize(p=1.0),
    ]
    return A.SomeOf(ops, n=min(num_ops, len(ops)), replace=False, p=1.0)


def create_train_transform(
    mean: Sequence[float], std: Sequence[float], *, randaug_ops: int = 2, randaug_magnitude: int = 9
) -> A.Compose:
    """uint8 [H, W, 3] -> float32 [3, H, W]: RandAugment, HorizontalFlip(0.5), ColorJitter (always), Normalize."""
    return A.Compose(
        [
            create_randaugment(randaug_ops, randaug_magnitude),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, p=1.0),
            A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0),
            ToTensorV2(),
        ]
    )


def create_test_transform(mean: Sequence[float], std: Sequence[float]) -> A.Compose:
    """uint8 [H, W, 3] -> float32 [3, H, W] = (x / 255 - mean) / std; no randomness."""
    return A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()])


def seed_transform(transform: object, seed: int) -> None:
    """Seed an albumentations transform tree, giving every node its own stream derived from `seed`.

    (albumentations' own `set_random_seed` hands the same seed to every child, which correlates
    e.g. the flip with the colour jitter.) Objects that are not albumentations transforms are left alone.
    """
    if not isinstance(transform, (A.BaseCompose, A.BasicTransform)):
        return
    nodes: list[A.BaseCompose | A.BasicTransform] = []
    stack: list[object] = [transform]
    while stack:  # pre-order, so a child's seed overrides what its parent propagated
        node = stack.pop()
        if isinstance(node, (A.BaseCompose, A.BasicTransform)):
            nodes.append(node)
        if isinstance(node, A.BaseCompose):
            stack.extend(reversed(list(node.transforms)))
    for node, child in zip(nodes, np.random.SeedSequence(seed).spawn(len(nodes)), strict=True):
        node.set_random_seed(int(child.generate_state(1)[0]))


def compute_channel_stats(
    images: np.ndarray | ImageStack, indices: np.ndarray | None = None, *, chunk_pixels: int = 1 << 22
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and (population) std of uint8 [N, H, W, 3] scaled to [0, 1], in float64 chunks.

    indices int64 [M]: the statistics of images[indices], read a chunk at a time instead of copied whole.
    """
    count_images = images.shape[0] if indices is None else len(indices)
    if images.ndim != 4 or images.shape[3] != 3 or count_images == 0:
        raise DataError(f"channel statistics need uint8 images [N>0, H, W, 3], got shape {images.shape}")
    per_image = images.shape[1] * images.shape[2]
    step = max(1, chunk_pixels // max(1, per_image))
    total = np.zeros(3, dtype=np.float64)
    squares = np.zeros(3, dtype=np.float64)
    for start in range(0, count_images, step):
        selected = images[start : start + step] if indices is None else images[indices[start : start + step]]
        chunk = selected.reshape(-1, 3).astype(np.float64) / 255.0
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    count = count_images * per_image
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return (float(mean[0]), float(mean[1]), float(mean[2])), (float(std[0]), float(std[1]), float(std[2]))
