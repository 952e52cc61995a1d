"""The training and evaluation loops: plain functions with explicit arguments that return plain values.

No host-device synchronisation inside the step: losses and counts accumulate on the device and are read
once per epoch. The loops print nothing; an optional callback reports batch progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from bench.device import DeviceSetup, autocast, evaluation_mode, to_device
from bench.methods import MethodLoss

BatchCallback = Callable[[int, int], None]  # (batches done, batches total)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    loss_fn: MethodLoss,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    setup: DeviceSetup,
    *,
    on_batch: BatchCallback | None = None,
) -> dict[str, float]:
    """One pass over ``loader``. ``model(x)`` returns ``(logits [B, C], tapped features [B, D_l])``.

    Returns ``train_loss`` (the total), ``train_loss_<term>`` for each loss term (unweighted) and ``train_acc``,
    all averaged per image, ``train_images`` (images seen) and ``steps`` (optimizer steps, one per batch). Raises
    :class:`NonFiniteLossError` if the loss was not finite.
    """
    model.train()
    total_batches = len(loader) if hasattr(loader, "__len__") else 0
    loss_sum = torch.zeros((), device=setup.device)
    term_sums: dict[str, Tensor] = {}
    correct = torch.zeros((), device=setup.device, dtype=torch.long)
    seen = steps = 0
    for batch_index, (images, labels) in enumerate(loader, start=1):
        images, labels = to_device(images, labels, setup)
        with autocast(setup):
            logits, features = model(images)
            loss, terms = loss_fn(logits, features, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        batch = labels.shape[0]
        seen += batch
        steps += 1
        loss_sum += loss.detach().float() * batch
        for name, value in terms.items():
            term_sums[name] = term_sums.get(name, 0) + value.float() * batch
        correct += (logits.detach().argmax(dim=1) == labels).sum()
        if on_batch is not None:
            on_batch(batch_index, total_batches)
    if seen == 0:
        raise ValueError("the training loader yielded no batches")
    summary = {"train_loss": loss_sum.item() / seen}
    summary.update({f"train_loss_{name}": value.item() / seen for name, value in term_sums.items()})
    if not all(math.isfinite(value) for value in summary.values()):
        raise NonFiniteLossError(f"training loss is not finite: {summary}")
    summary["train_acc"] = correct.item() / seen
    summary["train_images"] = seen
    summary["steps"] = steps
    return summary


@dataclass(frozen=True)
class TestOutputs:
    """What evaluation keeps per test image, in loader order."""

    logits: np.ndarray  # float32 [N, C]
    features: np.ndarray  # float32 [N, D], pre-logits features (TappedBackbone.embed)
    targets: np.ndarray  # int64 [N]

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1).astype(np.int64)


def evaluate(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], setup: DeviceSetup) -> TestOutputs:
    """Logits, pre-logits features and true labels over ``loader`` (model in eval mode, no gradients).

    Always in float32, without the autocast of training: bf16 logits round two near-equal classes to a tie, which
    argmax breaks towards class 0 (the majority), biasing the very metric the benchmark is about.
    """
    logits, features, targets = [], [], []
    with evaluation_mode(model):
        for images, labels in loader:
            images, _ = to_device(images, labels, setup)
            batch_logits, batch_features = model.embed(images.float())
            logits.append(batch_logits.float().cpu())
            features.append(batch_features.float().cpu())
            targets.append(labels)
    return TestOutputs(
        logits=torch.cat(logits).numpy(),
        features=torch.cat(features).numpy(),
        targets=torch.cat(targets).numpy().astype(np.int64),
    )
