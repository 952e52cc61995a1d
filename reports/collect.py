"""Collect run folders: read each ``result.json`` into a :class:`RunRecord`.

Never raises on bad result files: problems become warning strings (with the file path) and the file is left out.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import format_value

RESULT_FILE = "result.json"
CONFIG_FILE = "config.json"
#: ``<task>__<backbone>__<method>__r<ratio>__s<seed>`` (bench.config.RunConfig.run_id): a run folder by its name.
RUN_ID_PATTERN = re.compile(r"^.+__.+__.+__r[0-9.eE+-]+__s-?[0-9]+$")
REQUIRED_KEYS: tuple[str, ...] = ("task", "backbone", "method", "ratio", "seed", "status")
KNOWN_STATUSES: frozenset[str] = frozenset({"finished", "failed"})


@dataclass(frozen=True)
class RunRecord:
    """One run, reduced to what the leaderboard needs. ``classes`` is (majority, minority), or more than two class
    names for a long-tailed task (head first); ``train_counts`` the training images per class name."""

    task: str
    dataset: str
    classes: tuple[str, ...]
    backbone: str
    method: str
    ratio: float
    seed: int
    status: str
    metrics: dict[str, float]
    path: Path  # the run's result.json; its folder holds metrics.jsonl and test_outputs.npz
    config: dict[str, Any] = field(default_factory=dict)  # the run's settings (result.json "config")
    wall_seconds: float | None = None
    device: str = ""
    train_counts: dict[str, int] = field(default_factory=dict)
    members: tuple[str, ...] = ()  # a soft-voting ensemble row (reports.ensemble): the run folders it averages
    actual_ratio: float | None = None  # minority / majority training images used (None: not recorded)
    hardware: dict[str, Any] = field(default_factory=dict)  # device_type, precision, ...; empty: unknown (older runs)
    sources: dict[str, str] = field(default_factory=dict)  # option -> where its value came from; empty: unknown
    variant: tuple[tuple[str, Any], ...] = ()  # a swept run's settings (result.json "sweep")
    posthoc_tau: float | None = None  # a post-hoc logit-adjusted row (reports.posthoc): the tau chosen on validation

    @property
    def derived(self) -> bool:
        """A row computed from other runs' saved outputs (an ensemble or a post-hoc adjustment): it trained nothing."""
        return bool(self.members) or self.posthoc_tau is not None

    @property
    def label(self) -> str:
        """The row label of the run's method and swept settings: ``fscl+os[sim_weight=0.3]``."""
        return variant_label(self.method, self.variant)

    @property
    def is_long_tail(self) -> bool:
        """More than two classes: the report shows the many-class columns and balanced accuracy as headline."""
        return len(self.classes) > 2

    @property
    def folder(self) -> Path:
        return self.path.parent


@dataclass(frozen=True)
class Collection:
    """All readable runs, warnings about unreadable ones, and the number of folders without a result. ``root``: the
    folder of run folders they were collected from (None: a single run, or rows derived from a collection)."""

    records: list[RunRecord]
    warnings: list[str]
    incomplete: int
    root: Path | None = None


class _BadResult(ValueError):
    """A result.json that cannot be turned into a RunRecord."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalar_metrics(raw: Any, path: Path, warnings: list[str]) -> dict[str, float]:
    """Keep the finite numeric metrics; matrices and other non-scalars are silently skipped."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _BadResult(f"'metrics' must be an object, got {type(raw).__name__}")
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        if not _is_number(value):
            continue
        if not math.isfinite(value):
            warnings.append(f"{path}: metric {name!r} is {value}; left out")
            continue
        metrics[sys.intern(str(name))] = float(value)  # interned: 100,000 runs share one copy of each name
    return metrics


def _train_counts(raw: Any) -> dict[str, int]:
    """``{"class": count}`` of a result; anything malformed is dropped (older results may lack it)."""
    if not isinstance(raw, dict):
        return {}
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, int) and not isinstance(v, bool)}


