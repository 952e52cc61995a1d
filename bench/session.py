"""What ``bench run`` does, as one plain function: plan, check the output folder, run the grid, report."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from bench.config import ConfigError
from bench.data import default_cache_dir, resolve_workers
from bench.data.feasibility import task_notes
from bench.device import DeviceSetup, resolve_device
from bench.grid import check_grid, run_grid
from bench.plan import Plan, plan_run
from bench.progress import RichGridObserver
from bench.wording import plural


def _check_writable(folder: Path, what: str = "output folder", option: str = "--out") -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create {what} {folder}: {error.strerror}; choose another {option}") from None
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{what} {folder} is not writable; choose another {option}")


def _checkpoint_dir(plan: Plan) -> Path | None:
    """Where checkpoints go instead of the run folders (--checkpoint-dir), or None."""
    return Path(plan.checkpoint_dir).expanduser() if plan.checkpoint_dir else None


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
    dry_run: bool = False,
    parallel: int | None = None,
) -> int:
    """Run the grid the options describe into ``out`` and print its leaderboard; return the exit code.

    ``cache_dir`` holds downloads and, with ``decode_cache``, the decoded images of ImageFolder data.
    A run whose loss diverged is a result (recorded as failed), not an error: the exit code stays 0; a run lost
    to a Ray worker that died on every attempt is not written and makes it 1. ``dry_run``: print the grid and its
    estimated cost for ``parallel`` workers instead (see :mod:`bench.dry_run`).
    """
    from reports import write_leaderboard

    console = console or Console(stderr=True)
    plan = plan_run(
        data=data, config_path=config_path, task_names=task_names, classes=classes, options=options, cache_dir=cache_dir
    )
    on_ray = plan.executor == "ray" and not dry_run
    if on_ray:
        from bench.ray_executor import require_ray

        require_ray()
    # On Ray the device is resolved on each worker's node: the driver may have no GPU.
    setup = None if on_ray else resolve_device(plan.device, plan.spec.settings.amp, compile=plan.compile)
    workers = resolve_workers(plan.workers)
    check_grid(plan.spec, plan.source)
    settings = render_settings(plan.settings_rows())
    unchosen = sweep_warning(plan)  # a sweep without a validation split to choose on
    if setup is not None and dry_run:
        print("\n".join(settings))
        if unchosen:
            console.print(f"[yellow]warning[/]: {escape(unchosen)}", soft_wrap=True)
        return _dry_run(plan, out, setup, parallel)
    _check_writable(out)
    checkpoint_dir = _checkpoint_dir(plan)
    if checkpoint_dir is not None:
        _check_writable(checkpoint_dir, "checkpoint folder", "--checkpoint-dir")
    spec = plan.spec
    where = (
        f"on Ray ({plan.ray_address or 'local instance'}), {plan.cpus_per_run:g} CPUs and "
        f"{'auto' if plan.gpus_per_run is None else f'{plan.gpus_per_run:g}'} GPUs per run"
        if setup is None
        else f"{setup.description}, {workers} loader workers"
    )
    console.print("\n".join(settings), soft_wrap=True, markup=False, highlight=False)
    console.print(
        f"bench: {plural(len(spec.cells()), 'run')} ({plural(len(spec.tasks), 'task')} x "
        f"{plural(len(spec.backbones), 'backbone')} x {plural(len(spec.ratios), 'ratio')} x "
        f"{_methods_text(plan)} x {plural(spec.seeds, 'seed')}) on {plan.source.name}, "
        f"{plural(spec.settings.epochs, 'epoch')} at {spec.settings.img_size} px, {where} -> {out}",
        soft_wrap=True,
    )
    if setup is not None:
        console.print(_estimate_line(plan, out, setup), soft_wrap=True)
    for note in task_notes(
        plan.source,
        spec.tasks,
        spec.ratios,
        majority_count=spec.settings.majority_count,
        val_count=spec.settings.val_count,
    ):
        console.print(f"[yellow]note[/]: {escape(note)}", soft_wrap=True)
    if unchosen:
        console.print(f"[yellow]warning[/]: {escape(unchosen)}", soft_wrap=True)
    decode_dir = _decode_cache_dir(cache_dir, decode_cache)
    with warnings.catch_warnings(), RichGridObserver(console) as observer:
        warnings.showwarning = lambda message, *_, **__: console.print(f"[yellow]warning[/]: {message}", soft_wrap=True)
        if setup is None:
            from bench.ray_executor import RayOptions, run_grid_on_ray

            ray_options = RayOptions(plan.ray_address, plan.cpus_per_run, plan.gpus_per_run)
            summary = run_grid_on_ray(
                spec, plan.source, out, ray_options, device=plan.device, compile=plan.compile, workers=plan.workers,
                observer=observer, cache_dir=decode_dir, checkpoint_minutes=plan.checkpoint_minutes,
                checkpoint_dir=checkpoint_dir,
            )  # fmt: skip
        else:
            summary = run_grid(
                spec, plan.source, out, setup, workers=workers, observer=observer, cache_dir=decode_dir,
                checkpoint_minutes=plan.checkpoint_minutes, checkpoint_dir=checkpoint_dir,
            )  # fmt: skip
    if summary.skipped_files:
        console.print(f"[yellow]warning[/]: {len(summary.skipped_files)} unreadable image files were skipped, e.g. "
                      f"{summary.skipped_files[0]}", soft_wrap=True)  # fmt: skip
    files = write_leaderboard(out)
    print(files.markdown)
    console.print(
        f"{plural(summary.finished, 'run')} finished, {summary.failed} failed, {summary.skipped} already done"
        f"{f', {summary.busy} left to another process' if summary.busy else ''}"
        f"{f', {summary.lost} lost (worker died; run the same command to retry them)' if summary.lost else ''}; "
        f"wrote {files.markdown_path}, {files.csv_path} and {files.comparisons_path}; "
        f"bench report {out} adds report.md with figures",
        soft_wrap=True,
    )
    return 1 if summary.lost else 0


def _methods_text(plan: Plan) -> str:
    """``2 methods``, or with sweeps ``2 methods in 3 variants`` (each method x the values of its swept settings)."""
    methods = plan.spec.methods
    variants = sum(len(plan.spec.variants(method)) for method in methods)
    text = plural(len(methods), "method")
    return text if variants == len(methods) else f"{text} in {variants} variants"


def sweep_warning(plan: Plan) -> str | None:
    """A warning when the grid sweeps settings without a validation split to choose their values on, else None."""
    swept = [key for key, _ in plan.spec.sweeps]
    if not swept or plan.spec.settings.val_count > 0:
        return None
    names = ", ".join(swept)
    return (
        f"{names} {'is' if len(swept) == 1 else 'are'} swept, but sweeps are chosen on the validation split and "
        "--val-count 0 leaves none: the report cannot choose a value; give --val-count N (e.g. 100)"
    )


def render_settings(rows: list[tuple[str, str, str]]) -> list[str]:
    """The settings table that starts every ``bench run``: one line per setting, value and where it came from."""
    name_width = max((len(name) for name, _, _ in rows), default=0)
    value_width = min(40, max((len(value) for _, value, _ in rows), default=0))
    lines = ["settings (value, and where it came from: flag, a config file, ROOT/bench.toml, data set default, paper):"]
    lines += [f"  {name:<{name_width}}  {value:<{value_width}}  {source}" for name, value, source in rows]
    return lines


#: Below this many training images (scaled to 32 px), a grid is not timed before it starts: timing costs seconds.
TIMED_ESTIMATE_FROM = 200_000


def _estimate_line(plan: Plan, out: Path, setup: DeviceSetup) -> str:
    """One line before training: what the grid will train and, for a grid large enough to matter, how long its
    training steps take at this machine's speed (``bench run --dry-run`` gives the breakdown)."""
    import torch

    from bench.dry_run import estimate_grid, format_duration, images_per_epoch
    from bench.grid import pending_cells

    pending = pending_cells(plan.spec, out)
    if not pending:
        return "estimate: nothing left to train"
    settings = plan.spec.settings
    images = sum(images_per_epoch(plan.source, pending)) * settings.epochs
    what = (
        f"estimate: {plural(len(pending), 'run')} to train, {images:,} training images in all at {settings.img_size} px"
    )
    if images * (settings.img_size / 32) ** 2 < TIMED_ESTIMATE_FROM:
        return f"{what} (a small grid: not timed)"
    estimate = estimate_grid(
        plan.spec, plan.source, out, setup, parallel=1, threads=torch.get_num_threads(),
        checkpoint_dir=_checkpoint_dir(plan),
    )  # fmt: skip
    return (
        f"{what}, about {format_duration(estimate.total_seconds)} of training steps at this machine's speed "
        "(loading and evaluation add to it; --dry-run shows the breakdown)"
    )


def _dry_run(plan: Plan, out: Path, setup: DeviceSetup, parallel: int | None) -> int:
    """Print the grid, the runs ``out`` already holds and the estimated cost of the rest; write nothing."""
    import torch

    from bench.dry_run import default_parallel, estimate_grid, render
    from bench.remote_run import threads_for

    if parallel is None:
        parallel = default_parallel(plan.executor, plan.cpus_per_run, plan.gpus_per_run)
    threads = threads_for(plan.cpus_per_run) if plan.executor == "ray" else torch.get_num_threads()
    estimate = estimate_grid(
        plan.spec, plan.source, out, setup, parallel=parallel, threads=threads, checkpoint_dir=_checkpoint_dir(plan)
    )
    print("\n".join(render(estimate, out)))
    return 0
