"""Calibration of a classifier's softmax scores on a split as it is (no re-weighting): reliability bins, expected
calibration error, negative log-likelihood and the Brier score. numpy only; softmax in float64.

Binning (Guo et al. 2017): ``bins`` equal-width bins of the top-class probability over [0, 1], each closed on the
right, ``(lo, hi]``: a confidence exactly on an inner edge goes to the bin below it, a confidence of 1.0 to the last
bin (and a confidence of 0, which a softmax never gives, to the first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Equal-width bins of the expected calibration error (Guo et al. 2017).
ECE_BINS = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float [N, C] logits, computed stably in float64."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of float [N, C] logits in float64 (no log(0) for a very confident row)."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class ReliabilityBins:
    """A reliability diagram's data: ``edges`` [bins + 1] from 0 to 1; per bin the mean top-class ``confidence``
    [bins] and the ``accuracy`` [bins] of the top class (both nan where the bin is empty) and the ``counts`` [bins]."""

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray


def check_outputs(targets: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """targets as int64 [N] and logits as float64 [N, C]; ValueError on mismatched shapes or labels out of range."""
    targets = np.asarray(targets, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"expected targets [N] and logits [N, C], got {targets.shape} and {logits.shape}")
    if targets.size and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        raise ValueError(f"labels must lie in 0..{logits.shape[1] - 1}, got {targets.min()}..{targets.max()}")
    return targets, logits


def reliability_bins(targets: np.ndarray, logits: np.ndarray, bins: int = ECE_BINS) -> ReliabilityBins:
    """Equal-width bins of the top-class softmax probability: targets int [N], logits float [N, C].

    The top class is ``argmax`` (ties: the lowest label, as the accuracy metrics); bins are ``(lo, hi]`` (module doc).
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    targets, logits = check_outputs(targets, logits)
    edges = np.linspace(0.0, 1.0, bins + 1)
    probabilities = softmax(logits)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    # searchsorted(side="left") puts c == edges[i] at index i, so bin i - 1 = (edges[i - 1], edges[i]]
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    correct = (predicted == targets).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=bins) / counts
    return ReliabilityBins(edges=edges, confidence=mean_confidence, accuracy=accuracy, counts=counts.astype(np.int64))


def expected_calibration_error(reliability: ReliabilityBins) -> float:
    """Sum over the non-empty bins of |bin| / N * |accuracy - mean confidence|."""
    filled = reliability.counts > 0
    gaps = np.abs(reliability.accuracy[filled] - reliability.confidence[filled])
    return float((reliability.counts[filled] * gaps).sum() / reliability.counts.sum())


def calibration_metrics(
    targets: np.ndarray, logits: np.ndarray, prefix: str = "test_", bins: int = ECE_BINS
) -> dict[str, float | None]:
    """``{prefix}ece`` (``bins`` equal-width bins), ``{prefix}nll`` (mean natural-log negative log-likelihood of the
    true class) and ``{prefix}brier`` (mean over images of sum over classes of (p - onehot)^2) of targets int [N]
    against logits float [N, C]; all None when N = 0."""
    targets, logits = check_outputs(targets, logits)
    if not len(targets):
        return {f"{prefix}ece": None, f"{prefix}nll": None, f"{prefix}brier": None}
    rows = np.arange(len(targets))
    probabilities = softmax(logits)
    onehot = np.zeros_like(probabilities)
    onehot[rows, targets] = 1.0
    return {
        f"{prefix}ece": expected_calibration_error(reliability_bins(targets, logits, bins)),
        f"{prefix}nll": float(-log_softmax(logits)[rows, targets].mean()),
        f"{prefix}brier": float(((probabilities - onehot) ** 2).sum(axis=1).mean()),
    }
