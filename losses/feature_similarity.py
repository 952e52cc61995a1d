"""Feature-similarity loss (KCC 2025): pull pairwise cosine similarities towards same-class indicators."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def pool_feature(feature: torch.Tensor) -> torch.Tensor:
    """[B, D] or [B, C, H, W] -> float32 [B, D] (global average pool over H, W)."""
    feature = feature.float()
    if feature.dim() == 4:
        return feature.mean(dim=(2, 3))
    if feature.dim() == 2:
        return feature
    raise ValueError(f"feature must be [B, D] or [B, C, H, W], got shape {tuple(feature.shape)}")


def similarity_loss(feature: torch.Tensor, labels: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean over all B x B entries of (S - T)**2 for one feature [B, D] or [B, C, H, W] -> scalar float32.

    S_ij = cos(h_i, h_j), T_ij = 1 if labels_i == labels_j else 0; the diagonal is included.
    """
    h = pool_feature(feature)
    if h.shape[0] != labels.shape[0]:
        raise ValueError(f"feature batch {h.shape[0]} does not match labels batch {labels.shape[0]}")
    h = F.normalize(h, dim=1, eps=eps)
    sim = h @ h.T
    target = (labels[:, None] == labels[None, :]).float()
    return (sim - target).pow(2).mean()


def feature_list(features: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One tensor or a non-empty sequence of tensors -> a list (ValueError when empty)."""
    if isinstance(features, torch.Tensor):
        return [features]
    if len(features) == 0:
        raise ValueError("features must contain at least one tensor")
    return list(features)


class FeatureSimilarityLoss(nn.Module):
    """Feature-similarity loss of the KCC 2025 paper, summed over the given features (unweighted).

    Each feature is [B, D] or [B, C, H, W] (global-average-pooled first). For each, S_ij is the cosine
    similarity of samples i and j and T_ij = 1 if they share a label else 0; the loss is the mean of
    (S - T)**2 over all B x B entries. Computed in float32 whatever the input dtype; the caller applies
    any loss weight.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, features: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """features: one tensor or a sequence of [B, D] / [B, C, H, W]; labels [B] -> scalar float32."""
        features = feature_list(features)
        losses = [similarity_loss(f, labels, self.eps) for f in features]
        return torch.stack(losses).sum()