def _string_dict(raw: Any) -> dict[str, Any]:
    """A JSON object with string keys as a dict; anything else (absent, malformed) as an empty dict."""
    return {str(k): v for k, v in raw.items()} if isinstance(raw, dict) else {}


def _sources(data: dict[str, Any], folder: Path) -> dict[str, str]:
    """Where each setting came from: ``sources`` of the result's config, of the result, or of the run's config.json
    (where ``bench run`` writes it); empty for runs written before sources were recorded."""
    config = data.get("config")
    candidates = [config.get("sources") if isinstance(config, dict) else None, data.get("sources")]
    if not any(isinstance(raw, dict) for raw in candidates):
        try:
            stored = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            stored = None
        candidates.append(stored.get("sources") if isinstance(stored, dict) else None)
    raw = next((raw for raw in candidates if isinstance(raw, dict)), {})
    return {str(k): str(v) for k, v in raw.items()}


def _variant(raw: Any) -> tuple[tuple[str, Any], ...]:
    """result.json ``sweep`` ({setting: value}) as a tuple of (setting, value) sorted by setting; () when absent."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise _BadResult(f"'sweep' must be an object of setting: value, got {raw!r}")
    for key, value in raw.items():
        if not isinstance(value, (int, float, str, bool)) or (_is_number(value) and not math.isfinite(value)):
            raise _BadResult(f"'sweep' value of {key!r} must be a number or a string, got {value!r}")
    return tuple(sorted((str(key), value) for key, value in raw.items()))


def variant_text(variant: tuple[tuple[str, Any], ...]) -> str:
    """``sim_weight=0.3`` (several settings joined by ``,``, numbers as ``:g``, as bench names the run folders:
    :func:`bench.config.format_value`); '' for no variant."""
    return ",".join(f"{key}={format_value(value)}" for key, value in variant)


def variant_label(method: str, variant: tuple[tuple[str, Any], ...]) -> str:
    """A swept run's row label: ``fscl+os[sim_weight=0.3]``; the method alone for no variant."""
    return f"{method}[{variant_text(variant)}]" if variant else method


def _config_sweep(data: dict[str, Any]) -> Any:
    """The ``sweep`` recorded in the result's config: results of the first swept runs have it only there."""
    config = data.get("config")
    return config.get("sweep") if isinstance(config, dict) else None


