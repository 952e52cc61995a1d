"""Balanced softmax cross-entropy (Ren et al., NeurIPS 2020)."""

from collections.abc import Sequence

import torch

from losses.logit_adjusted import LogitAdjustedLoss
from losses.weighting import check_counts


class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax cross-entropy (Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition", 2020):
    cross-entropy on logits + log(n_c).

    log(n_c) and log(prior_c) differ by the constant log(sum(n)), which softmax ignores: the value equals
    :class:`LogitAdjustedLoss` with tau = 1.
    """

    def __init__(self, class_counts: Sequence[int]) -> None:
        super().__init__(class_counts, tau=1.0)
        counts = torch.tensor(check_counts(class_counts), dtype=torch.float64)
        self.adjustment = torch.log(counts).float()

    def extra_repr(self) -> str:
        return f"num_classes={self.adjustment.numel()}"
