"""Albumentations pipelines for uint8 HWC images that are already at their final size."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from bench.config import RANDAUG_STRENGTHS
from bench.data.errors import DataError
from bench.data.stack import ImageStack

MAX_MAGNITUDE = 30  # magnitudes 0..30: torchvision's 31 bins


@functools.cache
def magnitude_bin(maximum: float, magnitude: int) -> float:
    """torchvision RandAugment's strength at `magnitude`: torch.linspace(0, maximum, 31)[magnitude], in float32 as
    torchvision computes it (so that blends truncate to the same grey levels)."""
    return float(torch.linspace(0.0, maximum, MAX_MAGNITUDE + 1)[magnitude])


def random_sign(transform: A.BasicTransform) -> float:
    """+1 or -1 with probability 0.5 each, from the transform's own seeded generator."""
    return 1.0 if transform.py_random.random() < 0.5 else -1.0


def blend(image: np.ndarray, degenerate: np.ndarray, factor: float) -> np.ndarray:
    """torchvision's _blend for uint8: factor x image + (1 - factor) x degenerate in float32, clipped, truncated."""
    mixed = np.float32(factor) * image.astype(np.float32) + np.float32(1.0 - factor) * degenerate.astype(np.float32)
    return np.clip(mixed, 0.0, 255.0).astype(np.uint8)


def grayscale(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H, W, 1]: torchvision's rgb_to_grayscale (0.2989 R + 0.587 G + 0.114 B, truncated)."""
    rgb = image.astype(np.float32)
    gray = np.float32(0.2989) * rgb[..., 0] + np.float32(0.587) * rgb[..., 1] + np.float32(0.114) * rgb[..., 2]
    return gray.astype(np.uint8)[..., None]


def smoothed(image: np.ndarray) -> np.ndarray:
    """torchvision's sharpness degenerate: 3 x 3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 on the interior, rounded;
    the one-pixel border keeps its values."""
    kernel = np.ones((3, 3), dtype=np.float32)
    kernel[1, 1] = 5.0
    kernel /= kernel.sum()
    filtered = cv2.filter2D(image.astype(np.float32), -1, kernel).reshape(image.shape)
    result = image.copy()
    result[1:-1, 1:-1] = np.rint(filtered[1:-1, 1:-1]).astype(np.uint8)
    return result


def brightness_degenerate(image: np.ndarray) -> np.ndarray:
    """Black, the shape of `image`."""
    return np.zeros_like(image)


