"""The rich progress display of ``bench run``: runs done / total, the current run's epoch and batches."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bench.config import RunConfig
from bench.wording import plural


class RichGridObserver:
    """Implements :class:`bench.grid.GridObserver` with rich progress bars on stderr; use as a context manager."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._runs: TaskID | None = None
        self._current: TaskID | None = None
        self._preparing: dict[str, TaskID] = {}
        self._run_label = ""
        self._epoch = 0
        self._epochs = 0

    def __enter__(self) -> RichGridObserver:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def grid_started(self, total: int, done: int) -> None:
        self._runs = self.progress.add_task("runs", total=total, completed=done)
        if done:
            self.console.print(f"{done} of {plural(total, 'run')} already finished in this folder: skipping them")

    def preparing(self, what: str, done: int, total: int) -> None:
        if what not in self._preparing:
            self._preparing[what] = self.progress.add_task(f"decoding {what} images", total=total)
        self.progress.update(self._preparing[what], completed=done, total=total)

    def run_started(self, config: RunConfig) -> None:
        self._run_label = escape(config.run_id)  # a swept run's [k=v] is text, not markup
        self._epoch, self._epochs = 1, config.settings.epochs
        description = self._describe()
        if self._current is None:
            self._current = self.progress.add_task(description, total=None)
        self.progress.reset(self._current, description=description, total=None)

    def _describe(self) -> str:
        return f"{self._run_label} epoch {self._epoch}/{self._epochs}"

    def batch_done(self, done: int, total: int) -> None:
        if self._current is not None:
            self.progress.update(self._current, completed=done, total=total or None, description=self._describe())

    def run_resumed(self, config: RunConfig, epoch: int) -> None:
        self._epoch = min(epoch + 1, self._epochs)
        self.console.print(
            f"[cyan]resuming[/] {escape(config.run_id)} after epoch {epoch} (its checkpoint)", soft_wrap=True
        )
        if self._current is not None:
            self.progress.update(self._current, description=self._describe())

    def epoch_done(self, epoch: int, epochs: int, row: dict[str, float]) -> None:
        self._epoch = min(epoch + 1, epochs)

    def run_done(self, config: RunConfig, result: dict[str, Any]) -> None:
        if self._runs is not None:
            self.progress.advance(self._runs)
        if result["status"] == "finished":
            metrics = result["metrics"]
            minority = metrics.get("test_minority_acc")  # binary tasks; a long-tailed task's headline is balanced
            self.console.print(
                f"[green]done[/] {escape(config.run_id)}: "
                f"{'' if minority is None else f'minority acc {minority:.3f}, '}"
                f"balanced acc {metrics['test_balanced_acc']:.3f} ({result['wall_seconds']:.0f} s)",
                soft_wrap=True,
            )
        else:
            failure = result["failure"]
            self.console.print(
                f"[red]failed[/] {escape(config.run_id)} at epoch {failure['epoch']}: {escape(failure['reason'])}",
                soft_wrap=True,
            )

    def run_elsewhere(self, config: RunConfig, finished: bool) -> None:
        if self._runs is not None:
            self.progress.advance(self._runs)
        what = "finished it meanwhile" if finished else "is training it; left to that process"
        self.console.print(
            f"[yellow]elsewhere[/] {escape(config.run_id)}: another bench run process {what}", soft_wrap=True
        )

    def run_lost(self, config: RunConfig, reason: str) -> None:
        if self._runs is not None:
            self.progress.advance(self._runs)
        self.console.print(
            f"[red]lost[/] {escape(config.run_id)}: {escape(reason)}; nothing written, the same command retries it",
            soft_wrap=True,
        )
