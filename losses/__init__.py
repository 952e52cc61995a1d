"""Losses for imbalanced and long-tailed classification.

Base losses (logits [B, C], labels [B] -> scalar):
- ClassBalancedLoss: class-balanced softmax / sigmoid / focal loss with effective-number weights
  (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019).
- FocalLoss: softmax focal loss (Lin et al., ICCV 2017).
- LDAMLoss: label-distribution-aware margins with deferred re-weighting (Cao et al., NeurIPS 2019).
- LogitAdjustedLoss: logit-adjusted cross-entropy (Menon et al., ICLR 2021).
- BalancedSoftmaxLoss: balanced softmax cross-entropy (Ren et al., NeurIPS 2020).

Auxiliary losses (tapped features, list of [B, D], labels [B] -> scalar):
- FeatureSimilarityLoss: pulls pairwise cosine similarities of features towards same-class indicators
  (KCC 2025 feature-similarity paper).
- SupConLoss: supervised contrastive loss on a projection of the last tapped stage (Khosla et al., NeurIPS 2020).
- BalancedContrastiveLoss: SupCon with class-averaging and class prototypes from the classifier (Zhu et al.,
  CVPR 2022).
- TripletLoss: batch-hard triplet margin loss on the last tapped stage (Hermans et al., 2017).

BASE_LOSSES / AUX_LOSSES and create_base_loss / create_aux_loss: name -> module factories.
"""

from losses.balanced_contrastive import BalancedContrastiveLoss, balanced_contrastive_loss
from losses.balanced_softmax import BalancedSoftmaxLoss
from losses.class_balanced import ClassBalancedLoss
from losses.feature_similarity import FeatureSimilarityLoss
from losses.focal import FocalLoss
from losses.ldam import LDAMLoss, default_drw_epoch, ldam_margins
from losses.logit_adjusted import LogitAdjustedLoss
from losses.registry import AUX_LOSSES, BASE_LOSSES, ClassifierRef, LossOptions, create_aux_loss, create_base_loss
from losses.supervised_contrastive import SupConLoss, supervised_contrastive_loss
from losses.triplet import TripletLoss, batch_hard_triplet_loss
from losses.weighting import effective_number_weights, inverse_frequency_weights

__all__ = [
    "AUX_LOSSES",
    "BASE_LOSSES",
    "BalancedContrastiveLoss",
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "ClassifierRef",
    "FeatureSimilarityLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "LossOptions",
    "SupConLoss",
    "TripletLoss",
    "balanced_contrastive_loss",
    "batch_hard_triplet_loss",
    "create_aux_loss",
    "create_base_loss",
    "default_drw_epoch",
    "effective_number_weights",
    "inverse_frequency_weights",
    "ldam_margins",
    "supervised_contrastive_loss",
]
