"""Resume an interrupted run at the epoch where it stopped: its training state, saved in the run folder.

``<run folder>/checkpoint.pt`` (or ``<checkpoint dir>/<run id>/checkpoint.pt``) holds, after some epoch k,
everything that epoch k + 1 starts from: the weights, the optimizer's, scheduler's, gradient scaler's and loss's
state, torch's random state and the run's first k rows of metrics.jsonl (so a Ray worker's fresh run folder can be
rebuilt). The loader needs nothing: each epoch's order and augmentations are seeded from the run's seed and the
epoch's number (:class:`bench.data.loader.EpochSampler`), so a resumed run computes what the uninterrupted run
would have (on the CPU to the bit, with the same number of loader workers). It is written atomically, at most
every ``minutes`` minutes, and removed when the run ends.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.config import RunConfig
from bench.results import CHECKPOINT_FILE, atomic_file, changed_settings

FORMAT = 1


@dataclass(frozen=True)
class TrainingState:
    """The objects whose state a checkpoint carries; the scaler is None without fp16 autocast."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    loss: torch.nn.Module


@dataclass(frozen=True)
class Resumed:
    """Where a resumed run picks up: after ``epoch`` epochs, ``seconds`` of training behind it, the epochs after
    which earlier attempts resumed (this one last) and the run's metrics.jsonl lines of those ``epoch`` epochs."""

    epoch: int
    seconds: float
    resumed_after: tuple[int, ...]
    rows: tuple[str, ...]


def checkpoint_file(out_dir: Path, run_id: str, checkpoint_dir: Path | None = None) -> Path:
    """Where a run keeps its checkpoint: its run folder under ``out_dir``, or its folder under ``checkpoint_dir``."""
    return (checkpoint_dir if checkpoint_dir is not None else out_dir) / run_id / CHECKPOINT_FILE


def saved_epoch(path: Path, config: RunConfig) -> int:
    """The epochs the checkpoint at ``path`` comes after if it looks usable for ``config`` (``bench run --dry-run``);
    0 when there is none or it is another run's or unreadable. Memory-maps the file: no weights are read."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        if saved.get("format") == FORMAT and not changed_settings(saved.get("config") or {}, config):
            return int(saved["epoch"])
    except Exception:  # absent or damaged: the run starts over
        pass
    return 0


def _same_streams(workers: int, other: int) -> bool:
    """Augmentations are seeded per loader worker, the main process counting as worker 0: 0 and 1 agree."""
    return max(workers, 1) == max(other, 1)


class Checkpoints:
    """Saving and loading one run's checkpoint (``minutes``: the least time between two saves; inf: never)."""

    def __init__(self, path: Path, config: RunConfig, *, workers: int, minutes: float) -> None:
        self.path = path
        self.run = config
        self.config = config.to_dict()
        self.workers = workers
        self.minutes = minutes
        self.last_save = time.monotonic()
        self.resumed_after: tuple[int, ...] = ()
        self.discarded = False  # resume() gave up on a checkpoint, possibly after loading part of it

    def resume(self, state: TrainingState, device: torch.device) -> Resumed | None:
        """Load the checkpoint into ``state`` if there is one for this run's configuration; None otherwise.

        A checkpoint that cannot be read or belongs to other settings is discarded with a warning (the run
        starts over, and ``discarded`` tells the caller to build ``state`` afresh: part of it may be loaded);
        one saved with a different number of loader workers is used, with a warning that the run's
        augmentations then differ from an uninterrupted run's.
        """
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location=device, weights_only=True)
            if saved.get("format") != FORMAT or changed_settings(saved.get("config") or {}, self.run):
                raise ValueError("saved for other settings")
            if len(saved["rows"]) != int(saved["epoch"]):
                raise ValueError(f"it follows epoch {saved['epoch']} but holds {len(saved['rows'])} epoch rows")
            state.model.load_state_dict(saved["model"])
            state.optimizer.load_state_dict(saved["optimizer"])
            state.scheduler.load_state_dict(saved["scheduler"])
            state.loss.load_state_dict(saved["loss"])
            if state.scaler is not None and saved["scaler"] is not None:
                state.scaler.load_state_dict(saved["scaler"])
            torch.set_rng_state(saved["torch_rng"].cpu())
            if saved["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all([s.cpu() for s in saved["cuda_rng"]])
        except Exception as error:  # a damaged or foreign file: training from scratch is always correct
            warnings.warn(
                f"{self.path} is not a usable checkpoint of this run ({error}); starting it over", stacklevel=2
            )
            self.remove()
            self.discarded = True
            return None
        if not _same_streams(self.workers, int(saved["workers"])):
            warnings.warn(
                f"{self.config['task']} {self.config['method']} seed {self.config['seed']} resumes with "
                f"{self.workers} loader workers after {saved['workers']}: its augmentations from epoch "
                f"{saved['epoch'] + 1} differ from an uninterrupted run's",
                stacklevel=2,
            )
        self.resumed_after = (*saved["resumed_after"], int(saved["epoch"]))
        self.last_save = time.monotonic()
        return Resumed(int(saved["epoch"]), float(saved["seconds"]), self.resumed_after, tuple(saved["rows"]))

    def due(self) -> bool:
        return math.isfinite(self.minutes) and time.monotonic() - self.last_save >= 60 * self.minutes

    def save(self, state: TrainingState, epoch: int, seconds: float, rows: list[str]) -> None:
        """Write the state after ``epoch`` epochs (``seconds`` of training so far, ``rows`` the run's metrics.jsonl
        lines of those epochs) atomically; the folder is made if need be (a shared --checkpoint-dir)."""
        payload: dict[str, Any] = {
            "format": FORMAT,
            "config": self.config,
            "epoch": epoch,
            "seconds": seconds,
            "rows": list(rows),
            "workers": self.workers,
            "resumed_after": list(self.resumed_after),
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler is not None else None,
            "loss": state.loss.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(self.path) as stream:
            torch.save(payload, stream)
        self.last_save = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
