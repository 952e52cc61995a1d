"""LDAM loss with deferred re-weighting (Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware
Margin Loss", NeurIPS 2019)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from losses.weighting import check_counts, effective_number_weights

DRW_BETA = 0.9999


def default_drw_epoch(epochs: int) -> int:
    """First re-weighted epoch (1-based) when none is given: the one after the first 80% of ``epochs``,
    floor(0.8 x epochs) + 1 (integer arithmetic, so no float rounding), which is at most ``epochs``.

    Cao et al.'s code re-weights from the 0-based epoch 160 of 200, the 161st: 200 -> 161, 10 -> 9, 2 -> 2, 1 -> 1.
    """
    return 4 * epochs // 5 + 1


def ldam_margins(class_counts: Sequence[int], max_margin: float = 0.5) -> torch.Tensor:
    """Per-class margins [C] float32: Delta_c proportional to n_c**(-1/4), the rarest class's margin ``max_margin``."""
    counts = torch.tensor(check_counts(class_counts), dtype=torch.float64)
    margins = counts.pow(-0.25)
    return (margins * (max_margin / margins.max())).float()


class LDAMLoss(nn.Module):
    """Cross-entropy on ``scale * (logits - Delta_y * onehot(y))``, optionally re-weighted from ``drw_epoch`` on.

    Before ``drw_epoch`` (1-based, see :meth:`set_epoch`) the loss is the plain batch mean; from it on, each
    sample is weighted by the class-balanced weight of its class (effective number, ``drw_beta``; weights sum to
    C) and, as in the authors' code (``F.cross_entropy(..., weight=w)``), the batch is averaged by the sum of its
    weights. ``drw_epoch=None`` never re-weights. Computed in float32 whatever the dtype of the logits.

    The paper pairs LDAM with a cosine classifier (logits in [-1, 1]), for which ``max_margin`` 0.5 and ``scale`` 30
    are tuned; ``bench`` gives ``ldam`` methods one (:class:`backbones.cosine.CosineClassifier`).
    """

    margins: torch.Tensor
    drw_weights: torch.Tensor

    def __init__(
        self,
        class_counts: Sequence[int],
        *,
        max_margin: float = 0.5,
        scale: float = 30.0,
        drw_epoch: int | None = None,
        drw_beta: float = DRW_BETA,
    ) -> None:
        super().__init__()
        if max_margin < 0:
            raise ValueError(f"max_margin must be >= 0, got {max_margin}")
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        if drw_epoch is not None and drw_epoch < 1:
            raise ValueError(f"drw_epoch must be >= 1 (1-based) or None, got {drw_epoch}")
        self.max_margin = max_margin
        self.scale = scale
        self.drw_epoch = drw_epoch
        self.epoch = 1
        self.register_buffer("margins", ldam_margins(class_counts, max_margin))
        self.register_buffer("drw_weights", effective_number_weights(class_counts, drw_beta))

    @property
    def logit_scale(self) -> float:
        """The factor the loss multiplies the logits by (``scale``): the model's logits as trained are
        ``scale * cosine`` (margins aside), which is what its test logits should be saved as."""
        return self.scale

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss the (1-based) epoch about to be trained; re-weighting starts at ``drw_epoch``."""
        self.epoch = epoch

    @property
    def reweighting(self) -> bool:
        return self.drw_epoch is not None and self.epoch >= self.drw_epoch

    def class_weights(self) -> torch.Tensor:
        """Per-class weights [C] of the current epoch: all ones before ``drw_epoch``, class-balanced from it on."""
        return self.drw_weights if self.reweighting else torch.ones_like(self.drw_weights)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """logits [B, C], labels [B] int64 -> scalar float32."""
        logits = logits.float()
        if logits.shape[1] != self.margins.numel():
            raise ValueError(f"logits have {logits.shape[1]} classes, class_counts {self.margins.numel()}")
        true_class = F.one_hot(labels, num_classes=logits.shape[1]).float()
        adjusted = self.scale * (logits - true_class * self.margins[labels][:, None])
        return F.cross_entropy(adjusted, labels, weight=self.drw_weights if self.reweighting else None)

    def extra_repr(self) -> str:
        return f"max_margin={self.max_margin}, scale={self.scale}, drw_epoch={self.drw_epoch}"
