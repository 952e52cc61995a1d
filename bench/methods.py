"""Training methods: a base loss + an optional sampler + optional auxiliary losses, named with ``+``.

``ce`` is cross-entropy, ``cb`` class-balanced loss, ``os`` random oversampling of the minority class and
``fscl`` the feature-similarity loss of the KCC 2025 paper; ``fscl+os`` is the paper's proposed method.
The long-tail literature adds the base losses ``focal``, ``ldam`` (with deferred re-weighting), ``la`` and ``bsce``
and the auxiliary losses ``supcon``, ``bcl`` and ``triplet``. A method without a base loss uses ``ce``, so
``fscl`` means CE + feature similarity.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from torch import Tensor, nn

from bench.config import ConfigError, TrainSettings
from losses import (
    AUX_LOSSES,
    BASE_LOSSES,
    ClassifierRef,
    LossOptions,
    create_aux_loss,
    create_base_loss,
    default_drw_epoch,
)

SAMPLERS = ("os", "drs")

METHOD_DESCRIPTIONS = {
    "ce": "cross-entropy (the baseline)",
    "cb": "class-balanced loss, effective number of samples (Cui et al., CVPR 2019)",
    "os": "random oversampling with replacement, every class drawn equally often (binary: minority to 1:1)",
    "drs": "deferred re-sampling: plain shuffling, then os from --drw-epoch on (Cao et al., NeurIPS 2019)",
    "fscl": "CE + feature-similarity loss on tapped stages (KCC 2025); --sim-weight, --stages",
    "focal": "softmax focal loss (Lin et al., ICCV 2017); --focal-gamma",
    "ldam": "LDAM margins ~ n_c^-1/4 with deferred class-balanced re-weighting (Cao et al., NeurIPS 2019); "
    "--ldam-max-margin, --ldam-scale, --drw-epoch",
    "la": "logit-adjusted cross-entropy, logits + tau log prior (Menon et al., ICLR 2021); --la-tau",
    "bsce": "balanced softmax cross-entropy, logits + log n_c (Ren et al., NeurIPS 2020)",
    "supcon": "CE + supervised contrastive loss on a projection of the last tapped stage (Khosla et al., NeurIPS 2020)"
    "; --supcon-temperature, weight --sim-weight",
    "bcl": "CE + balanced contrastive loss: supcon with class-averaging and class prototypes from the classifier "
    "(Zhu et al., CVPR 2022; combine with la as the authors do); --supcon-temperature, weight --sim-weight",
    "triplet": "CE + batch-hard triplet margin loss on the last tapped stage (Hermans et al. 2017); --triplet-margin, "
    "weight --sim-weight",
}


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method name such as ``cb+fscl+os``; ``drs`` is ``oversample`` with ``deferred_sampling``."""

    name: str
    base: str
    oversample: bool
    aux: tuple[str, ...]
    deferred_sampling: bool = False

    @property
    def needs_taps(self) -> bool:
        return bool(self.aux)

    @property
    def cosine_classifier(self) -> bool:
        """LDAM's margins and scale assume bounded logits: it trains with a cosine classifier, as in Cao et al."""
        return self.base == "ldam"


def components() -> tuple[str, ...]:
    return (*BASE_LOSSES, *SAMPLERS, *AUX_LOSSES)


def parse_method(name: str) -> MethodSpec:
    """``"fscl+os"`` -> ``MethodSpec(base="ce", oversample=True, aux=("fscl",))``; one-line errors for bad names."""
    parts = [part.strip() for part in name.split("+")]
    valid = components()
    base, sampler, aux = None, None, []
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
            if sampler is not None:
                raise ConfigError(
                    f"method '{name}' has two samplers ({sampler}, {part}); use one of {', '.join(SAMPLERS)}"
                )
            sampler = part
        else:
            aux.append(part)
    return MethodSpec(
        name=name, base=base or "ce", oversample=sampler is not None, aux=tuple(aux), deferred_sampling=sampler == "drs"
    )


def parse_methods(names: Sequence[str]) -> tuple[MethodSpec, ...]:
    return tuple(parse_method(name) for name in names)


class MethodLoss(nn.Module):
    """Total loss of a method: ``base(logits, y) + sim_weight * sum(aux(features, y))``.

    Returns the total and each term (detached) keyed by its component name, for per-epoch logging. Components
    may own parameters (supcon's projection head): hand ``parameters()`` to the optimizer with the model's.
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

    def set_epoch(self, epoch: int) -> None:
        """Tell epoch-dependent components (ldam's deferred re-weighting) the 1-based epoch about to be trained."""
        for component in (self.base, *self.aux.values()):
            if hasattr(component, "set_epoch"):
                component.set_epoch(epoch)


def drw_epoch(settings: TrainSettings) -> int:
    """First epoch (1-based) of ldam's re-weighting and drs's re-sampling: --drw-epoch, else 80% of the epochs."""
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
    return MethodLoss(spec.base, base, aux, settings.sim_weight)
