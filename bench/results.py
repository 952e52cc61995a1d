"""The on-disk format of a run folder, defined in one place.

``<out>/<run_id>/``
  ``config.json``   the run's full configuration plus versions, written when the run starts;
  ``subset.json``   the images the seeded subsampling chose: ``{"train": {class: [id, ...]}, "val": {class:
                    [id, ...]}, "val_source": "train" | "val" | "valid" | null}`` (validation carved from the train
                    split, the data set's own val/ or valid/, or none); ids as in the outputs;
  ``metrics.jsonl`` one JSON line per epoch: losses, train accuracy, learning rate, seconds;
  ``test_outputs.npz``  per test image, in test-split order: ``logits`` (float32 [N, C]), ``features``
                    (pre-logits features, float16 [N, D]), ``labels`` (int64 [N]) and ``ids`` (str [N]: the image's
                    path relative to the data set's root, posix, e.g. ``test/deer/0001.jpg``, or for a built-in
                    data set its index in its split, e.g. ``"123"``); written before result.json;
  ``val_outputs.npz``   the same for the validation images (``logits``, ``labels``, ``ids``; no features), when the
                    run has a validation split; ids of images held out of the train split read ``train/deer/x.jpg``;
  ``checkpoint.pt`` the training state after some epoch of an unfinished run (:mod:`bench.checkpoint`), so an
                    interrupted run resumes there; removed once result.json is written;
  ``.lock``         held (``fcntl.flock``) by the process training the run, so two ``bench run`` processes on one
                    ``--out`` never train the same run; the kernel drops it when that process dies, even by kill -9;
  ``result.json``   final metrics, class counts, seed, device, versions and wall time — written last and
                    atomically, so its presence means the run is finished (or failed, with the reason).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from bench.config import PAPER_DEFAULTS, ConfigError, RunConfig

CHECKPOINT_FILE = "checkpoint.pt"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once at import: os.umask can only be read by setting it
SCHEMA_VERSION = 1
DONE_STATUSES = ("finished", "failed")
OUTPUTS_FILE = "test_outputs.npz"
VAL_OUTPUTS_FILE = "val_outputs.npz"


def legacy_value(key: str, stored: dict[str, Any]) -> Any:
    """The value a setting had in a run whose result was written before the setting existed, or recorded it as
    ``None`` (``stored``: that run's config): what bench then did, which is not always today's default."""
    if key == "randaug_strength":
        return "uniform"  # RandAugment strengths were drawn uniformly before the setting existed
    if key == "oversample_epoch":  # a long-tailed task's oversampled epoch was C x n_max, a binary one the subset's
        return "full" if len(stored.get("classes", ())) > 2 else "subset"
    if key == "drw_epoch":  # recorded as None (or not at all), it meant 80% of the epochs, rounded half up
        return max(1, int(0.8 * stored.get("epochs", PAPER_DEFAULTS["epochs"]) + 0.5))
    if key == "val_count":
        return 0  # no validation split was held out before the setting existed
    if key in ("supcon_weight", "bcl_weight", "triplet_weight"):
        return stored.get("sim_weight", PAPER_DEFAULTS["sim_weight"])  # all auxiliary losses shared --sim-weight
    return PAPER_DEFAULTS.get(key)


def versions() -> dict[str, str]:
    """Versions of the software that produced a result."""
    import timm
    import torch

    import bench

    return {
        "bench": bench.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON via a temporary file in the same folder and ``os.replace``: readers never see half a file."""
    write_bytes_atomic(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` via a temporary file in the same folder and ``os.replace``, like :func:`write_json_atomic`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as stream:
        stream.write(data)


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary stream to a temporary file beside ``path``, synced and renamed to ``path`` when the block ends
    without an error (readers never see half a file); removed when it raises."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~UMASK)  # mkstemp makes it 0600: give it the mode open() would
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _id_array(ids: Sequence[str], count: int) -> np.ndarray:
    """Image ids as a numpy str array [count] (stored without pickling, so ``np.load`` reads it by default)."""
    if len(ids) != count:
        raise ValueError(f"got {len(ids)} image ids for {count} outputs")
    return np.array(list(ids), dtype=np.str_) if count else np.zeros(0, dtype="<U1")


@dataclass(frozen=True)
class RunFiles:
    """Everything a finished (or failed) run folder holds, in memory: file name -> bytes, plus the parsed result.

    What a remote worker sends back to the driver, which stores it with :meth:`RunFolder.store`.
    """

    files: dict[str, bytes]
    result: dict[str, Any]


# The files of a run folder in the order they are written; result.json last, as its presence means "done".
RUN_FILES = ("config.json", "subset.json", "metrics.jsonl", OUTPUTS_FILE, VAL_OUTPUTS_FILE, "result.json")


def changed_settings(stored: dict[str, Any], config: RunConfig) -> list[str]:
    """The keys of :meth:`RunConfig.identity` in which ``stored`` (a run's recorded config) differs from ``config``,
    sorted; a key the run did not record counts as its :func:`legacy_value`. [] when they are the same run."""
    current = config.identity()
    return sorted(
        key
        for key, value in current.items()
        if (stored[key] if stored.get(key) is not None else legacy_value(key, stored)) != value
    )


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run's files."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def subset(self) -> Path:
        return self.path / "subset.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def lock(self) -> Path:
        return self.path / ".lock"

    @contextlib.contextmanager
    def claimed(self) -> Iterator[bool]:
        """Hold the run's lock for the block; yields False (and holds nothing) when another live process has it.

        An exclusive ``flock`` on ``.lock``: released when the block ends or the process dies, so a lock left by a
        killed process is never stale. The file is never deleted (deleting lock files races); it names the holder.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{socket.gethostname()} pid {os.getpid()}\n".encode())
            yield True
        finally:
            os.close(descriptor)  # closing releases the flock

    @property
    def outputs(self) -> Path:
        return self.path / OUTPUTS_FILE

    @property
    def val_outputs(self) -> Path:
        return self.path / VAL_OUTPUTS_FILE

    @property
    def result(self) -> Path:
        return self.path / "result.json"

    def read_result(self) -> dict[str, Any] | None:
        """The result if the run is done (finished or failed) and its file is intact, else ``None``."""
        try:
            result = json.loads(self.result.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(result, dict) or result.get("status") not in DONE_STATUSES:
            return None
        return result

    def is_done(self, config: RunConfig) -> bool:
        """True when a finished (or failed) result exists for exactly this configuration.

        Compared: :meth:`RunConfig.identity` — the settings the run's method reads and the data set's fingerprint,
        not its path. A result written under other settings is an error rather than a silent skip or an overwrite.
        """
        result = self.read_result()
        if result is None:
            return False
        recorded = result.get("config", {})
        changed = changed_settings(recorded, config)
        if changed:
            key = changed[0]
            there = recorded[key] if recorded.get(key) is not None else legacy_value(key, recorded)
            why = (
                ": the task's images changed, or the run was written before runs were keyed by their task's class "
                "folders (2026-12-02)"
                if key == "data_fingerprint"
                else ""
            )
            raise ConfigError(
                f"{self.path} holds a finished run with different settings ({key}: {there!r} there, "
                f"{config.identity()[key]!r} now{why}); choose a new --out or remove that folder"
            )
        return True

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    def start(self, config: RunConfig, extra: dict[str, Any], *, rows: Sequence[str] = ()) -> None:
        """Begin (or restart) the run: write its config, and as metrics.jsonl ``rows`` (a resumed run's epochs
        from its checkpoint; none for a fresh start, clearing the rows of an interrupted attempt)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.metrics, "".join(rows).encode("utf-8"))
        record = {**config.to_dict(), "data_given": config.data_given, "sources": dict(config.sources)}
        write_json_atomic(self.config, {**record, **extra, "versions": versions()})

    def epoch_rows(self) -> list[str]:
        """The lines of metrics.jsonl that are whole rows (a killed process may have left half of one)."""
        try:
            text = self.metrics.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return []
        return [line for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def append_epoch(self, row: dict[str, Any]) -> None:
        with self.metrics.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(row) + "\n")

    def write_subset(self, subset: dict[str, Any]) -> None:
        write_json_atomic(self.subset, subset)

    def write_outputs(self, logits: np.ndarray, features: np.ndarray, labels: np.ndarray, ids: Sequence[str]) -> None:
        """Save the test outputs atomically: logits [N, C], features [N, D] as float16 to keep the file small (2 MB
        for 2000 x 512), labels [N] and the images' ids [N]."""
        with atomic_file(self.outputs) as stream:
            np.savez(
                stream,
                logits=logits.astype(np.float32),
                features=features.astype(np.float16),
                labels=labels.astype(np.int64),
                ids=_id_array(ids, len(labels)),
            )

    def write_val_outputs(self, logits: np.ndarray, labels: np.ndarray, ids: Sequence[str]) -> None:
        """Save the validation outputs atomically: logits [V, C], labels [V] and ids [V]."""
        with atomic_file(self.val_outputs) as stream:
            np.savez(
                stream,
                logits=logits.astype(np.float32),
                labels=labels.astype(np.int64),
                ids=_id_array(ids, len(labels)),
            )

    def read_files(self) -> RunFiles:
        """The folder's files (those that exist) and its result, for sending to another machine."""
        files = {name: (self.path / name).read_bytes() for name in RUN_FILES if (self.path / name).is_file()}
        return RunFiles(files=files, result=json.loads(files["result.json"]))

    def store(self, run: RunFiles) -> dict[str, Any]:
        """Write a run trained elsewhere: each file atomically, result.json last; files of an earlier, interrupted
        attempt that ``run`` lacks (e.g. test outputs of a run that failed this time) are removed first."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            if name not in run.files:
                (self.path / name).unlink(missing_ok=True)
        for name in RUN_FILES:
            if name in run.files:
                write_bytes_atomic(self.path / name, run.files[name])
        return run.result

    def finish(self, config: RunConfig, payload: dict[str, Any]) -> dict[str, Any]:
        """Write ``result.json`` (status, metrics, counts, ...) with the identifying fields the report groups by."""
        result = {
            "schema_version": SCHEMA_VERSION,
            "run_id": config.run_id,
            "task": config.task,
            "dataset": config.dataset,
            "classes": list(config.classes),
            "backbone": config.backbone,
            "method": config.method,
            "sweep": dict(config.sweep),  # the swept settings this run has (the report's variant); {} when none
            "ratio": config.ratio,
            "seed": config.seed,
            **payload,
            "versions": versions(),
            "config": config.to_dict(),
            "sources": dict(config.sources),  # where each setting came from, so a report needs no config.json
        }
        write_json_atomic(self.result, result)
        return result
