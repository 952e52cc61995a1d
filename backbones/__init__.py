"""timm backbones that return logits plus globally pooled features of chosen stages from one forward pass.

>>> bb = create_backbone("resnet18", num_classes=5)            # taps default to the last two stages
>>> logits, feats = bb(torch.randn(2, 3, 64, 64))              # logits [2, 5]; feats [[2, 256], [2, 512]]
>>> describe_stages("resnet18")[0]                              # (index, module, channels, reduction)
(0, 'act1', 64, 2)
"""

from .cosine import CosineClassifier
from .errors import BackboneError
from .factory import check_backbone, create_backbone, describe_stages, list_backbones
from .taps import TappedBackbone, default_taps

__all__ = [
    "BackboneError",
    "CosineClassifier",
    "TappedBackbone",
    "check_backbone",
    "create_backbone",
    "default_taps",
    "describe_stages",
    "list_backbones",
]
