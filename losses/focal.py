"""Softmax focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017)."""

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Batch mean of -(1 - p_t)**gamma * log p_t, with p_t the softmax probability of the true class.

    gamma = 0 is cross-entropy. (1 - p_t)**gamma is taken as exp(gamma * log sum_{c != t} p_c), so it and its
    gradient stay finite when p_t rounds to 1. Computed in float32 whatever the dtype of the logits.
    """

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """logits [B, C] (C >= 2), labels [B] int64 -> scalar float32."""
        log_probs = F.log_softmax(logits.float(), dim=1)
        log_pt = log_probs.gather(1, labels[:, None]).squeeze(1)
        if self.gamma == 0:
            return (-log_pt).mean()
        true_class = F.one_hot(labels, num_classes=logits.shape[1]).bool()
        log_rest = torch.logsumexp(log_probs.masked_fill(true_class, float("-inf")), dim=1)  # log(1 - p_t)
        return (-torch.exp(self.gamma * log_rest) * log_pt).mean()

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"
