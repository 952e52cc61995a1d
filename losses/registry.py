"""Name -> factory maps for the loss components of a method, and the options they read."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from losses.balanced_contrastive import BalancedContrastiveLoss
from losses.balanced_softmax import BalancedSoftmaxLoss
from losses.class_balanced import ClassBalancedLoss
from losses.feature_similarity import FeatureSimilarityLoss
from losses.focal import FocalLoss
from losses.ldam import LDAMLoss
from losses.logit_adjusted import LogitAdjustedLoss
from losses.supervised_contrastive import SupConLoss
from losses.triplet import TripletLoss


@dataclass(frozen=True)
class LossOptions:
    """Hyper-parameters of every loss component (named like the run options); each factory reads its own."""

    cb_beta: float = 0.9999
    cb_gamma: float = 0.0
    cb_kind: str = "softmax"
    focal_gamma: float = 2.0
    ldam_max_margin: float = 0.5
    ldam_scale: float = 30.0
    drw_epoch: int | None = None  # first re-weighted epoch of ldam (1-based); None: never re-weight
    la_tau: float = 1.0
    supcon_temperature: float = 0.1  # also bcl's
    triplet_margin: float = 0.2


class Float32CrossEntropyLoss(nn.CrossEntropyLoss):
    """nn.CrossEntropyLoss (mean reduction) computed in float32: logits [B, C], labels [B] -> scalar."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(input.float(), target)


@dataclass(frozen=True)
class ClassifierRef:
    """The model's classifier as a loss may read it: its input width and a getter of its weight [C, in_dim]."""

    in_dim: int
    weight: Callable[[], torch.Tensor]


BaseFactory = Callable[[Sequence[int], LossOptions], nn.Module]  # (class_counts [C], options)
# (channels of the tapped stages, options, the model's classifier if known)
AuxFactory = Callable[[Sequence[int], LossOptions, ClassifierRef | None], nn.Module]

BASE_LOSSES: dict[str, BaseFactory] = {
    "ce": lambda counts, o: Float32CrossEntropyLoss(),
    "cb": lambda counts, o: ClassBalancedLoss(counts, beta=o.cb_beta, gamma=o.cb_gamma, kind=o.cb_kind),
    "focal": lambda counts, o: FocalLoss(gamma=o.focal_gamma),
    "ldam": lambda counts, o: LDAMLoss(
        counts, max_margin=o.ldam_max_margin, scale=o.ldam_scale, drw_epoch=o.drw_epoch
    ),  # fmt: skip
    "la": lambda counts, o: LogitAdjustedLoss(counts, tau=o.la_tau),
    "bsce": lambda counts, o: BalancedSoftmaxLoss(counts),
}


def _make_supcon(feature_dims: Sequence[int], options: LossOptions, classifier: ClassifierRef | None) -> nn.Module:
    if not feature_dims:
        raise ValueError("supcon needs the channel counts of the tapped stages (feature_dims) to size its projection")
    return SupConLoss(feature_dims[-1], temperature=options.supcon_temperature)


def _make_bcl(feature_dims: Sequence[int], options: LossOptions, classifier: ClassifierRef | None) -> nn.Module:
    if not feature_dims or classifier is None:
        raise ValueError("bcl needs the tapped stages' channel counts (feature_dims) and the model's classifier")
    return BalancedContrastiveLoss(
        feature_dims[-1], classifier.in_dim, classifier.weight, temperature=options.supcon_temperature
    )


AUX_LOSSES: dict[str, AuxFactory] = {
    "fscl": lambda dims, o, classifier: FeatureSimilarityLoss(),
    "supcon": _make_supcon,
    "bcl": _make_bcl,
    "triplet": lambda dims, o, classifier: TripletLoss(margin=o.triplet_margin),
}


def _lookup(table: dict[str, Callable[..., nn.Module]], name: str) -> Callable[..., nn.Module]:
    if name not in table:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(table)}")
    return table[name]


def create_base_loss(name: str, class_counts: Sequence[int], **options: Any) -> nn.Module:
    """Base loss called as loss(logits [B, C], labels [B]) -> scalar; ``options`` are :class:`LossOptions` fields
    (each loss ignores the ones it does not read)."""
    return _lookup(BASE_LOSSES, name)(class_counts, LossOptions(**options))


def create_aux_loss(
    name: str, feature_dims: Sequence[int] = (), classifier: ClassifierRef | None = None, **options: Any
) -> nn.Module:
    """Auxiliary loss called as loss(features: list of [B, D_l] tensors, labels [B]) -> scalar.

    ``feature_dims`` are the channel counts D_l of the tapped stages (supcon and bcl size their projection heads
    from the last); ``classifier`` is the model's classifier (bcl's class prototypes come from its weights);
    ``options`` are :class:`LossOptions` fields."""
    return _lookup(AUX_LOSSES, name)(tuple(feature_dims), LossOptions(**options), classifier)
