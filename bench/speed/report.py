"""The whole ``bench speed`` run: every measurement at every image size, collected in one report and rendered."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from bench.data import DatasetSource
from bench.device import DeviceSetup
from bench.speed.epochs import EpochFigures, measure_epochs
from bench.speed.memory import MemoryFigures, measure_memory
from bench.speed.pipeline import PipelineFigures, measure_pipeline
from bench.speed.steps import StepFigures, measure_steps

Progress = Callable[[str], None]


@dataclass
class SpeedReport:
    backbone: str
    device: str
    workers: tuple[int, ...]
    steps: list[StepFigures] = field(default_factory=list)
    pipelines: list[PipelineFigures] = field(default_factory=list)
    epochs: dict[int, EpochFigures] = field(default_factory=dict)
    memory: MemoryFigures | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [
            {**asdict(s), "harness_over_minimal": s.harness_over_minimal, "fscl_over_ce": s.fscl_over_ce}
            for s in self.steps
        ]
        for size, figures in self.epochs.items():
            data["epochs"][size]["torchvision_over_harness"] = figures.torchvision_over_harness
        return data


def render(report: SpeedReport) -> list[str]:
    """The figures as Markdown lines: one table for the step, one for the pipeline, one for epochs."""
    lines = [f"bench speed: {report.backbone}, {report.device}", ""]
    lines += [
        "| img px | batch | (a) minimal step | (b) harness CE | (b) harness CE + fscl | harness / minimal speed "
        "| fscl / CE time |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report.steps:
        lines.append(
            f"| {s.img_size} | {s.batch_size} | {s.minimal * 1e3:.1f} ms ({s.images_per_second(s.minimal):.0f} img/s) "
            f"| {s.harness_ce * 1e3:.1f} ms ({s.images_per_second(s.harness_ce):.0f} img/s) "
            f"| {s.harness_fscl * 1e3:.1f} ms | {s.harness_over_minimal:.3f} | {s.fscl_over_ce:.3f} |"
        )
    if report.pipelines:
        steps = {s.img_size: s for s in report.steps}
        lines += ["", "| img px | loader workers | (c) pipeline img/s | pipeline / harness CE step img/s |",
                  "|---:|---:|---:|---:|"]  # fmt: skip
        for p in report.pipelines:
            step = steps.get(p.img_size)
            for count, rate in p.images_per_second.items():
                ratio = f"{rate / step.images_per_second(step.harness_ce):.2f}" if step else "-"
                lines.append(f"| {p.img_size} | {count} | {rate:.0f} | {ratio} |")
    if report.epochs:
        lines += ["", "| img px | train images | (d) prepare: cold cache | warm cache (files decoded) | no cache "
                  "| harness epoch | torchvision ImageFolder + PIL epoch | torchvision / harness |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for size, e in report.epochs.items():
            lines.append(
                f"| {size} | {e.images} | {e.cold_cache_prepare:.1f} s | {e.warm_cache_prepare:.2f} s "
                f"({e.warm_cache_decodes}) | {e.no_cache_prepare:.1f} s | {e.harness_epoch:.1f} s "
                f"| {e.torchvision_epoch:.1f} s | {e.torchvision_over_harness:.2f} |"
            )
    if report.memory is not None:
        m = report.memory
        gib = 1024**3
        lines += ["", "| (e) cached images | img px | cache on disk | loader workers | peak RSS, training process "
                  "| peak RSS, largest worker |", "|---:|---:|---:|---:|---:|---:|",
                  f"| {m.images} | {m.img_size} | {m.cache_bytes / gib:.2f} GiB | {m.workers} "
                  f"| {m.peak_rss_bytes / gib:.2f} GiB | {m.peak_worker_rss_bytes / gib:.2f} GiB |"]  # fmt: skip
    return lines


def versions() -> dict[str, str]:
    import platform

    import timm

    return {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "cpu_threads": str(torch.get_num_threads()), "machine": platform.machine()}  # fmt: skip


def run_speed(
    *,
    backbone: str,
    img_sizes: Sequence[int],
    batch_size: int,
    setup: DeviceSetup,
    workers: Sequence[int],
    steps: int,
    rounds: int,
    source: DatasetSource | None = None,
    classes: tuple[str, str] | None = None,
    per_class: int = 1000,
    epoch_workers: int = 0,
    memory_images: int = 0,
    memory_size: int = 224,
    progress: Progress | None = None,
) -> SpeedReport:
    """Measure (a)-(c) at every image size, (d) when an ImageFolder ``source`` and its ``classes`` are given, and
    (e) with ``memory_images`` > 0 and an ImageFolder ``source``."""
    say = progress or (lambda _: None)
    report = SpeedReport(backbone=backbone, device=setup.description, workers=tuple(workers), versions=versions())
    rng = np.random.default_rng(0)
    for size in img_sizes:
        say(f"(a)+(b) training steps at {size} px")
        report.steps.append(measure_steps(backbone, size, batch_size, setup, steps=steps, rounds=rounds))
        say(f"(c) input pipeline at {size} px")
        images = rng.integers(0, 256, (max(batch_size * 32, 1024), size, size, 3), dtype=np.uint8)
        labels = np.arange(len(images)) % 2
        rates = measure_pipeline(images, labels, batch_size, workers)
        report.pipelines.append(PipelineFigures(size, rates))
        if source is not None and classes is not None and source.train.paths is not None:
            say(f"(d) epochs on {source.name} at {size} px")
            report.epochs[size] = measure_epochs(
                source, classes, size, batch_size, per_class, setup, backbone=backbone, workers=epoch_workers
            )
    if memory_images > 0 and source is not None and source.train.paths is not None:
        say(f"(e) peak memory with {memory_images} cached images at {memory_size} px")
        report.memory = measure_memory(
            source, images=memory_images, img_size=memory_size, batch_size=batch_size, workers=epoch_workers,
            steps=2, backbone=backbone,
        )  # fmt: skip
    return report
