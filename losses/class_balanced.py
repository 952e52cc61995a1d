"""Class-balanced loss (Cui et al., CVPR 2019)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from losses.weighting import effective_number_weights

KINDS = ("softmax", "sigmoid", "focal")


class ClassBalancedLoss(nn.Module):
    """Class-balanced loss: batch mean of w_{y_i} * l_i.

    The weight of each sample's true class, w = effective_number_weights(class_counts, beta) [C] (sums to C),
    multiplies its per-sample loss l_i and the result is the plain mean over the batch, as in the paper
    authors' code. This is NOT ``nn.CrossEntropyLoss(weight=w)``, which divides by the sum of the batch's
    weights instead of by B.

    Per-sample loss l_i by ``kind``:
      - "softmax": cross-entropy.
      - "sigmoid": sum over classes of binary cross-entropy with logits against the one-hot target.
      - "focal": sum over classes of (1 - p_t)**gamma * BCE-with-logits against the one-hot target
        (gamma = 0 equals "sigmoid").

    Computed in float32 whatever the dtype of the logits.
    """

    weights: torch.Tensor

    def __init__(
        self, class_counts: Sequence[int], *, beta: float = 0.9999, gamma: float = 0.0, kind: str = "softmax"
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.kind = kind
        self.beta = beta
        self.gamma = gamma
        self.register_buffer("weights", effective_number_weights(class_counts, beta))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """logits [B, C], labels [B] int64 -> scalar float32."""
        logits = logits.float()
        if self.kind == "softmax":
            per_sample = F.cross_entropy(logits, labels, reduction="none")
        else:
            target = F.one_hot(labels, num_classes=logits.shape[1]).float()
            bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
            if self.kind == "focal" and self.gamma > 0:
                # (1 - p_t)**gamma = sigmoid(z * (1 - 2t))**gamma, taken through logsigmoid for finite gradients
                bce = torch.exp(self.gamma * F.logsigmoid(logits * (1.0 - 2.0 * target))) * bce
            per_sample = bce.sum(dim=1)
        return (self.weights[labels] * per_sample).mean()

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, beta={self.beta}, gamma={self.gamma}, num_classes={self.weights.numel()}"
