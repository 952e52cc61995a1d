"""Training methods: a base loss + an optional sampler + optional auxiliary losses, named with ``+``.

``ce`` is cross-entropy, ``cb`` class-balanced loss, ``os`` random oversampling of the minority class and
``fscl`` the feature-similarity loss of the KCC 2025 paper; ``fscl+os`` is the paper's proposed method.
The long-tail literature adds the base losses ``focal``, ``ldam`` (with deferred re-weighting), ``la`` and ``bsce``
and the auxiliary losses ``supcon``, ``bcl`` and ``triplet``. A method without a base loss uses ``ce``, so
``fscl`` means CE + feature similarity.
"""

from __future__ import annotations

import difflib
import re
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
    "fscl": "CE + w x feature-similarity loss on tapped stages (KCC 2025); --stages, w = --sim-weight (0.1, the "
    "authors' code's alpha; the paper's equation has weight 1)",
    "focal": "softmax focal loss (Lin et al., ICCV 2017); --focal-gamma",
    "ldam": "LDAM margins ~ n_c^-1/4 with deferred class-balanced re-weighting (Cao et al., NeurIPS 2019); "
    "--ldam-max-margin, --ldam-scale, --drw-epoch",
    "la": "logit-adjusted cross-entropy, logits + tau log prior (Menon et al., ICLR 2021); --la-tau",
    "bsce": "balanced softmax cross-entropy, logits + log n_c (Ren et al., NeurIPS 2020)",
    "supcon": "CE + w x supervised contrastive loss on a projection of the last tapped stage (Khosla et al., NeurIPS "
    "2020, trained jointly as is usual in one stage); --supcon-temperature, w = --supcon-weight (1)",
    "bcl": "CE + w x balanced contrastive loss: supcon with class-averaging and class prototypes from the classifier "
    "(Zhu et al., CVPR 2022; combine with la as the authors do); --supcon-temperature, w = --bcl-weight (0.3, the "
    "authors' 0.6 / 2.0)",
    "triplet": "CE + w x batch-hard triplet margin loss on the last tapped stage (Hermans et al. 2017; equal weights "
    "as Luo et al., CVPRW 2019); --triplet-margin, w = --triplet-weight (1)",
}

#: The setting (a :class:`bench.config.TrainSettings` field) that weights each auxiliary loss in the total.
AUX_WEIGHTS = {"fscl": "sim_weight", "supcon": "supcon_weight", "bcl": "bcl_weight", "triplet": "triplet_weight"}
assert set(AUX_WEIGHTS) == set(AUX_LOSSES)


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


def _suggestion(name: str, part: str, valid: Sequence[str]) -> str:
    """A method to suggest for a bad ``name`` (with the bad component ``part``): ``name`` joined with + instead of
    -, comma or space when that is a method (``fscl-os`` -> ``fscl+os``), else the component closest to ``part``."""
    joined = re.sub(r"[-, ]+", "+", name.strip())
    if joined != name.strip():
        try:
            return parse_method(joined).name
        except ConfigError:
            pass
    close = difflib.get_close_matches(part, valid, n=1)
    return close[0] if close else ""


def parse_method(name: str) -> MethodSpec:
    """``"fscl+os"`` -> ``MethodSpec(base="ce", oversample=True, aux=("fscl",))``; one-line errors for bad names."""
    parts = [part.strip() for part in name.split("+")]
    valid = components()
    base, sampler, aux = None, None, []
    for part in parts:
        if part not in valid:
            close = _suggestion(name, part, valid)
            hint = f" (did you mean '{close}'?)" if close else ""
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
