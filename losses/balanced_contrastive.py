"""Balanced contrastive loss (Zhu et al., "Balanced Contrastive Learning for Long-Tailed Visual Recognition",
CVPR 2022): supervised contrastive learning with class-averaging and class-complement."""

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from losses.feature_similarity import feature_list, pool_feature


def balanced_contrastive_loss(
    embeddings: torch.Tensor, prototypes: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """L_BCL on embeddings [B, P] and one prototype per class [C, P] (both L2-normalised here), labels [B] -> scalar.

    The set S holds the B samples and the C prototypes (class-complement: every class is in every batch). For anchor
    i (a sample) and every other member k of S, s_ik = z_i.z_k / t. Class-averaging: the denominator is
    sum_c 1/|S_c \\ {i}| sum_{k in S_c, k != i} exp(s_ik), each class's members averaged; the positives P(i) are the
    other members of i's class, its prototype included, so |P(i)| >= 1. l_i = -1/|P(i)| sum_{p in P(i)}
    (s_ip - log denominator); the loss is the mean over the B anchors. Computed in float32.
    """
    z = F.normalize(embeddings.float(), dim=1)
    centres = F.normalize(prototypes.float(), dim=1)
    if z.shape[0] != labels.shape[0]:
        raise ValueError(f"feature batch {z.shape[0]} does not match labels batch {labels.shape[0]}")
    if z.shape[1] != centres.shape[1]:
        raise ValueError(f"embeddings have {z.shape[1]} dimensions but prototypes {centres.shape[1]}")
    batch, classes = z.shape[0], centres.shape[0]
    members = torch.cat([z, centres])  # [B + C, P]
    member_labels = torch.cat([labels, torch.arange(classes, device=labels.device)])
    logits = z @ members.T / temperature  # [B, B + C]
    not_self = torch.ones_like(logits, dtype=torch.bool)
    not_self[:, :batch] = ~torch.eye(batch, dtype=torch.bool, device=z.device)
    same = (labels[:, None] == member_labels[None, :]) & not_self
    class_size = torch.bincount(member_labels, minlength=classes).to(logits.dtype)  # |S_c|, samples + prototype
    # |S_c \ {i}| for each member k: its class's size, less one where k is of the anchor's class (the anchor is out)
    size = class_size[member_labels][None, :] - (labels[:, None] == member_labels[None, :]).to(logits.dtype)
    shifted = logits - logits.max(dim=1, keepdim=True).values.detach()
    weighted = torch.exp(shifted).masked_fill(~not_self, 0.0) / size
    log_prob = shifted - torch.log(weighted.sum(dim=1, keepdim=True))
    per_anchor = -(log_prob.masked_fill(~same, 0.0)).sum(dim=1) / same.sum(dim=1)
    return per_anchor.mean()


def _projection(in_dim: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))


class BalancedContrastiveLoss(nn.Module):
    """BCL on a learned projection of the last given feature (the last tapped stage), with class prototypes that are
    the classifier's weight vectors through a second projection, as in the authors' code.

    Owns both projection heads (Linear - ReLU - Linear, as SupConLoss's): hand its parameters to the optimizer.
    ``classifier_weight`` returns the model's classifier weight [C, D_cls] at call time (the classifier is the
    model's, trained by the model's optimizer entry, not registered here). Computed in float32.
    """

    def __init__(
        self,
        feature_dim: int,
        classifier_dim: int,
        classifier_weight: Callable[[], torch.Tensor],
        *,
        projection_dim: int = 128,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.projection = _projection(feature_dim, projection_dim)
        self.prototype_projection = _projection(classifier_dim, projection_dim)
        self._classifier_weight = classifier_weight  # a plain callable: not a submodule, not a parameter here

    def forward(self, features: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """features: one tensor or a sequence of [B, D] / [B, D, H, W] (the last is used); labels [B] -> scalar."""
        features = feature_list(features)
        embeddings = self.projection(pool_feature(features[-1]))
        prototypes = self.prototype_projection(self._classifier_weight().to(embeddings.dtype))
        return balanced_contrastive_loss(embeddings, prototypes, labels, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
