"""One grid cell trained away from the driver (the body of a Ray task): prepare the task once per worker process,
train into a temporary run folder, send the folder's files back. Imports no Ray, so it runs and tests without it."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.checkpoint import checkpoint_file
from bench.config import RunConfig
from bench.data import DatasetSource
from bench.device import resolve_device
from bench.results import RunFiles, RunFolder
from bench.runner import execute_run
from bench.task import TaskData, prepare_task

# Test hook: "<run_id>=<marker file>" makes the first attempt at that run kill its worker process (os._exit) after
# creating the marker; later attempts find the marker and train. The driver forwards it from its environment.
CRASH_ONCE_ENV = "BENCH_TEST_CRASH_ONCE"

_TASKS: dict[tuple[str, str, tuple[str, ...], int, str | None], TaskData] = {}
_MAX_TASKS = 2  # decoded tasks kept per worker process (memory-mapped from the decode cache when there is one)


@dataclass(frozen=True)
class WorkerOptions:
    """Run-time options of a remote run; none of them changes its numbers."""

    device: str
    compile: bool
    workers: int | None  # loader workers; None: cpus_per_run - 1
    cpus_per_run: float
    cache_dir: Path | None  # the decode cache; the driver has filled it when it is on the driver's machine
    crash_once: str | None = None  # see CRASH_ONCE_ENV
    checkpoint_minutes: float = math.inf
    checkpoint_dir: Path | None = None  # storage every node can write; without it a retried run starts over


def cached_task(
    source: DatasetSource,
    classes: tuple[str, ...],
    img_size: int,
    cache_dir: Path | None,
    resize: str = "stretch",
    validation: bool = True,
) -> TaskData:
    """The task's decoded images, prepared once per worker process and kept for the next runs of the same task;
    the data set's own validation split is decoded only with ``validation`` (a grid at --val-count 0 has none),
    as the local executor does."""
    cache = None if cache_dir is None else str(cache_dir)
    key = (source.name, source.fingerprint, classes, img_size, resize, cache, validation)
    if key not in _TASKS:
        if len(_TASKS) >= _MAX_TASKS:
            _TASKS.clear()
        with _node_lock(cache_dir):
            _TASKS[key] = prepare_task(
                source, classes, img_size, resize=resize, cache_dir=cache_dir, validation=validation
            )
    return _TASKS[key]


def _open_lock(cache_dir: Path | None) -> int | None:
    """A descriptor of the decode cache's preparation lock file; None without a (writable) cache."""
    if cache_dir is None:
        return None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        return os.open(cache_dir / ".prepare.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # prepare_task then says what is wrong with the cache
        return None


@contextlib.contextmanager
def _node_lock(cache_dir: Path | None) -> Iterator[None]:
    """With a decode cache, one process of a node prepares at a time: the first decodes into the cache, the others
    then find it filled and only map its files (decoding is once per node, not once per worker process)."""
    descriptor = _open_lock(cache_dir)
    if descriptor is None:
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def threads_for(cpus_per_run: float) -> int:
    """torch CPU threads of a run given ``cpus_per_run`` CPUs: the whole CPUs, at least one."""
    return max(1, math.floor(cpus_per_run))


def _crash_if_asked(hook: str | None, run_id: str) -> None:
    if not hook:
        return
    target, _, marker = hook.partition("=")
    if target == run_id and marker and not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)  # a worker process that dies without a word, as after kill -9 or the OOM killer


def train_remote(config: RunConfig, source: DatasetSource, options: WorkerOptions) -> RunFiles:
    """Train ``config`` in this process into a temporary run folder and return that folder's files.

    The device is resolved here, on the worker's node (a CPU-only driver can send runs to GPU nodes), and recorded
    as it resolved (``hardware`` in result.json). A run that fails for its own reasons comes back as a failed run
    folder, as in the local executor (:func:`bench.runner.execute_run`); a bad setting is raised. torch gets
    as many threads as the run has whole CPUs, so runs sharing a node do not oversubscribe it and the numbers
    match a local run with the same thread count.
    """
    _crash_if_asked(options.crash_once, config.run_id)
    torch.set_num_threads(threads_for(options.cpus_per_run))
    setup = resolve_device(options.device, config.settings.amp, compile=options.compile)
    workers = options.workers if options.workers is not None else threads_for(options.cpus_per_run) - 1
    settings = config.settings
    task = cached_task(
        source, config.classes, settings.img_size, options.cache_dir, settings.resize, settings.val_count > 0
    )
    with tempfile.TemporaryDirectory(prefix="bench-run-") as scratch:
        folder = RunFolder(Path(scratch) / config.run_id)
        checkpoints = {}
        if options.checkpoint_dir is not None:
            checkpoints = {
                "checkpoint_minutes": options.checkpoint_minutes,
                "checkpoint_path": checkpoint_file(Path(scratch), config.run_id, options.checkpoint_dir),
            }
        execute_run(config, task, folder, setup, workers=workers, **checkpoints)
        return folder.read_files()
