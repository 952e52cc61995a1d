"""scikit-learn's bundled 8x8 handwritten digits as a tiny built-in data set (no download)."""

from __future__ import annotations

import hashlib

import numpy as np

from bench.data.splits import DatasetSource, ImageSplit

# 1 vs 8 is the pair a linear classifier confuses most on this split; 0 vs 1 it never confuses.
DIGITS_TASKS: dict[str, tuple[str, str]] = {"fine": ("1", "8"), "coarse": ("0", "1")}
DIGITS_DEFAULTS: dict[str, int] = {"img_size": 32, "epochs": 10, "majority_count": 10000, "seeds": 2}
DIGITS_FINGERPRINT = hashlib.sha256(b"sklearn-digits/test_size=0.25/stratified/random_state=0").hexdigest()[:12]


def open_digits() -> DatasetSource:
    """1,347 train and 450 test images of 8x8 digits, grey 0..16 scaled to uint8 0..255 and stacked to RGB."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    grey = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # [1797, 8, 8]
    rgb = np.repeat(grey[..., None], 3, axis=3)
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=labels, random_state=0)
    classes = tuple(str(d) for d in range(10))

    def split(idx: np.ndarray) -> ImageSplit:
        idx = np.sort(idx)
        return ImageSplit(classes=classes, labels=labels[idx], images=np.ascontiguousarray(rgb[idx]))

    return DatasetSource(
        name="digits",
        train=split(train_idx),
        test=split(test_idx),
        test_split="test",
        tasks=dict(DIGITS_TASKS),
        defaults=dict(DIGITS_DEFAULTS),
        fingerprint=DIGITS_FINGERPRINT,
    )
