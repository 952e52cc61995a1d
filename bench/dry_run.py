"""``bench run --dry-run``: the grid, what ``--out`` already holds, and what the rest would cost, from a few
training steps timed on this machine. Trains nothing and writes nothing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.checkpoint import checkpoint_file, saved_epoch
from bench.config import GridSpec, RunConfig
from bench.data import DatasetSource
from bench.data.feasibility import carved_val_count, indexed_counts, task_notes, training_counts
from bench.data.loader import oversampled_size, steps_per_epoch
from bench.device import DeviceSetup
from bench.grid import pending_cells
from bench.methods import drw_epoch, parse_method
from bench.speed import measure_steps
from bench.wording import plural

TIMED_STEPS = 3  # timed training steps of each kind (after one untimed warm-up step of each); the median is used


@dataclass(frozen=True)
class CellCost:
    """One run still to train: its training images per epoch and the timed seconds of one step of its kind."""

    config: RunConfig
    train_images: int
    seconds_per_step: float
    done_epochs: int = 0  # epochs its checkpoint in --out comes after: the run resumes there

    @property
    def epochs(self) -> int:
        return self.config.settings.epochs - self.done_epochs

    @property
    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.train_images, self.config.settings.batch_size)

    @property
    def seconds_per_epoch(self) -> float:
        return self.steps_per_epoch * self.seconds_per_step

    @property
    def seconds(self) -> float:
        return self.epochs * self.seconds_per_epoch


@dataclass(frozen=True)
class GridEstimate:
    """The grid's cells, the finished ones, the cost of the rest and the step times it rests on."""

    cells: list[RunConfig]
    remaining: list[CellCost]
    parallel: int
    step_seconds: dict[tuple[str, bool], float]  # (backbone, with taps) -> seconds per training step
    device: str
    threads: int
    notes: list[str] = field(default_factory=list)  # "task fine: ratios 0.01 and 0.001 give the same subset ..."

    @property
    def finished(self) -> int:
        return len(self.cells) - len(self.remaining)

    @property
    def total_seconds(self) -> float:
        return sum(cost.seconds for cost in self.remaining)

    @property
    def wall_seconds(self) -> float:
        """Wall time with ``parallel`` workers: the total shared evenly, but never less than the longest run."""
        longest = max((cost.seconds for cost in self.remaining), default=0.0)
        return max(self.total_seconds / self.parallel, longest)


def train_images(source: DatasetSource, config: RunConfig) -> int:
    """Training images of one epoch of ``config``, from the indexed images (unreadable files counted) less the
    validation images held out of them: the subset's size, which oversampling draws as well, except with
    ``--oversample-epoch full`` (C x the largest class; for ``drs`` from its switch epoch on, so averaged over the
    run's epochs)."""
    available = list(indexed_counts(source.train, config.classes).values())
    settings = config.settings
    counts = training_counts(
        available,
        majority_count=settings.majority_count,
        ratio=config.ratio,
        val_count=carved_val_count(source, settings.val_count),
    )
    spec = parse_method(config.method)
    if not spec.oversample or settings.oversample_epoch != "full":
        return sum(counts)
    if not spec.deferred_sampling:
        return oversampled_size(counts)
    epochs = settings.epochs
    before = min(epochs, drw_epoch(settings) - 1)  # epochs of plain shuffling before drs switches
    return round((before * sum(counts) + (epochs - before) * oversampled_size(counts)) / epochs)


def images_per_epoch(source: DatasetSource, cells: list[RunConfig]) -> list[int]:
    """:func:`train_images` of each cell, computed once per (classes, ratio, method)."""
    sizes: dict[tuple[tuple[str, ...], float, str], int] = {}
    for cell in cells:
        if (cell.classes, cell.ratio, cell.method) not in sizes:
            sizes[(cell.classes, cell.ratio, cell.method)] = train_images(source, cell)
    return [sizes[(cell.classes, cell.ratio, cell.method)] for cell in cells]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch uses ``threads`` CPU threads inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def estimate_grid(
    spec: GridSpec,
    source: DatasetSource,
    out_dir: Path,
    setup: DeviceSetup,
    *,
    parallel: int,
    threads: int,
    checkpoint_dir: Path | None = None,
) -> GridEstimate:
    """Scan ``out_dir`` for finished runs and checkpoints of unfinished ones, and time ``TIMED_STEPS`` steps of
    each backbone the unfinished runs use (with and without taps, at the grid's image and batch size, on
    ``threads`` torch threads)."""
    cells = spec.cells()
    pending = pending_cells(spec, out_dir)
    settings = spec.settings
    step_seconds: dict[tuple[str, bool], float] = {}
    with torch_threads(threads):
        for backbone in dict.fromkeys(cell.backbone for cell in pending):
            figures = measure_steps(
                backbone, settings.img_size, settings.batch_size, setup, steps=TIMED_STEPS, warmup=1,
                stages=settings.stages,
            )  # fmt: skip
            step_seconds[(backbone, False)] = figures.harness_ce
            step_seconds[(backbone, True)] = figures.harness_fscl
    images = images_per_epoch(source, pending)
    remaining = []
    for cell, count in zip(pending, images, strict=True):
        seconds = step_seconds[(cell.backbone, parse_method(cell.method).needs_taps)]
        done = saved_epoch(checkpoint_file(out_dir, cell.run_id, checkpoint_dir), cell)
        remaining.append(CellCost(cell, count, seconds, done))
    notes = task_notes(
        source, spec.tasks, spec.ratios, majority_count=settings.majority_count, val_count=settings.val_count
    )
    return GridEstimate(cells, remaining, parallel, step_seconds, setup.description, threads, notes)


