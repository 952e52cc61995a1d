"""Seconds per training step: a minimal hand-written step against the harness's CE and CE + fscl steps."""

from __future__ import annotations

import math
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
from bench.runner import create_optimizer


@dataclass(frozen=True)
class StepFigures:
    """Seconds per training step (medians over the timed steps) of one backbone, batch and image size, and the two
    ratios as medians of the per-step paired ratios, each with a distribution-free 95% interval."""

    img_size: int
    batch_size: int
    minimal: float
    harness_ce: float
    harness_fscl: float
    harness_over_minimal: float  # speed of the harness step relative to the minimal one (target >= 0.95)
    fscl_over_ce: float  # time of a CE + similarity step over a CE step (target <= 1.10 at 32 px, <= 1.05 at 64 px)
    harness_over_minimal_interval: tuple[float, float] = (math.nan, math.nan)
    fscl_over_ce_interval: tuple[float, float] = (math.nan, math.nan)
    steps: int = 0  # timed steps of each kind

    def images_per_second(self, seconds: float) -> float:
        return self.batch_size / seconds


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median: order statistics x_(j) and x_(n+1-j) of the sorted values, with
    j - 1 the largest count c such that P(Binomial(n, 1/2) <= c) <= (1 - confidence) / 2 (nan, nan when n is too
    small for any such c)."""
    from scipy.stats import binom

    ordered = sorted(values)
    n = len(ordered)
    tail = (1 - confidence) / 2
    below = [c for c in range(n) if binom.cdf(c, n, 0.5) <= tail]
    if not below:
        return (math.nan, math.nan)
    j = below[-1] + 1  # 1-based
    return (ordered[j - 1], ordered[n - j])


def summarize_steps(img_size: int, batch_size: int, times: dict[str, list[float]]) -> StepFigures:
    """StepFigures from per-step seconds of "minimal", "ce" and "fscl", the i-th entries timed side by side."""
    speed = [m / c for m, c in zip(times["minimal"], times["ce"], strict=True)]
    cost = [f / c for f, c in zip(times["fscl"], times["ce"], strict=True)]
    return StepFigures(
        img_size, batch_size, statistics.median(times["minimal"]), statistics.median(times["ce"]),
        statistics.median(times["fscl"]), statistics.median(speed), statistics.median(cost),
        median_interval(speed), median_interval(cost), len(speed),
    )  # fmt: skip


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
    steps: int = 40,
    warmup: int = 3,
    stages: Sequence[int] | None = None,
) -> StepFigures:
    """Seconds per step of (a) a minimal step and (b) the harness's CE and CE + fscl steps, on one fixed batch.

    After ``warmup`` untimed steps of each, ``steps`` times one step of each kind in turn, the order rotating, each
    timed on its own: neighbouring steps share the machine's state of the moment (this CPU's speed drifts by 20%
    within seconds), so the per-step ratios are paired and their median is robust.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, img_size, img_size, generator=generator)
    labels = torch.arange(batch_size) % 2
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "img_size": img_size, "batch_size": batch_size})
    counts = [batch_size // 2, batch_size - batch_size // 2]

    torch.manual_seed(0)
    plain = prepare_model(create_backbone(backbone, num_classes=2, taps=(), img_size=img_size).model, setup)
    plain_optimizer = create_optimizer(list(plain.parameters()), settings, setup.device)  # the runs' Adam: same update
    x, y = to_device(images, labels, setup)

    def minimal() -> None:
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
        optimizer = create_optimizer([*model.parameters(), *loss_fn.parameters()], settings, setup.device)
        scaler = create_grad_scaler(setup)

        def step() -> None:
            train_one_epoch(model, [(images, labels)], loss_fn, optimizer, scaler, setup)

        return step

    work = {"minimal": minimal, "ce": harness("ce"), "fscl": harness("fscl")}
    names = list(work)
    times: dict[str, list[float]] = {name: [] for name in work}
    for index in range(warmup + steps):
        for name in names[index % 3 :] + names[: index % 3]:
            seconds = _timed(work[name], setup)
            if index >= warmup:  # the first steps warm up allocators and kernels
                times[name].append(seconds)
    return summarize_steps(img_size, batch_size, times)
