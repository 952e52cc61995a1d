"""Run configuration: option parsing, layered defaults, TOML config files and the grid specification.

Precedence, highest first: command-line flag > ``--config`` file > the dataset's own defaults > the paper's
values (:data:`PAPER_DEFAULTS`). Every value is validated here, so the rest of the program can trust it.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """A bad option or config file; the message is one line that says what to do."""


# The paper's protocol (KCC 2025) and the authors' code: the defaults for the user's own data.
PAPER_DEFAULTS: dict[str, Any] = {
    "ratios": (1.0, 0.1, 0.01, 0.005, 0.001),
    "methods": ("ce", "os", "cb", "fscl", "fscl+os"),
    "backbones": ("resnet18",),
    "seeds": 10,
    "img_size": 224,
    "epochs": 100,
    "majority_count": 10000,
    "batch_size": 64,
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "warmup_epochs": 0,
    "sim_weight": 0.1,
    "supcon_weight": 1.0,
    "bcl_weight": 0.3,
    "triplet_weight": 1.0,
    "stages": None,
    "cb_beta": 0.9999,
    "cb_gamma": 0.0,
    "cb_kind": "softmax",
    "focal_gamma": 2.0,
    "ldam_max_margin": 0.5,
    "ldam_scale": 30.0,
    "drw_epoch": None,
    "la_tau": 1.0,
    "supcon_temperature": 0.1,
    "triplet_margin": 0.2,
    "randaug_ops": 2,
    "randaug_magnitude": 9,
    "randaug_strength": "fixed",
    "oversample_epoch": "subset",
    "pretrained": False,
    "pretrained_file": None,
    "amp": "auto",
    "device": "auto",
    "workers": None,
    "compile": False,
    "executor": "local",
    "ray_address": None,
    "gpus_per_run": None,
    "cpus_per_run": 1.0,
    "checkpoint_minutes": 10.0,
    "checkpoint_dir": None,
}

CB_KINDS = ("softmax", "sigmoid", "focal")
AMP_MODES = ("auto", "off", "bf16", "fp16")
RANDAUG_STRENGTHS = ("fixed", "uniform")  # torchvision's fixed signed strength, or uniform in [-m, m]
OVERSAMPLE_EPOCHS = ("subset", "full")  # an oversampled epoch: the subset's size, or C x the largest class
EXECUTORS = ("local", "ray")


# ---------------------------------------------------------------------------------------------- value parsers


def _items(value: Any, what: str) -> list[str]:
    """A comma-separated string or a list -> stripped, non-empty strings."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    else:
        parts = [str(value)]
    items = [p.strip() for p in parts if p.strip()]
    if not items:
        raise ConfigError(f"{what} is empty; give at least one value, separated by commas")
    return items


def _unique(items: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(items))


def parse_ratios(value: Any) -> tuple[float, ...]:
    """``"1,0.1,0.01"`` -> ``(1.0, 0.1, 0.01)``; each ratio must lie in (0, 1]."""
    ratios = []
    for item in _items(value, "--ratios"):
        try:
            ratio = float(item)
        except ValueError:
            raise ConfigError(
                f"ratio '{item}' is not a number; give ratios in (0, 1] separated by commas, e.g. 1,0.1,0.01"
            ) from None
        if not (math.isfinite(ratio) and 0.0 < ratio <= 1.0):
            raise ConfigError(
                f"ratio {item} is outside (0, 1]; a ratio is minority/majority training images, e.g. 0.01"
            )
        ratios.append(ratio)
    return _unique(ratios)


