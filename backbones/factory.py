"""Build timm classifiers wrapped as :class:`TappedBackbone`, with friendly errors for names, taps and checkpoints."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import get_pretrained_cfg, load_state_dict, parse_model_name
from torch import nn

from .cosine import use_cosine_classifier
from .errors import BackboneError
from .taps import TappedBackbone, feature_info_dicts

__all__ = ["check_backbone", "create_backbone", "describe_stages", "list_backbones", "suggest_backbones"]

_MAX_SUGGESTIONS = 5


def list_backbones(pattern: str = "*") -> list[str]:
    """Architecture names known to timm matching a glob ``pattern`` (``timm.list_models(pattern)``)."""
    return list(timm.list_models(pattern))


def suggest_backbones(pattern: str) -> str:
    """A hint for a glob ``pattern`` that matches no timm model: a wider pattern that does match, else the closest
    names (difflib), else that nothing is close. 'patch16_224*' -> "try '*patch16_224*' (...)"; 'resnt*' ->
    "close names: resnet18, ..."."""
    core = "".join(c for c in pattern if c not in "*?[]!").lower()
    names = list_backbones()
    if core:
        wider = f"*{core}*"
        found = list_backbones(wider)
        if found:
            return f"try '{wider}' ({len(found)} names, e.g. {', '.join(found[:3])})"
        close = difflib.get_close_matches(core, names, n=_MAX_SUGGESTIONS, cutoff=0.6)
        if close:
            return f"close names: {', '.join(close)}"
    return f"no name is close; 'bench backbones' lists all {len(names)}"


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = f"{type(err).__name__}: {' '.join(str(err).split())}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_name(name: str) -> bool:
    """Raise :class:`BackboneError` for unknown names; return True if ``name`` is a plain timm registry name.

    Source-prefixed names (``hf-hub:...``, ``local-dir:...``) are passed to timm unchecked and return False.
    """
    if not isinstance(name, str) or not name:
        raise BackboneError(f"backbone name must be a non-empty string, got {name!r}")
    try:
        source, _ = parse_model_name(name)
    except ValueError as e:
        raise BackboneError(f"invalid backbone name '{name}': {_one_line(e)}") from e
    if source is not None:
        return False
    if not timm.is_model(name):
        arch = name.split(".", 1)[0]
        close = difflib.get_close_matches(arch, timm.list_models(), n=_MAX_SUGGESTIONS, cutoff=0.6)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise BackboneError(f"unknown backbone '{name}'{hint} (bench backbones lists them)")
    try:
        get_pretrained_cfg(name)  # validates a '.tag' suffix, e.g. 'resnet18.a1_in1k'
    except RuntimeError as e:
        raise BackboneError(f"unknown backbone '{name}': {_one_line(e)}") from e
    return True


def _takes_img_size(name: str, registry_name: bool) -> bool:
    """Whether timm passes ``img_size`` to this model's constructor (timm's own rule: ``fixed_input_size``)."""
    if not registry_name:
        return True  # hub / local-dir models: the user asked for it explicitly, let timm decide
    cfg = get_pretrained_cfg(name)
    return bool(cfg is not None and cfg.fixed_input_size)


def _classifier_names(name: str) -> tuple[str, ...]:
    """Classifier module names from the pretrained cfg, e.g. ``('fc',)``, ``('head', 'head_dist')``."""
    cfg = get_pretrained_cfg(name)
    classifier = cfg.classifier if cfg is not None else None
    if not classifier:
        return ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def _file_overlay(name: str, path: Path) -> tuple[dict[str, Any], set[str]]:
    """``pretrained_cfg_overlay`` that makes timm load ``path`` (and its filters, e.g. ViT pos-embed resizing).

    timm drops the classifier iff the model's ``num_classes`` differs from the cfg's ``num_classes``, so the cfg is
    told the checkpoint's real head size (``0`` if the file has no head); ``label_offset`` is reset because a
    local fine-tuned file has no background class. Also returns the file's keys for the completeness check.
    """
    try:
        state_dict = load_state_dict(str(path))
    except Exception as e:  # torch.load / safetensors raise many types
        raise BackboneError(f"cannot read checkpoint {path}: {_one_line(e)}") from e
    classifiers = _classifier_names(name)
    weight = state_dict.get(f"{classifiers[0]}.weight") if classifiers else None
    file_classes = int(weight.shape[0]) if weight is not None else 0
    return {"file": str(path), "num_classes": file_classes, "label_offset": 0}, set(state_dict)


def _check_loaded_keys(model: nn.Module, name: str, path: Path, file_keys: set[str]) -> None:
    """timm loads non-strictly once it drops a classifier; refuse files that do not cover the whole backbone."""
    head = {f"{c}.{p}" for c in _classifier_names(name) for p in ("weight", "bias")}
    model_keys = set(model.state_dict())
    missing = sorted(model_keys - file_keys - head)
    unexpected = sorted(file_keys - model_keys - head)
    if missing or unexpected:
        parts = [
            f"{len(keys)} {kind} key(s) e.g. {', '.join(keys[:3])}"
            for kind, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        raise BackboneError(f"{path} does not match {name}: {'; '.join(parts)}")


def _build_model(
    name: str,
    *,
    num_classes: int | None = None,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    img_size: int | None = None,
) -> nn.Module:
    registry_name = _check_name(name)
    kwargs: dict[str, Any] = {}
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise BackboneError(f"num_classes must be a non-negative integer, got {num_classes!r}")
        kwargs["num_classes"] = num_classes
    if img_size is not None and _takes_img_size(name, registry_name):
        kwargs["img_size"] = img_size
    if pretrained_file is None:
        return timm.create_model(name, pretrained=pretrained, **kwargs)

    path = Path(pretrained_file).expanduser()
    if not path.is_file():
        raise BackboneError(f"pretrained file not found: {path}")
    if not registry_name:
        raise BackboneError(f"pretrained_file needs a timm registry name, got '{name}'")
    overlay, file_keys = _file_overlay(name, path)
    try:
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except (RuntimeError, KeyError, ValueError) as e:
        raise BackboneError(f"cannot load {path} into {name}: {_one_line(e)}") from e
    _check_loaded_keys(model, name, path, file_keys)
    return model


def create_backbone(
    name: str,
    num_classes: int,
    *,
    taps: Sequence[int] | None = None,
    pretrained: bool = False,
    pretrained_file: str | Path | None = None,
    img_size: int | None = None,
    cosine_classifier: bool = False,
) -> TappedBackbone:
    """Create timm model ``name`` with a ``num_classes`` head, wrapped to also return pooled stage features.

    Args:
        name: timm model name (``bench backbones`` / :func:`list_backbones` lists them), optionally ``name.tag``.
        num_classes: classifier outputs; ``forward`` returns logits ``[B, num_classes]``.
        taps: indices into ``model.feature_info`` to pool (``[B, num_chs]`` each); ``None`` -> last two stages,
            ``()`` -> no taps and no hooks.
        pretrained: load timm's published weights (needs network access).
        pretrained_file: local timm-compatible state-dict / checkpoint file; loaded through timm's pretrained path
            (so model-specific filters such as ViT position-embedding resizing apply). The classifier is dropped and
            freshly initialised when its size differs from ``num_classes``. Takes precedence over ``pretrained``.
        img_size: input size for fixed-size models (ViT-style, timm ``fixed_input_size``); ignored for CNNs.
        cosine_classifier: replace the linear classifier by a :class:`~backbones.cosine.CosineClassifier` (logits in
            [-1, 1], as LDAM expects); the head's pretrained weights, if any, are dropped.

    Raises:
        BackboneError: unknown name, bad tap index, missing / incompatible checkpoint.
    """
    model = _build_model(
        name, num_classes=num_classes, pretrained=pretrained, pretrained_file=pretrained_file, img_size=img_size
    )
    if cosine_classifier:
        use_cosine_classifier(model, name)
    return TappedBackbone(model, taps, name=name)


def _build_shapes_only(name: str, *, num_classes: int | None = None, img_size: int | None = None) -> nn.Module:
    """Model ``name`` built on torch's meta device: its modules and ``feature_info`` without allocating or
    initialising a weight (a ViT-B/16 in a tenth of a second instead of seconds). A constructor that cannot run
    there (one that reads a tensor's values) is built on the CPU instead, so its errors are those of a real build."""
    try:
        with torch.device("meta"):
            return _build_model(name, num_classes=num_classes, img_size=img_size)
    except BackboneError:
        raise
    except Exception:
        return _build_model(name, num_classes=num_classes, img_size=img_size)


def check_backbone(
    name: str,
    num_classes: int,
    *,
    taps: Sequence[int] | None = None,
    img_size: int | None = None,
    cosine_classifier: bool = False,
) -> None:
    """Raise the :class:`BackboneError` :func:`create_backbone` would raise for a bad name, tap index or (with
    ``cosine_classifier``) a model whose classifier cannot be replaced, without building the weights (the model is
    built on the meta device)."""
    model = _build_shapes_only(name, num_classes=num_classes, img_size=img_size)
    if cosine_classifier:
        use_cosine_classifier(model, name)
    TappedBackbone(model, taps, name=name).remove_hooks()


def describe_stages(name: str) -> list[tuple[int, str, int, int]]:
    """``(index, module, channels, reduction)`` for every tappable stage of ``name`` (built without weights)."""
    model = _build_shapes_only(name)
    return [
        (i, str(d["module"]), int(d["num_chs"]), int(d["reduction"])) for i, d in enumerate(feature_info_dicts(model))
    ]
