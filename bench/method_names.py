"""Method names: the components a method is made of, what each does, and the parser of names such as ``fscl+os``.

No torch here, so that listing and checking methods is instant; the losses themselves are built in
:mod:`bench.methods`, which checks at import that the names below are the loss registry's.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bench.config import ConfigError

#: The base losses and auxiliary losses of :mod:`losses.registry`, in its order.
BASE_LOSSES: tuple[str, ...] = ("ce", "cb", "focal", "ldam", "la", "bsce")
AUX_LOSSES: tuple[str, ...] = ("fscl", "supcon", "bcl", "triplet")
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
