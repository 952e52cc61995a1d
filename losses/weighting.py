"""Per-class weights for imbalanced classification, computed from class counts."""

from collections.abc import Sequence

import torch


def check_counts(class_counts: Sequence[int]) -> list[int]:
    """Class counts as ints, each >= 1 (index = label); ValueError otherwise."""
    counts = [int(n) for n in class_counts]
    if not counts:
        raise ValueError("class_counts must not be empty")
    for c, n in enumerate(counts):
        if n < 1:
            raise ValueError(f"class count must be >= 1, got {n} for class {c}")
    return counts


def _normalise(weights: torch.Tensor) -> torch.Tensor:
    """Scale weights [C] so they sum to C, returned as float32."""
    return (weights * weights.numel() / weights.sum()).float()


def effective_number_weights(class_counts: Sequence[int], beta: float = 0.9999) -> torch.Tensor:
    """Class-balanced weights [C] of Cui et al. (CVPR 2019), summing to C.

    Effective number E_c = (1 - beta**n_c) / (1 - beta) and w_c = 1 / E_c. beta = 0 gives all ones;
    beta -> 1 approaches inverse frequency.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    counts = torch.tensor(check_counts(class_counts), dtype=torch.float64)
    effective = (1.0 - beta**counts) / (1.0 - beta)
    return _normalise(1.0 / effective)


def inverse_frequency_weights(class_counts: Sequence[int]) -> torch.Tensor:
    """Weights [C] proportional to 1 / n_c, summing to C."""
    counts = torch.tensor(check_counts(class_counts), dtype=torch.float64)
    return _normalise(1.0 / counts)
