"""The whole ``bench speed`` run: every measurement at every image size, collected in one report and rendered."""

from __future__ import annotations

import math
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
    epochs: list[EpochFigures] = field(default_factory=list)
    memory: MemoryFigures | None = None
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for row, figures in zip(data["epochs"], self.epochs, strict=True):
            row["torchvision_over_harness"] = figures.torchvision_over_harness
        return data


def render(report: SpeedReport) -> list[str]:
    """The figures as Markdown lines: one table for the step, one for the pipeline, one for epochs."""
    lines = [f"bench speed: {report.backbone}, {report.device}", ""]
    lines += [
        "| img px | batch | timed steps | (a) minimal step | (b) harness CE | (b) harness CE + fscl "
        "| harness / minimal speed [95% interval] | fscl / CE time [95% interval] |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report.steps:
        lines.append(
            f"| {s.img_size} | {s.batch_size} | {s.steps} "
            f"| {s.minimal * 1e3:.1f} ms ({s.images_per_second(s.minimal):.0f} img/s) "
            f"| {s.harness_ce * 1e3:.1f} ms ({s.images_per_second(s.harness_ce):.0f} img/s) "
            f"| {s.harness_fscl * 1e3:.1f} ms "
            f"| {s.harness_over_minimal:.3f} {_interval(s.harness_over_minimal_interval)} "
            f"| {s.fscl_over_ce:.3f} {_interval(s.fscl_over_ce_interval)} |"
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
        lines += ["", "| img px | loader workers | train images | (d) prepare: cold cache | warm cache (files decoded) "
                  "| no cache | harness epoch | torchvision ImageFolder + PIL epoch "
                  "| torchvision / harness (rounds' range) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for e in report.epochs:
            lines.append(
                f"| {e.img_size} | {e.workers} | {e.images} | {e.cold_cache_prepare:.1f} s "
                f"| {e.warm_cache_prepare:.2f} s ({e.warm_cache_decodes}) | {e.no_cache_prepare:.1f} s "
                f"| {e.harness_epoch:.1f} s "
                f"| {e.torchvision_epoch:.1f} s | {e.torchvision_over_harness:.2f}{_spread(e.round_ratios)} |"
            )
    if report.memory is not None:
        m = report.memory
        gib = 1024**3
        lines += ["", "| (e) cached images | img px | cache on disk | loader workers | peak RSS, training process "
                  "| peak anonymous (private) | peak file-backed (mapped cache) | peak RSS, largest worker "
                  "| its peak anonymous |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {m.images} | {m.img_size} | {m.cache_bytes / gib:.2f} GiB | {m.workers} "
                  f"| {m.peak_rss_bytes / gib:.2f} GiB | {m.peak_anon_bytes / gib:.2f} GiB "
                  f"| {m.peak_file_bytes / gib:.2f} GiB | {m.peak_worker_rss_bytes / gib:.2f} GiB "
                  f"| {m.peak_worker_anon_bytes / gib:.2f} GiB |"]  # fmt: skip
    return lines


def _interval(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return "[-]" if math.isnan(low) else f"[{low:.3f}, {high:.3f}]"


def _spread(values: Sequence[float]) -> str:
    return f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""


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
    source: DatasetSource | None = None,
    classes: tuple[str, str] | None = None,
    per_class: int = 1000,
    epoch_workers: Sequence[int] = (0,),
    epoch_rounds: int = 1,
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
        report.steps.append(measure_steps(backbone, size, batch_size, setup, steps=steps))
        say(f"(c) input pipeline at {size} px")
        images = rng.integers(0, 256, (max(batch_size * 32, 1024), size, size, 3), dtype=np.uint8)
        labels = np.arange(len(images)) % 2
        rates = measure_pipeline(images, labels, batch_size, workers)
        report.pipelines.append(PipelineFigures(size, rates))
        if source is not None and classes is not None and source.train.paths is not None:
            for count in epoch_workers:
                say(f"(d) epochs on {source.name} at {size} px, {count} loader workers")
                report.epochs.append(
                    measure_epochs(
                        source, classes, size, batch_size, per_class, setup, backbone=backbone, workers=count,
                        rounds=epoch_rounds,
                    )
                )  # fmt: skip
    if memory_images > 0 and source is not None and source.train.paths is not None:
        say(f"(e) peak memory with {memory_images} cached images at {memory_size} px")
        report.memory = measure_memory(
            source, images=memory_images, img_size=memory_size, batch_size=batch_size, workers=epoch_workers[0],
            steps=2, backbone=backbone,
        )  # fmt: skip
    return report
