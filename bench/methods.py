"""Training methods: a base loss + an optional sampler + optional auxiliary losses, named with ``+``.

``ce`` is cross-entropy, ``cb`` class-balanced loss, ``os`` random oversampling of the minority class and
``fscl`` the feature-similarity loss of the KCC 2025 paper; ``fscl+os`` is the paper's proposed method.
A method without a base loss uses ``ce``, so ``fscl`` means CE + feature similarity.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from bench.config import ConfigError, TrainSettings
from losses import AUX_LOSSES, BASE_LOSSES, create_aux_loss, create_base_loss

SAMPLERS = ("os",)

METHOD_DESCRIPTIONS = {
    "ce": "cross-entropy (the baseline)",
    "cb": "class-balanced loss, effective number of samples (Cui et al., CVPR 2019)",
    "os": "random oversampling of the minority class to 1:1 each epoch, with replacement",
    "fscl": "CE + feature-similarity loss on tapped stages (KCC 2025); --sim-weight, --stages",
}


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name such as ``cb+fscl+os``."""

    name: str
    base: str
    oversample: bool
    aux: tuple[str, ...]

    @property
    def needs_taps(self) -> bool:
        return bool(self.aux)


def components() -> tuple[str, ...]:
    return (*BASE_LOSSES, *SAMPLERS, *AUX_LOSSES)


def parse_method(name: str) -> MethodSpec:
    """``"fscl+os"`` -> ``MethodSpec(base="ce", oversample=True, aux=("fscl",))``; one-line errors for bad names."""
    parts = [part.strip() for part in name.split("+")]
    valid = components()
    base, oversample, aux = None, False, []
    for part in parts:
        if part not in valid:
            close = difflib.get_close_matches(part, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"unknown method component '{part}' in '{name}'{hint}; valid: {', '.join(valid)}, combined with +"
            )
        if parts.count(part) > 1:
            raise ConfigError(f"method '{name}' names '{part}' twice")
        if part in BASE_LOSSES:
            if base is not None:
                raise ConfigError(
                    f"method '{name}' has two base losses ({base}, {part}); use one of {', '.join(BASE_LOSSES)}"
                )
            base = part
        elif part in SAMPLERS:
            oversample = True
        else:
            aux.append(part)
    return MethodSpec(name=name, base=base or "ce", oversample=oversample, aux=tuple(aux))


def parse_methods(names: Sequence[str]) -> tuple[MethodSpec, ...]:
    return tuple(parse_method(name) for name in names)


class MethodLoss(nn.Module):
    """Total loss of a method: ``base(logits, y) + sim_weight * sum(aux(features, y))``.

    Returns the total and each term (detached) keyed by its component name, for per-epoch logging.
    """

    def __init__(self, base_name: str, base: nn.Module, aux: dict[str, nn.Module], aux_weight: float) -> None:
        super().__init__()
        self.base_name = base_name
        self.base = base
        self.aux = nn.ModuleDict(aux)
        self.aux_weight = aux_weight

    def forward(self, logits: Tensor, features: Sequence[Tensor], labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        base = self.base(logits, labels)
        total = base
        terms = {self.base_name: base.detach()}
        for name, loss in self.aux.items():
            value = loss(list(features), labels)
            total = total + self.aux_weight * value
            terms[name] = value.detach()
        return total, terms


def create_method_loss(spec: MethodSpec, class_counts: Sequence[int], settings: TrainSettings) -> MethodLoss:
    """Build the loss of ``spec`` for a training set with ``class_counts`` (index = task label)."""
    base = create_base_loss(
        spec.base, class_counts, cb_beta=settings.cb_beta, cb_gamma=settings.cb_gamma, cb_kind=settings.cb_kind
    )
    aux = {name: create_aux_loss(name) for name in spec.aux}
    return MethodLoss(spec.base, base, aux, settings.sim_weight)