def _seed_ranges(seeds: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"; [] -> "-"."""
    if not seeds:
        return "-"
    parts, start = [], seeds[0]
    for previous, current in zip(seeds, [*seeds[1:], None], strict=True):
        if current != previous + 1:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ",".join(parts)


def format_duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def render(estimate: GridEstimate, out_dir: Path) -> list[str]:
    """The grid as a Markdown table (one row per task, backbone, method and ratio) and the cost of what remains."""
    lines = [
        f"dry run: {plural(len(estimate.cells), 'run')} in the grid, {estimate.finished} finished in {out_dir}, "
        f"{len(estimate.remaining)} to train; nothing was trained or written",
        "",
        "| task | backbone | method | ratio | runs | finished | seeds to train | train images | s / epoch |",
        "|:---|:---|:---|---:|---:|---:|:---|---:|---:|",
    ]
    costs = {cost.config.run_id: cost for cost in estimate.remaining}
    groups: dict[tuple[str, str, str, float], list[RunConfig]] = {}
    for cell in estimate.cells:
        groups.setdefault((cell.task, cell.backbone, cell.label, cell.ratio), []).append(cell)
    for (task, backbone, method, ratio), members in groups.items():
        todo = [costs[cell.run_id] for cell in members if cell.run_id in costs]
        images = f"{todo[0].train_images}" if todo else "-"
        per_epoch = f"{todo[0].seconds_per_epoch:.1f}" if todo else "-"
        seeds = _seed_ranges(sorted(cost.config.seed for cost in todo))
        lines.append(
            f"| {task} | {backbone} | {method} | {ratio:g} | {len(members)} | {len(members) - len(todo)} | {seeds} "
            f"| {images} | {per_epoch} |"
        )
    if estimate.notes:
        lines += ["", "what the data gives (from the indexed images; bench doctor counts the readable ones):"]
        lines += [f"  {note}" for note in estimate.notes]
    if not estimate.remaining:
        return [*lines, "", "every run is finished; nothing to estimate"]
    lines.append("")
    for (backbone, taps), seconds in estimate.step_seconds.items():
        kind = "with the similarity loss's taps" if taps else "without taps"
        lines.append(
            f"timed step, {backbone} {kind}: {seconds:.3f} s on {estimate.device}, {estimate.threads} torch threads"
        )
    epochs = sum(cost.epochs for cost in estimate.remaining)
    resumed = [cost for cost in estimate.remaining if cost.done_epochs]
    if resumed:
        lines.append(
            f"{len(resumed)} of them {'resumes' if len(resumed) == 1 else 'resume'} from a checkpoint: "
            + ", ".join(f"{cost.config.run_id} after epoch {cost.done_epochs}" for cost in resumed)
        )
    lines += [
        f"estimate: {plural(len(estimate.remaining), 'run')}, {plural(epochs, 'epoch')}, "
        f"{format_duration(estimate.total_seconds)} of training ({estimate.total_seconds / 3600:.2f} h); "
        f"wall time with {plural(estimate.parallel, 'parallel worker')}: "
        f"{format_duration(estimate.wall_seconds)}",
        "(training steps only, each worker as fast as this machine: loading, decoding and the final evaluation add "
        "to it; time on a machine like the cluster's nodes, and set --parallel to the cluster's size)",
    ]
    return lines


def default_parallel(executor: str, cpus_per_run: float, gpus_per_run: float | None) -> int:
    """Parallel runs on this machine: 1 for the local executor; for Ray, as many as its CPUs (and GPUs) hold."""
    if executor != "ray":
        return 1
    fit = int((os.cpu_count() or 1) // cpus_per_run)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus_per_run is None:
        gpus_per_run = 1.0 if gpus else 0.0
    if gpus_per_run > 0 and gpus:
        fit = min(fit, int(gpus // gpus_per_run))
    return max(1, fit)
