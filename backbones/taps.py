"""Forward hooks that pool intermediate stages of a timm model during its normal forward pass.

A *tap* is an index into ``model.feature_info`` (timm's list of ``{'module', 'num_chs', 'reduction'}`` dicts).
Each tapped module gets a forward hook that global-average-pools the module's output to ``[B, C]`` right away,
so only small vectors are kept and later in-place ops in the network cannot invalidate them for autograd.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .errors import BackboneError

__all__ = ["TappedBackbone", "default_taps", "feature_info_dicts", "pool_features", "resolve_taps"]

# A timm model (or TappedBackbone), its ``feature_info`` list of dicts, or a timm ``FeatureInfo`` object.
FeatureInfoLike = nn.Module | Sequence[Mapping[str, Any]] | Any


def feature_info_dicts(model_or_feature_info: FeatureInfoLike) -> list[dict[str, Any]]:
    """Normalise a model / ``TappedBackbone`` / timm ``FeatureInfo`` / list of dicts to a list of stage dicts."""
    obj = model_or_feature_info
    if isinstance(obj, TappedBackbone):
        obj = obj.model
    if isinstance(obj, nn.Module):
        info = getattr(obj, "feature_info", None)
        if info is None:
            raise BackboneError(f"{_model_label(obj)} has no feature_info, so it has no tappable stages; use taps=()")
        obj = info
    if hasattr(obj, "get_dicts"):  # timm.models.FeatureInfo (features_only models)
        return [dict(d) for d in obj.get_dicts()]
    if isinstance(obj, Sequence) and all(isinstance(d, Mapping) for d in obj):
        return [dict(d) for d in obj]
    raise BackboneError(f"expected a timm model or its feature_info, got {type(model_or_feature_info).__name__}")


def default_taps(model_or_feature_info: FeatureInfoLike) -> tuple[int, ...]:
    """The last two feature_info stages (fewer if the model has fewer), e.g. ``(3, 4)`` = layer3+layer4 on resnet18."""
    n = len(feature_info_dicts(model_or_feature_info))
    return tuple(range(max(0, n - 2), n))


def resolve_taps(
    feature_info: Sequence[Mapping[str, Any]], taps: Sequence[int] | None, model_name: str
) -> tuple[int, ...]:
    """Validate tap indices against ``feature_info``; ``None`` means :func:`default_taps`. Negatives are rejected."""
    if taps is None:
        return default_taps(feature_info)
    if isinstance(taps, (str, bytes)) or not isinstance(taps, Sequence):
        raise BackboneError(f"taps must be a sequence of stage indices, got {taps!r}")
    modules = [str(d["module"]) for d in feature_info]
    valid = f"valid 0-{len(modules) - 1} ({', '.join(modules)})" if modules else "it has no stages"
    seen: set[int] = set()
    for t in taps:
        if isinstance(t, bool) or not isinstance(t, int):
            raise BackboneError(f"stage {t!r} is not an integer index for {model_name}: {valid}")
        if not 0 <= t < len(modules):
            raise BackboneError(f"stage {t} out of range for {model_name}: {valid}")
        if t in seen:
            raise BackboneError(f"stage {t} ({modules[t]}) is tapped twice for {model_name}")
        seen.add(t)
    return tuple(int(t) for t in taps)


def pool_features(out: Tensor, num_chs: int, num_prefix_tokens: int = 0) -> Tensor:
    """Global-average-pool one stage output to ``[B, C]``.

    - ``[B, C, H, W]`` (NCHW, any memory format) -> mean over H, W
    - ``[B, H, W, C]`` (NHWC, e.g. Swin stages; recognised by ``shape[-1] == C != shape[1]``) -> mean over H, W
    - ``[B, N, D]`` tokens -> mean over the ``N - num_prefix_tokens`` patch tokens (cls/register tokens dropped)
    - ``[B, C]`` -> unchanged
    """
    if not isinstance(out, Tensor):
        raise BackboneError(f"tapped module returned {type(out).__name__}, expected a tensor")
    shape = tuple(out.shape)
    if out.ndim == 4:
        if shape[1] == num_chs:
            return out.mean(dim=(2, 3))
        if shape[-1] == num_chs:
            return out.mean(dim=(1, 2))
    elif out.ndim == 3:
        if shape[-1] == num_chs:
            return out[:, num_prefix_tokens:].mean(dim=1)
        if shape[1] == num_chs:
            return out.mean(dim=2)
    elif out.ndim == 2 and shape[1] == num_chs:
        return out
    raise BackboneError(f"cannot pool stage output of shape {list(shape)} to {num_chs} channels")


def _model_label(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__)


class TappedBackbone(nn.Module):
    """A timm classifier that also returns globally pooled features of chosen stages from the same forward pass.

    ``forward(x)`` with ``x: [B, 3, H, W]`` returns ``(logits [B, num_classes], [feat_0 [B, C_0], ...])`` where the
    features follow ``tap_indices`` order and ``C_i == tap_channels[i]``. Works under autocast and with
    ``channels_last`` (no dtype or layout is forced). Hooks are bound methods, so ``copy.deepcopy`` (e.g. EMA
    copies) gives an independent backbone whose hooks feed the copy.
    """

    model: nn.Module
    tap_indices: tuple[int, ...]
    tap_modules: tuple[str, ...]
    tap_channels: tuple[int, ...]

    def __init__(self, model: nn.Module, taps: Sequence[int] | None = None, *, name: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.name = name or _model_label(model)
        if isinstance(taps, Sequence) and not isinstance(taps, str) and len(taps) == 0:
            info: list[dict[str, Any]] = []  # taps=() must work even for models without feature_info
            indices: tuple[int, ...] = ()
        else:
            info = feature_info_dicts(model)
            indices = resolve_taps(info, taps, self.name)
        self.tap_indices = indices
        self.tap_modules = tuple(str(info[i]["module"]) for i in indices)
        self.tap_channels = tuple(int(info[i]["num_chs"]) for i in indices)
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0) or 0)
        self._features: dict[int, Tensor] = {}
        self._capturing = False
        self._handles: list[RemovableHandle] = []
        for pos, module_name in enumerate(self.tap_modules):
            try:
                module = model.get_submodule(module_name)
            except AttributeError as e:
                self.remove_hooks()
                raise BackboneError(f"{self.name}: feature_info module '{module_name}' not found in the model") from e
            self._handles.append(module.register_forward_hook(partial(self._hook, pos)))

    def _hook(self, pos: int, module: nn.Module, args: Any, output: Tensor) -> None:
        # Only capture inside our own forward (not e.g. during activation-checkpoint recomputation in backward).
        if self._capturing:
            self._features[pos] = pool_features(output, self.tap_channels[pos], self.num_prefix_tokens)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``x: [B, C_in, H, W]`` -> ``(logits [B, num_classes], pooled taps [[B, C_l] per tap])``."""
        self._features.clear()
        self._capturing = True
        try:
            logits = self.model(x)
        finally:
            self._capturing = False
        try:
            missing = [self.tap_modules[p] for p in range(len(self.tap_modules)) if p not in self._features]
            if missing:
                hint = ""
                if any(getattr(m, "grad_checkpointing", False) for m in self.model.modules()):
                    hint = " (timm gradient checkpointing calls the blocks inside tapped stages directly; disable it)"
                raise BackboneError(f"{self.name}: tapped module(s) {', '.join(missing)} did not run in forward{hint}")
            feats = [self._features[p] for p in range(len(self.tap_modules))]
        finally:
            self._features.clear()  # keep no graph references between calls
        return logits, feats

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x: [B, C_in, H, W]`` -> ``(logits [B, num_classes], pre-logits features [B, D])`` without taps.

        The features are what the classifier sees: timm's ``forward_head(..., pre_logits=True)`` (for CNNs the
        globally pooled last stage, e.g. resnet18's ``layer4`` = its last default tap). Used for evaluation, where
        every method, including those that tap nothing, needs comparable features.
        """
        trunk = self.model.forward_features(x)
        features = self.model.forward_head(trunk, pre_logits=True)
        return self.model.forward_head(trunk), features.flatten(1)

    def remove_hooks(self) -> None:
        """Detach all hooks; afterwards the backbone has no taps and ``forward`` returns an empty feature list."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._features.clear()
        self.tap_indices, self.tap_modules, self.tap_channels = (), (), ()

    def extra_repr(self) -> str:
        rows = zip(self.tap_indices, self.tap_modules, self.tap_channels, strict=True)
        taps = ", ".join(f"{i}:{m}[{c}]" for i, m, c in rows)
        return f"name={self.name}, taps=({taps})"
