"""The post-hoc rows' metrics kept between reports, so a re-report (after a resume) scores only new or changed runs.

Scoring a run's post-hoc row reads its two ``*_outputs.npz`` and costs tens of milliseconds (tau chosen on
validation, then every test metric); over 100,000 runs that is more than an hour. The values are kept in one file,
``<runs folder>/.bench-report/posthoc.npz``, one entry per run folder, valid while the folder's ``result.json``,
``val_outputs.npz`` and ``test_outputs.npz`` keep their size and modification time (and :data:`CACHE_VERSION` and
the taus tried stay the same): a run that changes, or is written again by a resume, is scored afresh. The values are
float64 as computed, so a cached row prints the same numbers as a fresh one. A runs folder the report cannot write
to is scored every time.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from reports.collect import RESULT_FILE, RunRecord
from reports.ensemble import OUTPUTS_FILE

CACHE_FOLDER = ".bench-report"
CACHE_FILE = "posthoc.npz"
#: Bump when what a post-hoc row holds or how it is computed changes: every cached row is then scored again.
CACHE_VERSION = 1
VAL_OUTPUTS_FILE = "val_outputs.npz"
_WATCHED = (RESULT_FILE, VAL_OUTPUTS_FILE, OUTPUTS_FILE)

FileKey = tuple[int, ...]


def file_key(folder: Path) -> FileKey | None:
    """(size, mtime_ns) of each file a post-hoc row is computed from, flattened; None when one is missing."""
    key: list[int] = []
    base = os.fspath(folder)  # plain strings, no Path object per file (300,000 at 100,000 runs)
    for name in _WATCHED:
        try:
            stat = os.stat(os.path.join(base, name))
        except OSError:
            return None
        key += [stat.st_size, stat.st_mtime_ns]
    return tuple(key)


class PosthocCache:
    """Post-hoc metrics by run folder name, read from and written to ``folder / CACHE_FILE``; ``version`` names the
    computation (:data:`CACHE_VERSION` and the taus tried): entries of another version are ignored."""

    def __init__(self, folder: Path, version: str) -> None:
        self.path = Path(folder) / CACHE_FILE
        self.version = version
        self.entries: dict[str, tuple[FileKey, dict[str, float]]] = {}  # scored (or asked for) by this report
        self.stored: dict[str, int] = {}  # run folder name -> its row in the arrays read from the file
        self.keys = np.zeros((0, 2 * len(_WATCHED)), dtype=np.int64)
        self.metrics: list[str] = []
        self.values = np.zeros((0, 0))
        self.present = np.zeros((0, 0), dtype=bool)
        self.changed = False
        self._read()

    def _read(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                if str(stored["version"]) != self.version:
                    return
                names, keys = stored["names"].tolist(), stored["keys"]
                metrics, values, present = stored["metrics"].tolist(), stored["values"], stored["present"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return  # no cache yet, or a damaged one: everything is scored afresh and the file rewritten
        shape = (len(names), len(metrics))
        if keys.shape != (len(names), 2 * len(_WATCHED)) or values.shape != shape or present.shape != shape:
            return
        self.stored = {name: row for row, name in enumerate(names)}
        self.keys, self.metrics, self.values, self.present = keys, metrics, values, present

    def _entry(self, name: str) -> tuple[FileKey, dict[str, float]] | None:
        """A run's (file key, metrics): scored by this report, else read from the file (made on first use)."""
        if name not in self.entries and name in self.stored:
            row = self.stored[name]
            filled = np.flatnonzero(self.present[row])
            values = dict(zip([self.metrics[i] for i in filled], self.values[row, filled].tolist(), strict=True))
            self.entries[name] = (tuple(self.keys[row].tolist()), values)
        return self.entries.get(name)

    def get(self, record: RunRecord) -> tuple[FileKey | None, dict[str, float] | None]:
        """The run's current file key and its cached metrics (None when not cached or its files changed)."""
        key = file_key(record.folder)
        entry = self._entry(record.folder.name)
        return key, (dict(entry[1]) if entry is not None and key is not None and entry[0] == key else None)

    def put(self, record: RunRecord, key: FileKey, metrics: dict[str, float]) -> None:
        self.entries[record.folder.name] = (key, dict(metrics))
        self.changed = True

    def keep_only(self, names: set[str]) -> None:
        """Forget the entries of run folders not in ``names`` (removed runs)."""
        gone = (self.entries.keys() | self.stored.keys()) - names
        for name in gone:
            self.entries.pop(name, None)
            self.stored.pop(name, None)
        self.changed = self.changed or bool(gone)

    def save(self) -> str | None:
        """Write the cache if it changed (atomically); a warning when it cannot be written, else None."""
        if not self.changed:
            return None
        for name in list(self.stored):
            self._entry(name)
        names = sorted(self.entries)
        metrics = sorted({m for _, values in self.entries.values() for m in values})
        column = {m: i for i, m in enumerate(metrics)}
        values = np.zeros((len(names), len(metrics)))
        present = np.zeros((len(names), len(metrics)), dtype=bool)
        keys = np.zeros((len(names), 2 * len(_WATCHED)), dtype=np.int64)
        for row, name in enumerate(names):
            key, stored = self.entries[name]
            keys[row] = key
            for metric, value in stored.items():
                values[row, column[metric]] = value
                present[row, column[metric]] = True
        temporary = self.path.with_name(f".{CACHE_FILE}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                np.savez(handle, version=np.array(self.version), names=np.array(names, dtype=str), keys=keys,
                         metrics=np.array(metrics, dtype=str), values=values, present=present)  # fmt: skip
            os.replace(temporary, self.path)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            return f"post-hoc rows not kept for the next report ({error}); they are scored again next time"
        self.changed = False
        return None