def parse_names(value: Any, what: str) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` -> ``("a", "b")`` without duplicates."""
    return _unique(_items(value, what))


def parse_stages(value: Any) -> tuple[int, ...] | None:
    """``"3,4"`` -> ``(3, 4)``; ``None`` keeps the backbone's default (its last two stages)."""
    if value is None:
        return None
    stages = []
    for item in _items(value, "--stages"):
        try:
            stage = int(item)
        except ValueError:
            raise ConfigError(
                f"stage '{item}' is not an integer; give stage indices such as 3,4 (bench stages NAME lists them)"
            ) from None
        if stage < 0:
            raise ConfigError(f"stage {stage} is negative; stage indices start at 0 (bench stages NAME lists them)")
        stages.append(stage)
    return _unique(stages)


def _int_at_least(minimum: int) -> Callable[[Any, str], int]:
    def parse(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
        if number < minimum:
            raise ConfigError(f"{name} must be an integer >= {minimum}, got {number}")
        return number

    return parse


def _float_in(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Callable[[Any, str], float]:
    def parse(value: Any, name: str) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        ok = math.isfinite(number)
        ok = ok and (number > low if low_open else number >= low) and (number < high if high_open else number <= high)
        if not ok:
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            raise ConfigError(f"{name} must lie in {lo}{low:g}, {high:g}{hi}, got {value!r}")
        return number

    return parse


def _choice(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def parse(value: Any, name: str) -> str:
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return parse


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    return value


def _optional_path(value: Any, name: str) -> str | None:
    return None if value is None else str(value)


def _workers(value: Any, name: str) -> int | None:
    return None if value is None else _int_at_least(0)(value, name)


def _minutes(value: Any, name: str) -> float:
    """Minutes >= 0, or inf (never)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number of minutes or inf, got {value!r}") from None
    if math.isnan(number) or number < 0:
        raise ConfigError(f"{name} must be 0 or more minutes (inf: never), got {value!r}")
    return number


def _optional_text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string such as auto or HOST:PORT, got {value!r}")
    return value.strip()


def _gpus_per_run(value: Any, name: str) -> float | None:
    """Ray's rule: a fraction of one GPU (0 < g < 1, several runs share it) or a whole number of GPUs."""
    if value is None:
        return None
    number = _float_in(0.0, math.inf, high_open=True)(value, name)
    if number > 1 and not number.is_integer():
        raise ConfigError(f"{name} must be a fraction of one GPU (e.g. 0.25) or a whole number, got {value!r}")
    return number


def _device(value: Any, name: str) -> str:
    text = str(value)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", text):
        raise ConfigError(f"{name} must be auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return text


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "ratios": lambda v, n: parse_ratios(v),
    "methods": lambda v, n: parse_names(v, "--methods"),
    "backbones": lambda v, n: parse_names(v, "--backbones"),
    "seeds": _int_at_least(1),
    "img_size": _int_at_least(8),
    "epochs": _int_at_least(1),
    "majority_count": _int_at_least(1),
    "batch_size": _int_at_least(2),
    "lr": _float_in(0.0, math.inf, low_open=True, high_open=True),
    "weight_decay": _float_in(0.0, math.inf, high_open=True),
    "warmup_epochs": _int_at_least(0),
    "sim_weight": _float_in(0.0, math.inf, high_open=True),
    "supcon_weight": _float_in(0.0, math.inf, high_open=True),
    "bcl_weight": _float_in(0.0, math.inf, high_open=True),
    "triplet_weight": _float_in(0.0, math.inf, high_open=True),
    "stages": lambda v, n: parse_stages(v),
    "cb_beta": _float_in(0.0, 1.0, high_open=True),
    "cb_gamma": _float_in(0.0, math.inf, high_open=True),
    "cb_kind": _choice(CB_KINDS),
    "focal_gamma": _float_in(0.0, math.inf, high_open=True),
    "ldam_max_margin": _float_in(0.0, math.inf, high_open=True),
    "ldam_scale": _float_in(0.0, math.inf, low_open=True, high_open=True),
    "drw_epoch": lambda v, n: None if v is None else _int_at_least(1)(v, n),
    "la_tau": _float_in(0.0, math.inf, high_open=True),
    "supcon_temperature": _float_in(0.0, math.inf, low_open=True, high_open=True),
    "triplet_margin": _float_in(0.0, math.inf, high_open=True),
    "randaug_ops": _int_at_least(0),
    "randaug_magnitude": _int_at_least(0),
    "randaug_strength": _choice(RANDAUG_STRENGTHS),
    "oversample_epoch": _choice(OVERSAMPLE_EPOCHS),
    "pretrained": _flag,
    "pretrained_file": _optional_path,
    "amp": _choice(AMP_MODES),
    "device": _device,
    "workers": _workers,
    "compile": _flag,
    "executor": _choice(EXECUTORS),
    "ray_address": _optional_text,
    "gpus_per_run": _gpus_per_run,
    "cpus_per_run": _float_in(0.0, math.inf, low_open=True, high_open=True),
    "checkpoint_minutes": _minutes,
    "checkpoint_dir": _optional_path,
}
assert set(_PARSERS) == set(PAPER_DEFAULTS)


def _flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


def resolve_options(*layers: dict[str, Any]) -> dict[str, Any]:
    """Merge option layers (lowest precedence first) over :data:`PAPER_DEFAULTS` and validate every value.

    ``None`` in a layer means "not given" and never overrides a lower layer.
    """
    merged = dict(PAPER_DEFAULTS)
    for layer in layers:
        for key, value in layer.items():
            if key not in _PARSERS:
                raise ConfigError(f"unknown option '{key}'; valid: {', '.join(sorted(_PARSERS))}")
            if value is not None:
                merged[key] = value
    resolved = {key: None if value is None else _PARSERS[key](value, _flag_name(key)) for key, value in merged.items()}
    if resolved["warmup_epochs"] >= resolved["epochs"]:
        raise ConfigError(
            f"--warmup-epochs ({resolved['warmup_epochs']}) must be smaller than --epochs ({resolved['epochs']})"
        )
    return resolved


# ---------------------------------------------------------------------------------------------- config file


@dataclass(frozen=True)
class FileConfig:
    """What a ``--config`` TOML file contributes: a data root, task presets and option values."""

    data: str | None
    tasks: dict[str, tuple[str, ...]]
    options: dict[str, Any]


def load_config_file(path: Path) -> FileConfig:
    """Read a ``bench.toml``: ``data = "root"`` (relative to the file), ``[tasks.NAME] classes = [majority, minority]``
    and any run option by its flag name with underscores (``epochs = 50``, ``ratios = [1, 0.1]``)."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing TOML file to --config")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}".replace("\n", " ")) from None
    data = table.pop("data", None)
    if data is not None:
        if not isinstance(data, str):
            raise ConfigError(f"{path}: 'data' must be a string (a folder, 'digits' or 'cifar10')")
        if data not in ("digits", "cifar10") and not Path(data).is_absolute():
            data = str((path.parent / data).resolve())
    tasks = parse_tasks_table(table.pop("tasks", {}), str(path))
    unknown = sorted(set(table) - set(_PARSERS))
    if unknown:
        hint = difflib.get_close_matches(unknown[0], list(_PARSERS), n=1)
        also = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(
            f"{path}: unknown key '{unknown[0]}'{also}; valid: data, tasks, {', '.join(sorted(_PARSERS))}"
        )
    return FileConfig(data=data, tasks=tasks, options=table)


def parse_tasks_table(tasks: Any, where: str) -> dict[str, tuple[str, ...]]:
    """``{"fine": {"classes": ["a", "b"]}}`` -> ``{"fine": ("a", "b")}`` with one-line errors naming ``where``.

    Two names are (majority, minority); more than two are a long-tailed task, head class first.
    """
    if not isinstance(tasks, dict):
        raise ConfigError(f"{where}: 'tasks' must be a table of [tasks.NAME] sections")
    parsed = {}
    for name, body in tasks.items():
        classes = body.get("classes") if isinstance(body, dict) else None
        if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
            raise ConfigError(
                f'{where}: [tasks.{name}] needs classes = ["majority", "minority"] (two class names, or more for a '
                "long-tailed task, head first)"
            )
        if len(set(classes)) != len(classes):
            raise ConfigError(f"{where}: [tasks.{name}] names the same class twice")
        parsed[name] = tuple(classes)
    return parsed


# ---------------------------------------------------------------------------------------------- run and grid


@dataclass(frozen=True)
class TrainSettings:
    """Settings shared by every run of a grid that change its numbers (device and workers are not among them)."""

    img_size: int
    epochs: int
    majority_count: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    sim_weight: float
    supcon_weight: float
    bcl_weight: float
    triplet_weight: float
    stages: tuple[int, ...] | None
    cb_beta: float
    cb_gamma: float
    cb_kind: str
    focal_gamma: float
    ldam_max_margin: float
    ldam_scale: float
    drw_epoch: int | None  # None: 80% of epochs (losses.default_drw_epoch)
    la_tau: float
    supcon_temperature: float
    triplet_margin: float
    randaug_ops: int
    randaug_magnitude: int
    randaug_strength: str
    oversample_epoch: str
    pretrained: bool
    pretrained_file: str | None
    amp: str

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> TrainSettings:
        return cls(**{f.name: options[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class RunConfig:
    """One cell of the grid: everything that determines one training run's result."""

    dataset: str
    data_fingerprint: str
    task: str
    classes: tuple[str, ...]  # (majority, minority), or C > 2 classes of a long-tailed task, head first
    backbone: str
    method: str
    ratio: float
    seed: int
    settings: TrainSettings

    @property
    def run_id(self) -> str:
        """Folder name of the run: task, backbone, method, ratio and seed, safe on every file system."""
        backbone = re.sub(r"[^A-Za-z0-9._+-]", "-", self.backbone)
        return f"{self.task}__{backbone}__{self.method}__r{self.ratio:g}__s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["classes"] = list(self.classes)
        settings = record.pop("settings")
        if settings["stages"] is not None:
            settings["stages"] = list(settings["stages"])
        return {**record, **settings}


@dataclass(frozen=True)
class GridSpec:
    """The grid: tasks x backbones x ratios x methods x seeds over one dataset."""

    dataset: str
    data_fingerprint: str
    tasks: tuple[tuple[str, tuple[str, ...]], ...]
    backbones: tuple[str, ...]
    methods: tuple[str, ...]
    ratios: tuple[float, ...]
    seeds: int
    settings: TrainSettings

    def cells(self) -> list[RunConfig]:
        """All runs, seed-major, so an interrupted grid already has every cell at n = 1 before any at n = 2."""
        return [
            RunConfig(self.dataset, self.data_fingerprint, task, classes, backbone, method, ratio, seed, self.settings)
            for seed in range(self.seeds)
            for task, classes in self.tasks
            for backbone in self.backbones
            for ratio in self.ratios
            for method in self.methods
        ]
