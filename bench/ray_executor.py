"""``bench run --executor ray``: every grid cell is one Ray task; the driver alone writes ``--out``.

Workers train into a temporary folder and send the run's files back (:func:`bench.remote_run.train_remote`), so no
shared file system is needed for results. The driver claims each run's lock while its task is in flight and stores
what comes back with the same atomic writes and resume rules as the local executor. A worker process that dies is
retried (:data:`MAX_RETRIES`); a run that fails for its own reasons (a NaN loss, any exception while it trains or
evaluates) comes back as a normal, failed result, as in the local executor, and a bad setting found before training
is raised on the driver as there (not retried). Ray is imported only here and only when asked for, so the base
install does not need it.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.config import ConfigError, GridSpec, RunConfig
from bench.data import DatasetSource
from bench.grid import GridObserver, GridSummary, claim, pending_cells
from bench.remote_run import CRASH_ONCE_ENV, WorkerOptions, train_remote
from bench.results import RunFolder
from bench.task import prepare_task

MAX_RETRIES = 2  # attempts after the first when a worker process dies (killed, out of memory, node lost)
RAY_MISSING = (
    '--executor ray needs Ray, which is not installed; install it with pip install ".[ray]" in the bench '
    "folder (or pip install ray), or use --executor local"
)


@dataclass(frozen=True)
class RayOptions:
    """Where and how big: the cluster to join (None: start or join a local instance) and each run's resources."""

    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float | None = None  # None: 1 when the cluster has GPUs, else 0


def require_ray() -> ModuleType:
    """The ray module, or a one-line ConfigError that says how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ConfigError(RAY_MISSING) from None


def connect(ray: ModuleType, address: str | None) -> bool:
    """Join the Ray instance at ``address`` (``auto``: the one ``ray start`` began on this machine's cluster) or,
    with None, start a local one; True when this call connected (so the caller disconnects), False when this
    process was connected already."""
    if ray.is_initialized():
        return False
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as error:
        where = address or "this machine"
        raise ConfigError(f"cannot connect to Ray at {where}: {' '.join(str(error).split())}") from None
    finally:  # ray.init installs its own SIGTERM handler (sys.exit); keep bench's "interrupted; resume" stop
        if on_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)
    return True


def resolve_gpus(ray: ModuleType, requested: float | None) -> float:
    """``requested``, or by default one GPU per run when the cluster has GPUs and none when it has not."""
    if requested is not None:
        return requested
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def parallel_slots(ray: ModuleType, cpus: float, gpus: float) -> int:
    """How many runs the cluster can hold at once, node by node; ConfigError when no node can hold even one."""
    slots = 0
    for node in ray.nodes():
        if not node.get("Alive", False):
            continue
        resources = node.get("Resources", {})
        fit = int(resources.get("CPU", 0) // cpus) if cpus > 0 else 10**6
        if gpus > 0:
            fit = min(fit, int(resources.get("GPU", 0) // gpus))
        slots += fit
    if slots == 0:
        total = ray.cluster_resources()
        raise ConfigError(
            f"no Ray node has {cpus:g} CPUs and {gpus:g} GPUs free for one run (the cluster has {total.get('CPU', 0):g}"
            f" CPUs, {total.get('GPU', 0):g} GPUs); lower --cpus-per-run or --gpus-per-run"
        )
    return slots


def _prepare_on_driver(
    spec: GridSpec, source: DatasetSource, pending: list[RunConfig], cache_dir: Path | None, observer: GridObserver
) -> list[str]:
    """Fill the decode cache on the driver's node before any task starts (workers there only map its files);
    return the unreadable files found. Built-in data sets in memory have nothing to cache."""
    if cache_dir is None or source.train.paths is None:
        return []
    skipped: list[str] = []
    for classes in dict.fromkeys(cell.classes for cell in pending):
        settings = spec.settings
        task = prepare_task(
            source, classes, settings.img_size, resize=settings.resize, cache_dir=cache_dir, progress=observer.preparing
        )
        skipped.extend(task.skipped)
    return skipped


def _store(ray: ModuleType, reference: Any, folder: RunFolder) -> dict[str, Any] | str:
    """Store the finished task's run folder; return its result, or why it was lost (a worker died every time)."""
    try:
        files = ray.get(reference)
    except ray.exceptions.RayTaskError as error:  # the run raised: the same error as in the local executor
        cause = getattr(error, "cause", None)
        if isinstance(cause, Exception):
            raise cause from error
        raise
    except ray.exceptions.RayError as error:
        reason = " ".join(str(error).split()[:24])
        return f"its worker died on all {MAX_RETRIES + 1} attempts ({type(error).__name__}: {reason})"
    return folder.store(files)


def run_grid_on_ray(
    spec: GridSpec,
    source: DatasetSource,
    out_dir: Path,
    options: RayOptions,
    *,
    device: str,
    compile: bool,
    workers: int | None,
    observer: GridObserver,
    cache_dir: Path | None = None,
    checkpoint_minutes: float = math.inf,
    checkpoint_dir: Path | None = None,
) -> GridSummary:
    """Run every unfinished cell of ``spec`` as a Ray task and write each run folder under ``out_dir`` as its
    result arrives. Keeps more tasks in flight than the cluster has room for, so a worker never waits for the
    driver; each in-flight run's lock is held by the driver until its files are stored."""
    ray = require_ray()
    connected_here = connect(ray, options.address)
    try:
        gpus = resolve_gpus(ray, options.gpus_per_run)
        slots = parallel_slots(ray, options.cpus_per_run, gpus)
        window = slots + min(slots, 64)  # a few queued beyond what runs, without holding hundreds of run locks
        cells = spec.cells()
        pending = pending_cells(spec, out_dir)
        summary = GridSummary(total=len(cells), skipped=len(cells) - len(pending))
        observer.grid_started(len(cells), summary.skipped)
        summary.skipped_files.extend(_prepare_on_driver(spec, source, pending, cache_dir, observer))
        task = ray.remote(train_remote).options(
            num_cpus=options.cpus_per_run, num_gpus=gpus, max_retries=MAX_RETRIES, retry_exceptions=False
        )
        worker_options = WorkerOptions(
            device=device, compile=compile, workers=workers, cpus_per_run=options.cpus_per_run, cache_dir=cache_dir,
            crash_once=os.environ.get(CRASH_ONCE_ENV), checkpoint_minutes=checkpoint_minutes,
            checkpoint_dir=checkpoint_dir,
        )  # fmt: skip
        source_reference = ray.put(source)  # sent to each node once, not with every task
        queue = deque(pending)
        in_flight: dict[Any, tuple[RunConfig, RunFolder, contextlib.ExitStack]] = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < window:
                    cell = queue.popleft()
                    stack = contextlib.ExitStack()
                    try:
                        folder = claim(cell, out_dir, stack, summary, observer)
                    except BaseException:
                        stack.close()
                        raise
                    if folder is None:
                        stack.close()
                        continue
                    in_flight[task.remote(cell, source_reference, worker_options)] = (cell, folder, stack)
                if not in_flight:
                    break
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                cell, folder, stack = in_flight.pop(ready[0])
                with stack:  # the run's lock is held until its files are stored
                    outcome = _store(ray, ready[0], folder)
                if isinstance(outcome, str):
                    summary.lost += 1
                    observer.run_lost(cell, outcome)
                else:
                    summary.record(cell, outcome, observer)
        finally:
            for reference, (_, _, stack) in in_flight.items():
                with contextlib.suppress(Exception):
                    ray.cancel(reference, force=True)
                stack.close()
        return summary
    finally:
        if connected_here:
            ray.shutdown()
