"""k-nearest-neighbour evaluation of a metric-learning run: classify each test image by its nearest training images.

Runs whose method has the ``triplet`` or ``supcon`` auxiliary loss learn an embedding meant for retrieval (as the
humpback-whale projects did); their kNN accuracy is reported beside the classifier's accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import Tensor, nn

from bench.device import DeviceSetup, evaluation_mode, to_device

#: Auxiliary losses whose runs get a kNN evaluation.
METRIC_LEARNING_LOSSES = ("triplet", "supcon", "bcl")
KNN_NEIGHBOURS = 5


def needs_knn(aux: Sequence[str]) -> bool:
    """Whether a method's auxiliary losses (``MethodSpec.aux``) include a metric-learning loss."""
    return any(name in METRIC_LEARNING_LOSSES for name in aux)


def embed_last_tap(
    model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], setup: DeviceSetup
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised pooled features of the model's last tapped stage (the one the auxiliary loss shapes) and the
    labels, in loader order: (float32 [N, D], int64 [N]). ``model(x)`` returns ``(logits, [taps [B, D_l]])``."""
    features, targets = [], []
    with evaluation_mode(model):
        for images, labels in loader:
            images, _ = to_device(images, labels, setup)
            _, taps = model(images)  # in float32, as evaluate(): no autocast outside training
            features.append(taps[-1].float().cpu())
            targets.append(labels)
    embedded = torch.nn.functional.normalize(torch.cat(features), dim=1)
    return embedded.numpy(), torch.cat(targets).numpy().astype(np.int64)


def knn_predict(
    train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, k: int = KNN_NEIGHBOURS
) -> np.ndarray:
    """Majority vote of the k (fewer when the train set is smaller) nearest training features by cosine distance:
    train [N, D] with labels [N], test [M, D] -> predicted labels int64 [M]."""
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_labels)), metric="cosine", algorithm="brute")
    knn.fit(train_features, train_labels)
    return knn.predict(test_features).astype(np.int64)


def knn_accuracy(
    model: nn.Module,
    train_loader: Iterable[tuple[Tensor, Tensor]],
    test_loader: Iterable[tuple[Tensor, Tensor]],
    setup: DeviceSetup,
    k: int = KNN_NEIGHBOURS,
) -> float:
    """Test accuracy of kNN over the embedded training subset; both loaders unaugmented, in a fixed order."""
    train, train_labels = embed_last_tap(model, train_loader, setup)
    test, test_labels = embed_last_tap(model, test_loader, setup)
    return float((knn_predict(train, train_labels, test, k) == test_labels).mean())
