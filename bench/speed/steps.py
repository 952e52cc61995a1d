"""Seconds per training step: a minimal hand-written step against the harness's CE and CE + fscl steps."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backbones import create_backbone
from bench.config import PAPER_DEFAULTS, TrainSettings
from bench.device import DeviceSetup, autocast, create_grad_scaler, prepare_model, to_device
from bench.engine import train_one_epoch
from bench.methods import create_method_loss, parse_method


@dataclass(frozen=True)
class StepFigures:
    """Seconds per training step (median over rounds) of one backbone, batch and image size."""

    img_size: int
    batch_size: int
    minimal: float
    harness_ce: float
    harness_fscl: float

    @property
    def harness_over_minimal(self) -> float:
        """Speed of the harness step relative to the minimal one (1.0 = no overhead; target >= 0.95)."""
        return self.minimal / self.harness_ce

    @property
    def fscl_over_ce(self) -> float:
        """Time of a CE + similarity step over a CE step (target <= 1.10 at 32 px, <= 1.05 at 64 px)."""
        return self.harness_fscl / self.harness_ce

    def images_per_second(self, seconds: float) -> float:
        return self.batch_size / seconds


def _synchronize(setup: DeviceSetup) -> None:
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)


def _timed(work: Callable[[], None], setup: DeviceSetup) -> float:
    _synchronize(setup)
    started = time.perf_counter()
    work()
    _synchronize(setup)
    return time.perf_counter() - started


def measure_steps(
    backbone: str,
    img_size: int,
    batch_size: int,
    setup: DeviceSetup,
    *,
    steps: int = 10,
    rounds: int = 5,
    stages: Sequence[int] | None = None,
) -> StepFigures:
    """Seconds per step of (a) a minimal step and (b) the harness's CE and CE + fscl steps, on one fixed batch.

    Each round times ``steps`` steps of each in turn (after one untimed round of warm-up); the median round wins.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=generator)
    labels = torch.arange(batch_size) % 2
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "img_size": img_size, "batch_size": batch_size})
    counts = [batch_size // 2, batch_size - batch_size // 2]

    torch.manual_seed(0)
    plain = prepare_model(create_backbone(backbone, num_classes=2, taps=(), img_size=img_size).model, setup)
    plain_optimizer = torch.optim.Adam(plain.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    x, y = to_device(images, labels, setup)

    def minimal() -> None:
        for _ in range(steps):
            with autocast(setup):
                loss = F.cross_entropy(plain(x), y)
            plain_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            plain_optimizer.step()

    def harness(method: str) -> Callable[[], None]:
        spec = parse_method(method)
        torch.manual_seed(0)
        model = create_backbone(
            backbone, num_classes=2, taps=stages if spec.needs_taps else (), img_size=img_size
        )  # fmt: skip
        model = prepare_model(model, setup)
        loss_fn = create_method_loss(spec, counts, settings).to(setup.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        scaler = create_grad_scaler(setup)
        batches = [(images, labels)] * steps

        def step() -> None:
            train_one_epoch(model, batches, loss_fn, optimizer, scaler, setup)

        return step

    work = {"minimal": minimal, "ce": harness("ce"), "fscl": harness("fscl")}
    times: dict[str, list[float]] = {name: [] for name in work}
    for round_index in range(rounds + 1):
        for name, run in work.items():
            seconds = _timed(run, setup)
            if round_index > 0:  # the first round warms up allocators and kernels
                times[name].append(seconds / steps)
    median = {name: statistics.median(values) for name, values in times.items()}
    return StepFigures(img_size, batch_size, median["minimal"], median["ce"], median["fscl"])
