"""A cosine classifier head: the logits are cosines between the features and per-class weight vectors.

LDAM (Cao et al., NeurIPS 2019) subtracts margins of at most ~0.5 from the true class's logit and scales by s = 30;
that only makes sense when the logits are bounded, which is why the authors' code trains LDAM with this head
(``NormedLinear``) instead of a plain linear one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import BackboneError


class CosineClassifier(nn.Module):
    """``x [B, D] -> cos(x, w_c) [B, C]`` in [-1, 1]; a drop-in for a bias-free ``nn.Linear(D, C)``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's initialisation; only the directions matter

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def use_cosine_classifier(model: nn.Module, name: str) -> None:
    """Replace the linear classifier of timm model ``model`` (named ``name`` in messages) by a CosineClassifier.

    The classifier is found through timm's ``pretrained_cfg["classifier"]`` (e.g. ``fc``, ``head.fc``).
    """
    path = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if not isinstance(path, str) or not path:
        raise BackboneError(f"{name}: timm names no single classifier module, so it cannot take a cosine classifier")
    try:
        head = model.get_submodule(path)
    except AttributeError:
        raise BackboneError(f"{name}: classifier module '{path}' not found in the model") from None
    if not isinstance(head, nn.Linear):
        raise BackboneError(f"{name}: the classifier '{path}' is a {type(head).__name__}, not a linear layer")
    parent_path, _, attribute = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    cosine = CosineClassifier(head.in_features, head.out_features).to(head.weight.device, head.weight.dtype)
    setattr(parent, attribute, cosine)
