"""Name -> factory maps for the loss components of a method."""

from collections.abc import Callable, Sequence

import torch
from torch import nn

from losses.class_balanced import ClassBalancedLoss
from losses.feature_similarity import FeatureSimilarityLoss


class Float32CrossEntropyLoss(nn.CrossEntropyLoss):
    """nn.CrossEntropyLoss (mean reduction) computed in float32: logits [B, C], labels [B] -> scalar."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(input.float(), target)


def _make_ce(class_counts: Sequence[int], *, beta: float, gamma: float, kind: str) -> nn.Module:
    return Float32CrossEntropyLoss()


def _make_cb(class_counts: Sequence[int], *, beta: float, gamma: float, kind: str) -> nn.Module:
    return ClassBalancedLoss(class_counts, beta=beta, gamma=gamma, kind=kind)


BASE_LOSSES: dict[str, Callable[..., nn.Module]] = {"ce": _make_ce, "cb": _make_cb}
AUX_LOSSES: dict[str, Callable[..., nn.Module]] = {"fscl": FeatureSimilarityLoss}


def _lookup(table: dict[str, Callable[..., nn.Module]], name: str) -> Callable[..., nn.Module]:
    if name not in table:
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join(table)}")
    return table[name]


def create_base_loss(
    name: str, class_counts: Sequence[int], *, cb_beta: float = 0.9999, cb_gamma: float = 0.0, cb_kind: str = "softmax"
) -> nn.Module:
    """Base loss called as loss(logits [B, C], labels [B]) -> scalar; "ce" ignores the cb_* arguments."""
    return _lookup(BASE_LOSSES, name)(class_counts, beta=cb_beta, gamma=cb_gamma, kind=cb_kind)


def create_aux_loss(name: str) -> nn.Module:
    """Auxiliary loss called as loss(features: list of [B, D] tensors, labels [B]) -> scalar."""
    return _lookup(AUX_LOSSES, name)()
