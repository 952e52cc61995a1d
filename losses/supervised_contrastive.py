"""Supervised contrastive loss (Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from losses.feature_similarity import feature_list, pool_feature


def supervised_contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """L_out of Khosla et al. on embeddings [B, D] (L2-normalised here), labels [B] -> scalar float32.

    For anchor i with positives P(i) (other samples of its class) and A(i) (all other samples):
    l_i = -1/|P(i)| sum_{p in P(i)} log(exp(z_i.z_p / t) / sum_{a in A(i)} exp(z_i.z_a / t)); the loss is the mean
    of l_i over anchors with at least one positive. With no such anchor it is 0, still attached to the graph.
    """
    z = F.normalize(embeddings.float(), dim=1)
    if z.shape[0] != labels.shape[0]:
        raise ValueError(f"feature batch {z.shape[0]} does not match labels batch {labels.shape[0]}")
    batch = z.shape[0]
    self_mask = torch.eye(batch, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    n_positives = positives.sum(dim=1)
    valid = n_positives > 0
    if not valid.any():
        return z.sum() * 0.0
    per_anchor = -log_prob.masked_fill(~positives, 0.0).sum(dim=1)[valid] / n_positives[valid]
    return per_anchor.mean()


class SupConLoss(nn.Module):
    """Supervised contrastive loss on a learned projection of the last given feature (the last tapped stage).

    The projection head is Khosla et al.'s: Linear(D, D) - ReLU - Linear(D, projection_dim), owned by this module,
    so its parameters must be handed to the optimizer. ``feature_dim`` D is the channel count of the last tapped
    stage. Computed in float32 whatever the input dtype; the caller applies any loss weight.
    """

    def __init__(self, feature_dim: int, *, projection_dim: int = 128, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.projection: nn.Module = nn.Sequential(
            nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True), nn.Linear(feature_dim, projection_dim)
        )

    def forward(self, features: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """features: one tensor or a sequence of [B, D] / [B, D, H, W] (the last is used); labels [B] -> scalar."""
        features = feature_list(features)
        embeddings = self.projection(pool_feature(features[-1]))
        return supervised_contrastive_loss(embeddings, labels, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