def contrast_degenerate(image: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> float32 [1, 1, 1]: the mean of torchvision's grayscale image."""
    return np.full((1, 1, 1), np.float32(grayscale(image).mean(dtype=np.float64)), dtype=np.float32)


BLEND_DEGENERATES = {  # torchvision's adjust_brightness, adjust_saturation, adjust_contrast, adjust_sharpness
    "brightness": brightness_degenerate,  # blend with black
    "color": grayscale,  # blend with the grayscale image
    "contrast": contrast_degenerate,  # blend with the mean gray level
    "sharpness": smoothed,  # blend with the smoothed image
}


class SignedBlend(A.ImageOnlyTransform):
    """torchvision's adjust_<kind>(image, 1 +- strength) on uint8 RGB, the sign drawn per image (p 0.5 each).

    kind: brightness, color, contrast or sharpness (see BLEND_DEGENERATES).
    """

    def __init__(self, kind: str, strength: float, p: float = 1.0) -> None:
        super().__init__(p=p)
        if kind not in BLEND_DEGENERATES:
            raise DataError(f"blend kind must be one of {', '.join(BLEND_DEGENERATES)}, got {kind!r}")
        self.kind = kind
        self.strength = strength

    def get_params(self) -> dict[str, float]:
        return {"factor": 1.0 + random_sign(self) * self.strength}

    def apply(self, img: np.ndarray, factor: float, **params: object) -> np.ndarray:
        if self.kind == "sharpness" and min(img.shape[:2]) <= 2:
            return img  # torchvision leaves images this small alone
        return blend(img, BLEND_DEGENERATES[self.kind](img), factor)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("kind", "strength")


class TorchvisionAutoContrast(A.ImageOnlyTransform):
    """torchvision's autocontrast: each channel stretched linearly from its [min, max] to [0, 255], truncated."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params: object) -> np.ndarray:
        low = img.min(axis=(0, 1), keepdims=True).astype(np.float32)
        high = img.max(axis=(0, 1), keepdims=True).astype(np.float32)
        flat = high == low
        scale = np.float32(255.0) / np.where(flat, np.float32(1.0), high - low)
        low, scale = np.where(flat, np.float32(0.0), low), np.where(flat, np.float32(1.0), scale)
        return np.clip((img.astype(np.float32) - low) * scale, 0.0, 255.0).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


class TorchvisionEqualize(A.ImageOnlyTransform):
    """torchvision's (PIL's) equalize per channel: a lookup table from the cumulative histogram shifted by one bin.

    (albumentations' Equalize(mode="pil") builds its table from the unshifted histogram.)
    """

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params: object) -> np.ndarray:
        channels = img[..., None] if img.ndim == 2 else img
        result = np.empty_like(channels)
        for c in range(channels.shape[-1]):
            channel = channels[..., c]
            hist = np.bincount(channel.ravel(), minlength=256).astype(np.int64)
            step = int(hist[hist != 0][:-1].sum()) // 255
            if step == 0:
                result[..., c] = channel
                continue
            lut = (np.cumsum(hist) + step // 2) // step
            lut = np.clip(np.concatenate(([0], lut[:-1])), 0, 255).astype(np.uint8)
            result[..., c] = lut[channel]
        return result.reshape(img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


SHIFT_KINDS = ("shear_x", "shear_y", "translate_x", "translate_y")


class SignedShift(A.DualTransform):
    """torchvision RandAugment's ShearX/Y and TranslateX/Y, nearest neighbour, black fill; the sign drawn per image.

    magnitude 0..30 picks the strength of torchvision's 31 bins. shear_x: a pixel at (x, y) moves to
    x - s (y + 1/2), the shear factor s <= 0.3 about the top-left corner, as torchvision's
    affine(shear=[degrees(atan(s)), 0], center=[0, 0]); shear_y alike. translate_x / translate_y: by int(t) pixels,
    t <= 150/331 of the image's width / height.
    The same warp moves masks; boxes and keypoints are not supported.
    """

    def __init__(self, kind: str, magnitude: int, p: float = 1.0) -> None:
        super().__init__(p=p)
        if kind not in SHIFT_KINDS:
            raise DataError(f"shift kind must be one of {', '.join(SHIFT_KINDS)}, got {kind!r}")
        self.kind = kind
        self.magnitude = magnitude

    def get_params(self) -> dict[str, float]:
        return {"sign": random_sign(self)}

    def apply(self, img: np.ndarray, sign: float, **params: object) -> np.ndarray:
        height, width = img.shape[:2]
        shear = sign * magnitude_bin(0.3, self.magnitude)
        # inverse map, output pixel (x, y) -> input pixel; torchvision's grid puts pixel centres at integer + 1/2
        if self.kind == "shear_x":
            inverse = [[1.0, shear, 0.5 * shear], [0.0, 1.0, 0.0]]
        elif self.kind == "shear_y":
            inverse = [[1.0, 0.0, 0.0], [shear, 1.0, 0.5 * shear]]
        elif self.kind == "translate_x":
            inverse = [[1.0, 0.0, -int(sign * magnitude_bin(150.0 / 331.0 * width, self.magnitude))], [0.0, 1.0, 0.0]]
        else:
            inverse = [[1.0, 0.0, 0.0], [0.0, 1.0, -int(sign * magnitude_bin(150.0 / 331.0 * height, self.magnitude))]]
        flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        warped = cv2.warpAffine(img, np.array(inverse), (width, height), flags=flags, borderValue=0)
        return warped.reshape(img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("kind", "magnitude")


def signed_rotate(degrees: float) -> A.BaseCompose:
    """Rotate by +-degrees (p 0.5 each) about the centre, nearest neighbour, black fill: torchvision's rotate."""
    return A.OneOf(
        [
            A.Affine(
                rotate=(angle, angle), interpolation=cv2.INTER_NEAREST, border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0
            )
            for angle in (degrees, -degrees)
        ],
        p=1.0,
    )


def create_fixed_randaugment_ops(magnitude: int) -> list[A.BasicTransform | A.BaseCompose]:
    """torchvision RandAugment's 14 ops at `magnitude` of 31 bins, each signed op at +-its bin's strength."""
    bits = 8 - round(magnitude / (MAX_MAGNITUDE / 4))
    threshold = float(torch.linspace(255.0, 0.0, MAX_MAGNITUDE + 1)[magnitude])
    return [
        A.NoOp(p=1.0),
        SignedShift("shear_x", magnitude),
        SignedShift("shear_y", magnitude),
        SignedShift("translate_x", magnitude),
        SignedShift("translate_y", magnitude),
        signed_rotate(magnitude_bin(30.0, magnitude)),
        SignedBlend("brightness", magnitude_bin(0.9, magnitude)),
        SignedBlend("color", magnitude_bin(0.9, magnitude)),
        SignedBlend("contrast", magnitude_bin(0.9, magnitude)),
        SignedBlend("sharpness", magnitude_bin(0.9, magnitude)),
        A.Posterize(num_bits=bits, p=1.0) if bits < 8 else A.NoOp(p=1.0),
        A.Solarize(threshold_range=(threshold / 255.0, threshold / 255.0), p=1.0),
        TorchvisionAutoContrast(),
        TorchvisionEqualize(),
    ]


def create_uniform_randaugment_ops(magnitude: int) -> list[A.BasicTransform | A.BaseCompose]:
    """The 14 ops of bench's first RandAugment, each signed strength drawn uniformly from [-max, +max]."""
    f = magnitude / MAX_MAGNITUDE
    shear = math.degrees(math.atan(0.3 * f))
    shift = 0.45 * f
    tone = 0.9 * f
    bits = 8 - round(4 * f)
    return [
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


def create_randaugment(num_ops: int = 2, magnitude: int = 9, *, strength: str = "fixed") -> A.BaseCompose:
    """RandAugment on uint8 RGB [H, W, 3] with albumentations: `num_ops` of 14 ops per image at `magnitude` (0..30).

    strength "fixed" follows torchvision's RandAugment(num_ops, magnitude, num_magnitude_bins=31): ops drawn with
    replacement and applied in the order drawn; each signed op at exactly +-its strength linspace(0, max, 31)[m]:
      identity; shear x / y factor <= 0.3 (about the top-left corner); translate x / y <= int(150/331 of the side)
      pixels; rotate <= 30 degrees; brightness, color (saturation), contrast, sharpness factor 1 +- (<= 0.9), as
      torchvision's multiplicative blends; posterize to 8 - round(m / 7.5) bits; solarize at linspace(255, 0, 31)[m];
      auto-contrast; equalize. Geometric ops are nearest neighbour with black fill, as torchvision's defaults.
    strength "uniform" is bench's first version, kept as it was: the same 14 kinds drawn without replacement and
    applied in list order, each signed strength drawn uniformly from [-max, +max] (f = m / 30): rotate <= 30f degrees;
    shear x / y <= atan(0.3f) about the centre; translate x / y <= 0.45f of the side; brightness, contrast <= 0.9f
    (RandomBrightnessContrast, additive); saturation factor 1 +- 0.9f (ColorJitter); sharpen alpha 0..0.9f; posterize
    to 8 - round(4f) bits; solarize above 1 - f of the range; albumentations' auto-contrast and equalize; bilinear
    geometric ops with black fill.
    """
    if num_ops < 0:
        raise DataError(f"RandAugment needs num_ops >= 0, got {num_ops}")
    if not 0 <= magnitude <= MAX_MAGNITUDE:
        raise DataError(f"RandAugment magnitude must be in 0..{MAX_MAGNITUDE}, got {magnitude}")
    if strength not in RANDAUG_STRENGTHS:
        raise DataError(f"RandAugment strength must be one of {', '.join(RANDAUG_STRENGTHS)}, got {strength!r}")
    if strength == "fixed":
        return A.RandomOrder(create_fixed_randaugment_ops(magnitude), n=num_ops, replace=True, p=1.0)
    ops = create_uniform_randaugment_ops(magnitude)
    return A.SomeOf(ops, n=min(num_ops, len(ops)), replace=False, p=1.0)


def create_train_transform(
    mean: Sequence[float],
    std: Sequence[float],
    *,
    randaug_ops: int = 2,
    randaug_magnitude: int = 9,
    randaug_strength: str = "fixed",
) -> A.Compose:
    """uint8 [H, W, 3] -> float32 [3, H, W]: RandAugment, HorizontalFlip(0.5), ColorJitter (always), Normalize."""
    return A.Compose(
        [
            create_randaugment(randaug_ops, randaug_magnitude, strength=randaug_strength),
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
