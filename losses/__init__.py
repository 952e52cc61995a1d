"""Losses for imbalanced fine-grained classification.

- ClassBalancedLoss: class-balanced softmax / sigmoid / focal loss with effective-number weights
  (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019).
- FeatureSimilarityLoss: auxiliary loss pulling pairwise cosine similarities of features towards
  same-class indicators (KCC 2025 feature-similarity paper).
- BASE_LOSSES / AUX_LOSSES and create_base_loss / create_aux_loss: name -> module factories.
"""

from losses.class_balanced import ClassBalancedLoss
from losses.feature_similarity import FeatureSimilarityLoss
from losses.registry import AUX_LOSSES, BASE_LOSSES, create_aux_loss, create_base_loss
from losses.weighting import effective_number_weights, inverse_frequency_weights

__all__ = [
    "AUX_LOSSES",
    "BASE_LOSSES",
    "ClassBalancedLoss",
    "FeatureSimilarityLoss",
    "create_aux_loss",
    "create_base_loss",
    "effective_number_weights",
    "inverse_frequency_weights",
]
