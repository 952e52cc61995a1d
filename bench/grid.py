"""Run a grid: check every cell can be built, skip finished runs, decode each task's images once, run the rest."""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backbones import check_backbone
from bench.checkpoint import checkpoint_file
from bench.config import GridSpec, RunConfig
from bench.data import DatasetSource
from bench.device import DeviceSetup
from bench.method_names import parse_methods
from bench.results import RunFolder
from bench.runner import execute_run
from bench.task import TaskData, check_classes, check_val_classes, prepare_task


class GridObserver(Protocol):
    """What a progress display hears from :func:`run_grid`; every method is optional to act on."""

    def grid_started(self, total: int, done: int) -> None: ...
    def preparing(self, what: str, done: int, total: int) -> None: ...
    def run_started(self, config: RunConfig) -> None: ...
    def run_resumed(self, config: RunConfig, epoch: int) -> None: ...
    def epoch_done(self, epoch: int, epochs: int, row: dict[str, float]) -> None: ...
    def batch_done(self, done: int, total: int) -> None: ...
    def run_done(self, config: RunConfig, result: dict[str, Any]) -> None: ...
    def run_elsewhere(self, config: RunConfig, finished: bool) -> None: ...
    def run_lost(self, config: RunConfig, reason: str) -> None: ...


@dataclass
class GridSummary:
    """What happened: runs in the grid, skipped as already done, finished now, failed now, left to another
    process that was training them (``busy``), and lost (a remote worker died on every attempt; nothing written)."""

    total: int
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    busy: int = 0
    lost: int = 0
    skipped_files: list[str] = field(default_factory=list)

    def record(self, config: RunConfig, result: dict[str, Any], observer: GridObserver) -> None:
        """Count a run that ended here (finished or failed) and tell the observer."""
        if result["status"] == "finished":
            self.finished += 1
        else:
            self.failed += 1
        observer.run_done(config, result)


def pending_cells(spec: GridSpec, out_dir: Path) -> list[RunConfig]:
    """The grid's cells without a finished (or failed) result in ``out_dir``, in grid order."""
    return [cell for cell in spec.cells() if not RunFolder(out_dir / cell.run_id).is_done(cell)]


def claim(
    cell: RunConfig, out_dir: Path, stack: contextlib.ExitStack, summary: GridSummary, observer: GridObserver
) -> RunFolder | None:
    """Hold ``cell``'s run lock until ``stack`` closes and return its folder; None (counted, reported) when another
    process holds the lock or finished the run since the scan for pending cells."""
    folder = RunFolder(out_dir / cell.run_id)
    if not stack.enter_context(folder.claimed()):  # another bench run process on this --out is training it
        summary.busy += 1
        observer.run_elsewhere(cell, finished=False)
        return None
    if folder.is_done(cell):  # finished by another process since the scan
        summary.skipped += 1
        observer.run_elsewhere(cell, finished=True)
        return None
    return folder


def check_grid(spec: GridSpec, source: DatasetSource) -> None:
    """Fail before any training on a bad method, class, backbone or stage index (each raises a one-line error).

    ``--stages`` is checked against every backbone even when no method taps a stage: a bad index is a mistake in
    the command whichever methods it names (and would block the first tapping method added to the grid).
    """
    specs = parse_methods(spec.methods)
    for _, classes in spec.tasks:
        check_classes(source.train, classes, "train")
        check_classes(source.test, classes, source.test_split)
        check_val_classes(source, classes, spec.settings.val_count)
    stages = spec.settings.stages
    taps = stages if stages is not None or any(s.needs_taps for s in specs) else ()
    cosine = any(s.cosine_classifier for s in specs)  # ldam's: a backbone must have a linear head to replace
    for backbone in spec.backbones:
        check_backbone(backbone, num_classes=2, taps=taps, img_size=spec.settings.img_size, cosine_classifier=cosine)


def run_grid(
    spec: GridSpec,
    source: DatasetSource,
    out_dir: Path,
    setup: DeviceSetup,
    *,
    workers: int,
    observer: GridObserver,
    cache_dir: Path | None = None,
    checkpoint_minutes: float = math.inf,
    checkpoint_dir: Path | None = None,
) -> GridSummary:
    """Run every unfinished cell of ``spec`` in order, writing one folder per run under ``out_dir``.

    ``cache_dir``: where the decode cache of ImageFolder images lives (None: decode in memory, no cache).
    ``checkpoint_minutes``: the least time between two checkpoints of a run (see :func:`execute_run`), kept in
    each run folder or under ``checkpoint_dir``.
    Call :func:`check_grid` first to turn a bad backbone or class into an error before anything is written.
    """
    cells = spec.cells()
    pending = pending_cells(spec, out_dir)
    summary = GridSummary(total=len(cells), skipped=len(cells) - len(pending))
    observer.grid_started(len(cells), summary.skipped)
    tasks: dict[tuple[str, str], TaskData] = {}
    for cell in pending:
        if cell.classes not in tasks:
            tasks[cell.classes] = prepare_task(
                source,
                cell.classes,
                spec.settings.img_size,
                resize=spec.settings.resize,
                cache_dir=cache_dir,
                progress=observer.preparing,
                validation=spec.settings.val_count > 0,
            )
            summary.skipped_files.extend(tasks[cell.classes].skipped)
        with contextlib.ExitStack() as stack:
            folder = claim(cell, out_dir, stack, summary, observer)
            if folder is None:
                continue
            observer.run_started(cell)
            result = execute_run(
                cell,
                tasks[cell.classes],
                folder,
                setup,
                workers=workers,
                checkpoint_minutes=checkpoint_minutes,
                checkpoint_path=checkpoint_file(out_dir, cell.run_id, checkpoint_dir),
                on_resume=functools.partial(observer.run_resumed, cell),
                on_epoch=observer.epoch_done,
                on_batch=observer.batch_done,
            )
        summary.record(cell, result, observer)
    return summary