def _parse(data: Any, path: Path, warnings: list[str]) -> RunRecord:
    """Validate one decoded result.json; raise :class:`_BadResult` with a short reason."""
    if not isinstance(data, dict):
        raise _BadResult(f"top level must be a JSON object, got {type(data).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise _BadResult(f"missing required keys: {', '.join(missing)}")
    for key in ("task", "backbone", "method", "status"):
        if not isinstance(data[key], str) or not data[key]:
            raise _BadResult(f"{key!r} must be a non-empty string, got {data[key]!r}")
    if not _is_number(data["ratio"]) or not math.isfinite(data["ratio"]) or data["ratio"] <= 0:
        raise _BadResult(f"'ratio' must be a positive number, got {data['ratio']!r}")
    if not isinstance(data["seed"], int) or isinstance(data["seed"], bool):
        raise _BadResult(f"'seed' must be an integer, got {data['seed']!r}")
    if data["status"] not in KNOWN_STATUSES:
        raise _BadResult(f"unknown status {data['status']!r} (expected one of {sorted(KNOWN_STATUSES)})")
    classes = data.get("classes") or []
    if not isinstance(classes, list):
        raise _BadResult(f"'classes' must be a list, got {classes!r}")
    return RunRecord(
        task=data["task"],
        dataset=str(data.get("dataset") or ""),
        classes=tuple(str(c) for c in classes),
        backbone=data["backbone"],
        method=data["method"],
        ratio=float(data["ratio"]),
        seed=data["seed"],
        status=data["status"],
        metrics=_scalar_metrics(data.get("metrics"), path, warnings),
        path=path,
        config={sys.intern(k): v for k, v in data["config"].items()} if isinstance(data.get("config"), dict) else {},
        wall_seconds=float(data["wall_seconds"]) if _is_number(data.get("wall_seconds")) else None,
        device=str(data.get("device") or ""),
        train_counts=_train_counts(data.get("train_counts")),
        actual_ratio=float(data["actual_ratio"]) if _is_number(data.get("actual_ratio")) else None,
        hardware=_string_dict(data.get("hardware")),
        sources=_sources(data, path.parent),
        variant=_variant(data.get("sweep", _config_sweep(data))),
    )


def _read(path: Path, warnings: list[str], text: str | None = None) -> RunRecord | None:
    """Read one result file (``text``: its content, already read); on any problem append a warning naming the path
    and return None."""
    try:
        data = json.loads(text if text is not None else path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        warnings.append(f"{path}: cannot read ({exc}); left out")
        return None
    except json.JSONDecodeError as exc:
        warnings.append(f"{path}: invalid JSON ({exc}); left out")
        return None
    try:
        return _parse(data, path, warnings)
    except _BadResult as exc:
        warnings.append(f"{path}: {exc}; left out")
        return None


RunKey = tuple[str, str, str, str, float, int]


def _run_key(record: RunRecord) -> RunKey:
    return (record.task, record.backbone, record.method, variant_text(record.variant), record.ratio, record.seed)


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like a run folder: it holds a result.json or config.json, or has a run id's name."""
    has_file = (folder / RESULT_FILE).is_file() or (folder / CONFIG_FILE).is_file()
    return has_file or RUN_ID_PATTERN.match(folder.name) is not None


def _results(folders: Sequence[Path], incomplete: list[int]) -> Iterator[tuple[Path, str | None]]:
    """(result.json, its text) of each folder that has one, in order, opening each once (None: it could not be read,
    :func:`_read` says why); counts the run-shaped folders without one in ``incomplete[0]``."""
    for folder in folders:
        path = folder / RESULT_FILE
        try:
            yield path, path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            if path.is_file():
                yield path, None
            elif is_run_folder(folder):
                incomplete[0] += 1


def collect_runs(runs_dir: Path) -> Collection:
    """Read ``runs_dir/*/result.json`` (or ``runs_dir/result.json`` if present, as a single run).

    Sub-folders without a result file that look like run folders (a ``config.json``, or a run-id-shaped name) count
    as incomplete; other folders (the report's ``figures/``), hidden folders and plain files are ignored.
    A second run with the same (task, backbone, method, swept settings, ratio, seed) is left out with a warning.
    """
    runs_dir = Path(runs_dir)
    warnings: list[str] = []
    if not runs_dir.is_dir():
        return Collection(records=[], warnings=[f"{runs_dir}: runs directory not found"], incomplete=0)

    counted = [0]  # run-shaped folders without a result
    if (runs_dir / RESULT_FILE).is_file():
        candidates: Iterator[tuple[Path, str | None]] = iter([(runs_dir / RESULT_FILE, None)])
    else:
        with os.scandir(runs_dir) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())  # as Paths sort
        folders = [runs_dir / name for name in names]
        candidates = _results(folders, counted)

    records: list[RunRecord] = []
    seen: dict[RunKey, Path] = {}
    for path, text in candidates:
        record = _read(path, warnings, text)
        if record is None:
            continue
        key = _run_key(record)
        if key in seen:
            same = "same task/backbone/method/settings/ratio/seed"
            warnings.append(f"{path}: duplicate of {seen[key]} ({same}); left out")
            continue
        seen[key] = path
        records.append(record)
    root = None if (runs_dir / RESULT_FILE).is_file() else runs_dir
    return Collection(records=records, warnings=warnings, incomplete=counted[0], root=root)
