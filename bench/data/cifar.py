"""CIFAR-10 as a built-in data set: downloaded once with torchvision, read from the python-pickle batches."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

from bench.data.errors import DataError
from bench.data.splits import DatasetSource, ImageSplit

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META_FILE = "batches.meta"

CIFAR10_TASKS: dict[str, tuple[str, str]] = {"fine": ("deer", "horse"), "coarse": ("deer", "frog")}
CIFAR10_DEFAULTS: dict[str, int] = {"img_size": 32, "epochs": 20, "majority_count": 5000, "seeds": 3}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FINGERPRINT = hashlib.sha256(b"cifar-10-python/data_batch_1-5/test_batch").hexdigest()[:12]


def _download_cifar10(cache_dir: Path) -> None:
    """Download and unpack cifar-10-python.tar.gz into cache_dir (checks the archive's md5)."""
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(CIFAR10_URL, download_root=str(cache_dir), md5=CIFAR10_MD5, remove_finished=True)


def _unpickle(path: Path) -> dict[bytes, object]:
    """One CIFAR pickle file as a dict with bytes keys."""
    try:
        with path.open("rb") as f:
            content = pickle.load(f, encoding="bytes")
    except Exception as e:  # any failure means a damaged file
        reason = type(e).__name__
        raise DataError(f"{path}: unreadable CIFAR-10 file ({reason}); delete {path.parent} to re-download") from None
    if not isinstance(content, dict):
        raise DataError(f"{path}: not a CIFAR-10 batch; delete {path.parent} to re-download")
    return content


def _read_batches(paths: list[Path], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 32, 32, 3] and labels int64 [N] of CIFAR pickle batches."""
    images, labels = [], []
    for path in paths:
        batch = _unpickle(path)
        data = np.asarray(batch.get(b"data"), dtype=np.uint8) if b"data" in batch else None
        batch_labels = np.asarray(batch.get(b"labels", []), dtype=np.int64)
        if data is None or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(batch_labels):
            raise DataError(
                f"{path}: expected b'data' uint8 [N, 3072] and N b'labels'; delete {path.parent} to re-download"
            )
        if len(batch_labels) and (batch_labels.min() < 0 or batch_labels.max() >= num_classes):
            raise DataError(f"{path}: labels outside 0..{num_classes - 1}; delete {path.parent} to re-download")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(batch_labels)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def open_cifar10(cache_dir: Path) -> DatasetSource:
    """CIFAR-10 (50,000 train / 10,000 test, 32x32) from cache_dir/cifar-10-batches-py, downloading it if absent."""
    folder = Path(cache_dir) / CIFAR10_FOLDER
    needed = [folder / name for name in (*TRAIN_BATCHES, TEST_BATCH, META_FILE)]
    if not all(p.is_file() for p in needed):
        try:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            _download_cifar10(Path(cache_dir))
        except Exception as e:  # offline, proxy, disk full, bad checksum ...
            reason = " ".join(str(e).split()) or type(e).__name__
            raise DataError(
                f"could not download CIFAR-10 into {cache_dir} ({reason}); check the network, "
                f"or unpack cifar-10-python.tar.gz there so that {folder}/data_batch_1 exists"
            ) from None
        missing = [p.name for p in needed if not p.is_file()]
        if missing:
            raise DataError(f"{folder} lacks {', '.join(missing)} after download; delete it and try again")
    names = _unpickle(folder / META_FILE).get(b"label_names")
    if not isinstance(names, list) or not names:
        raise DataError(f"{folder / META_FILE}: no b'label_names'; delete {folder} to re-download")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    train_images, train_labels = _read_batches([folder / n for n in TRAIN_BATCHES], len(classes))
    test_images, test_labels = _read_batches([folder / TEST_BATCH], len(classes))
    tasks = {k: v for k, v in CIFAR10_TASKS.items() if v[0] in classes and v[1] in classes}
    return DatasetSource(
        name="cifar10",
        train=ImageSplit(classes=classes, labels=train_labels, images=train_images),
        test=ImageSplit(classes=classes, labels=test_labels, images=test_images),
        test_split="test",
        tasks=tasks,
        defaults=dict(CIFAR10_DEFAULTS),
        fingerprint=CIFAR10_FINGERPRINT,
    )
