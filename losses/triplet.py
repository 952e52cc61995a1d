"""Triplet margin loss with in-batch batch-hard mining (Hermans et al., "In Defense of the Triplet Loss", 2017)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from losses.feature_similarity import feature_list, pool_feature


def batch_hard_triplet_loss(features: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """features [B, D] (L2-normalised here), labels [B] -> scalar float32.

    For each anchor: d+ = distance to its farthest same-class sample, d- = distance to its nearest other-class
    sample (Euclidean, on the unit sphere); the loss is the mean of max(d+ - d- + margin, 0) over anchors that have
    both. With no such anchor it is 0, still attached to the graph.
    """
    z = F.normalize(features.float(), dim=1)
    if z.shape[0] != labels.shape[0]:
        raise ValueError(f"feature batch {z.shape[0]} does not match labels batch {labels.shape[0]}")
    # ||a - b||^2 = 2 - 2 a.b for unit vectors; the clamp keeps sqrt's gradient finite for identical points
    distances = (2.0 - 2.0 * z @ z.T).clamp_min(1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    positives = same & ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    negatives = ~same
    valid = positives.any(dim=1) & negatives.any(dim=1)
    if not valid.any():
        return z.sum() * 0.0
    hardest_positive = distances.masked_fill(~positives, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(~negatives, float("inf")).amin(dim=1)
    return F.relu(hardest_positive - hardest_negative + margin)[valid].mean()


class TripletLoss(nn.Module):
    """Batch-hard triplet margin loss on the L2-normalised pooled last given feature (the last tapped stage).

    Computed in float32 whatever the input dtype; the caller applies any loss weight.
    """

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = margin

    def forward(self, features: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """features: one tensor or a sequence of [B, D] / [B, D, H, W] (the last is used); labels [B] -> scalar."""
        features = feature_list(features)
        return batch_hard_triplet_loss(pool_feature(features[-1]), labels, self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"
