"""Logit-adjusted cross-entropy (Menon et al., ICLR 2021)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from losses.weighting import check_counts


class LogitAdjustedLoss(nn.Module):
    """Cross-entropy on logits + tau * log(prior) (Menon et al., "Long-tail learning via logit adjustment", 2021).

    prior_c = n_c / sum(n) from ``class_counts`` [C]; the adjustment applies in training only, the model's raw
    logits are its predictions. Batch mean; computed in float32 whatever the dtype of the logits.
    """

    adjustment: torch.Tensor

    def __init__(self, class_counts: Sequence[int], *, tau: float = 1.0) -> None:
        super().__init__()
        counts = torch.tensor(check_counts(class_counts), dtype=torch.float64)
        self.tau = tau
        self.register_buffer("adjustment", (tau * torch.log(counts / counts.sum())).float())

    def adjusted_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [B, C] -> float32 [B, C] with the per-class adjustment added."""
        if logits.shape[1] != self.adjustment.numel():
            raise ValueError(f"logits have {logits.shape[1]} classes, class_counts {self.adjustment.numel()}")
        return logits.float() + self.adjustment

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """logits [B, C], labels [B] int64 -> scalar float32."""
        return F.cross_entropy(self.adjusted_logits(logits), labels)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, num_classes={self.adjustment.numel()}"
