"""The task presets of the ``bench.toml`` at a data root, read by bench.config's one TOML reader."""

from __future__ import annotations

from pathlib import Path

from bench.config import load_config_file


def load_task_file(path: Path) -> dict[str, tuple[str, ...]]:
    """Task name -> class names (majority first; more than two: a long-tailed task, head first) from the
    ``[tasks.*]`` tables of the ``bench.toml`` at ``path`` (a data root's file; its other keys are checked by the
    same rules as a ``--config`` file's and are read as settings by :func:`bench.plan.plan_run`).
    Whether the classes exist is checked against the data set, not here.
    """
    path = Path(path)
    return load_config_file(path, data_root=path.parent).tasks
