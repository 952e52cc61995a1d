"""Training methods: a base loss + an optional sampler + optional auxiliary losses, named with ``+``.

``ce`` is cross-entropy, ``cb`` class-balanced loss, ``os`` random oversampling of the minority class and
``fscl`` the feature-similarity loss of the KCC 2025 paper; ``fscl+os`` is the paper's proposed method.
The long-tail literature adds the base losses ``focal``, ``ldam`` (with deferred re-weighting), ``la`` and ``bsce``
and the auxiliary losses ``supcon``, ``bcl`` and ``triplet``. A method without a base loss uses ``ce``, so
``fscl`` means CE + feature similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from torch import Tensor, nn

import losses
from bench.config import TrainSettings
from bench.method_names import (  # the names, re-exported: bench.methods is where methods are built
    AUX_LOSSES,
    AUX_WEIGHTS,
    BASE_LOSSES,
    METHOD_DESCRIPTIONS,
    SAMPLERS,
    MethodSpec,
    components,
    parse_method,
    parse_methods,
)
from losses import ClassifierRef, LossOptions, create_aux_loss, create_base_loss, default_drw_epoch

# the torch-free names must be the registry's (a loss added there is added in bench.method_names too)
assert BASE_LOSSES == tuple(losses.BASE_LOSSES) and AUX_LOSSES == tuple(losses.AUX_LOSSES)

__all__ = [
    "AUX_WEIGHTS",
    "METHOD_DESCRIPTIONS",
    "SAMPLERS",
    "MethodLoss",
    "MethodSpec",
    "components",
    "create_method_loss",
    "drw_epoch",
    "loss_options",
    "parse_method",
    "parse_methods",
]


class MethodLoss(nn.Module):
    """Total loss of a method: ``base(logits, y) + sum over aux losses a of weight_a * a(features, y)``.

    Returns the total and each term (detached, unweighted) keyed by its component name, for per-epoch logging.
    Components may own parameters (supcon's projection head): hand ``parameters()`` to the optimizer with the
    model's. ``aux_weights`` holds a weight per auxiliary loss (:data:`AUX_WEIGHTS` names their settings).
    """

    def __init__(
        self, base_name: str, base: nn.Module, aux: dict[str, nn.Module], aux_weights: dict[str, float]
    ) -> None:
        super().__init__()
        missing = sorted(set(aux) - set(aux_weights))
        if missing:
            raise ValueError(f"no weight for the auxiliary loss {missing[0]}")
        self.base_name = base_name
        self.base = base
        self.aux = nn.ModuleDict(aux)
        self.aux_weights = {name: float(aux_weights[name]) for name in aux}

    @property
    def logit_scale(self) -> float:
        """The factor the base loss multiplies the logits by in training (ldam's scale s on its cosines; 1 for the
        others): test logits are saved so scaled, so that their softmax is the one the model was trained for."""
        return float(getattr(self.base, "logit_scale", 1.0))

    def forward(self, logits: Tensor, features: Sequence[Tensor], labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        base = self.base(logits, labels)
        total = base
        terms = {self.base_name: base.detach()}
        for name, loss in self.aux.items():
            value = loss(list(features), labels)
            total = total + self.aux_weights[name] * value
            terms[name] = value.detach()
        return total, terms

    def set_epoch(self, epoch: int) -> None:
        """Tell epoch-dependent components (ldam's deferred re-weighting) the 1-based epoch about to be trained."""
        for component in (self.base, *self.aux.values()):
            if hasattr(component, "set_epoch"):
                component.set_epoch(epoch)


def drw_epoch(settings: TrainSettings) -> int:
    """First epoch (1-based) of ldam's re-weighting and drs's re-sampling: --drw-epoch, else the epoch after the
    first 80% (:func:`losses.default_drw_epoch`)."""
    return settings.drw_epoch if settings.drw_epoch is not None else default_drw_epoch(settings.epochs)


def loss_options(settings: TrainSettings) -> dict[str, Any]:
    """The loss hyper-parameters of ``settings`` (:class:`losses.LossOptions` fields), ``drw_epoch`` resolved."""
    options = {field.name: getattr(settings, field.name) for field in fields(LossOptions)}
    options["drw_epoch"] = drw_epoch(settings)
    return options


def create_method_loss(
    spec: MethodSpec,
    class_counts: Sequence[int],
    settings: TrainSettings,
    *,
    feature_dims: Sequence[int] = (),
    classifier: ClassifierRef | None = None,
) -> MethodLoss:
    """Build the loss of ``spec`` for a training set with ``class_counts`` [C] (index = task label).

    ``feature_dims`` are the channel counts of the model's tapped stages (``TappedBackbone.tap_channels``);
    ``supcon`` and ``bcl`` need them to size their projection heads, and ``bcl`` the model's ``classifier``.
    """
    options = loss_options(settings)
    base = create_base_loss(spec.base, class_counts, **options)
    aux = {name: create_aux_loss(name, feature_dims, classifier, **options) for name in spec.aux}
    return MethodLoss(spec.base, base, aux, {name: getattr(settings, AUX_WEIGHTS[name]) for name in spec.aux})
