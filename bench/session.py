"""What ``bench run`` does, as one plain function: plan, check the output folder, run the grid, report."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console

from bench.config import ConfigError
from bench.data import default_cache_dir, resolve_workers
from bench.device import resolve_device
from bench.grid import check_grid, run_grid
from bench.plan import plan_run
from bench.progress import RichGridObserver


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create output folder {out}: {error.strerror}; choose another --out") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"output folder {out} is not writable; choose another --out")


def _decode_cache_dir(cache_dir: Path | None, decode_cache: bool) -> Path | None:
    """Where decoded images are cached: ``cache_dir`` (default $BENCH_CACHE or ~/.cache/bench), None when off."""
    if not decode_cache:
        return None
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def run_session(
    *,
    data: str | None,
    config_path: Path | None,
    task_names: tuple[str, ...],
    classes: tuple[str, str] | None,
    options: dict[str, Any],
    out: Path,
    cache_dir: Path | None = None,
    decode_cache: bool = True,
    console: Console | None = None,
) -> int:
    """Run the grid the options describe into ``out`` and print its leaderboard; return the exit code.

    ``cache_dir`` holds downloads and, with ``decode_cache``, the decoded images of ImageFolder data.
    A run whose loss diverged is a result (recorded as failed), not an error: the exit code stays 0.
    """
    from reports import write_leaderboard

    console = console or Console(stderr=True)
    plan = plan_run(
        data=data, config_path=config_path, task_names=task_names, classes=classes, options=options, cache_dir=cache_dir
    )
    setup = resolve_device(plan.device, plan.spec.settings.amp, compile=plan.compile)
    workers = resolve_workers(plan.workers)
    check_grid(plan.spec, plan.source)
    _check_writable(out)
    spec = plan.spec
    console.print(
        f"bench: {len(spec.cells())} runs ({len(spec.tasks)} task x {len(spec.backbones)} backbone x "
        f"{len(spec.ratios)} ratio x {len(spec.methods)} method x {spec.seeds} seed) on {plan.source.name}, "
        f"{spec.settings.epochs} epochs at {spec.settings.img_size} px, {setup.description}, {workers} loader workers "
        f"-> {out}",
        soft_wrap=True,
    )
    with warnings.catch_warnings(), RichGridObserver(console) as observer:
        warnings.showwarning = lambda message, *_, **__: console.print(f"[yellow]warning[/]: {message}", soft_wrap=True)
        summary = run_grid(
            spec,
            plan.source,
            out,
            setup,
            workers=workers,
            observer=observer,
            cache_dir=_decode_cache_dir(cache_dir, decode_cache),
        )
    if summary.skipped_files:
        console.print(f"[yellow]warning[/]: {len(summary.skipped_files)} unreadable image files were skipped, e.g. "
                      f"{summary.skipped_files[0]}", soft_wrap=True)  # fmt: skip
    files = write_leaderboard(out)
    print(files.markdown)
    console.print(
        f"{summary.finished} runs finished, {summary.failed} failed, {summary.skipped} already done"
        f"{f', {summary.busy} left to another process' if summary.busy else ''}; "
        f"wrote {files.markdown_path}, {files.csv_path} and {files.comparisons_path}; "
        f"bench report {out} adds report.md with figures",
        soft_wrap=True,
    )
    return 0
