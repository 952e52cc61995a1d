"""Run configuration: option parsing, layered defaults, TOML config files and the grid specification.

Precedence, highest first: command-line flag > ``--config`` file > the dataset's own defaults > the paper's
values (:data:`PAPER_DEFAULTS`). Every value is validated here, so the rest of the program can trust it.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, make_dataclass, replace
from pathlib import Path
from typing import Any

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """A bad option or config file; the message is one line that says what to do."""


CB_KINDS = ("softmax", "sigmoid", "focal")
AMP_MODES = ("auto", "off", "bf16", "fp16")
RANDAUG_STRENGTHS = ("fixed", "uniform")  # torchvision's fixed signed strength, or uniform in [-m, m]
RESIZE_MODES = ("stretch", "pad", "center-crop")  # how a frame becomes a square of --img-size pixels
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


# ---------------------------------------------------------------------------------------------- the option table

#: Help panels of ``bench run --help``, in the order they are shown.
GROUPS = ("Grid", "Data and protocol", "Training", "Method hyper-parameters", "Hardware", "Scale-out", "Output")


@dataclass(frozen=True)
class Option:
    """One option of ``bench run``, declared once: the flag, the TOML key, the paper's default, the parser, the help
    and its panel all come from here.

    ``name`` is the TOML key and, with ``-`` for ``_``, the flag (``flag`` overrides the declaration, e.g. a
    ``--on/--off`` pair). ``kind`` is the command line's value type. ``settings``: the option changes a run's numbers
    (a field of :class:`TrainSettings`, part of what keys a finished run). ``used_by``: the method components that
    read it (``None``: every run); a run whose method uses none of them is not keyed by it. ``shown_default`` is the
    help's text for a default that its value cannot say (``None`` values that mean "computed"). ``sweepable``: the
    option takes several values, each a cell of its own (:meth:`parse_value`); its ``kind`` is then ``str`` so that
    the command line takes ``0.1,0.3``.
    """

    name: str
    default: Any
    parse: Callable[[Any, str], Any]
    help: str
    group: str
    kind: type = str
    flag: str | None = None
    settings: bool = False
    used_by: tuple[str, ...] | None = None
    shown_default: str | None = None
    sweepable: bool = False

    @property
    def flag_name(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse_value(self, value: Any, name: str) -> Any:
        """``value`` validated by :attr:`parse`; for a sweepable option, several values (a comma-separated string or a
        list) are each validated so and become a tuple without duplicates, in the order given (one value stays a
        scalar). ``name`` (the flag, or the TOML key) is what error messages call the option."""
        if not self.sweepable or not (isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value)):
            return self.parse(value, name)
        items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else list(value)
        if not items:
            raise ConfigError(f"{name} is empty; give one value, or several separated by commas to sweep them")
        values = _unique(self.parse(item, name) for item in items)
        names: dict[str, Any] = {}
        for parsed in values:
            other = names.setdefault(format_value(parsed), parsed)
            if other != parsed:
                raise ConfigError(
                    f"{name} values {other!r} and {parsed!r} both read {format_value(parsed)} in a run folder's "
                    "name; give values that differ in their first 6 significant digits"
                )
        return values[0] if len(values) == 1 else values

    def default_text(self) -> str:
        """The default as ``--help`` shows it."""
        if self.shown_default is not None:
            return self.shown_default
        return format_value(self.default)


def format_value(value: Any) -> str:
    """A setting's value as a person reads it: ``(1.0, 0.1)`` -> ``1,0.1``; ``True`` -> ``on``; ``None`` -> ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_AUX = ("fscl", "supcon", "bcl", "triplet")
_SWEEP = " Several values, comma-separated, sweep it."

OPTIONS: tuple[Option, ...] = (
    # grid
    Option("ratios", (1.0, 0.1, 0.01, 0.005, 0.001), lambda v, n: parse_ratios(v),
           "Minority/majority training-image ratios in (0, 1]; with --task lt the tail/head ratio.", "Grid"),
    Option("methods", ("ce", "os", "cb", "fscl", "fscl+os"), lambda v, n: parse_names(v, "--methods"),
           "Methods, comma-separated; combine parts with + (bench methods).", "Grid"),
    Option("backbones", ("resnet18",), lambda v, n: parse_names(v, "--backbones"),
           "timm model names, comma-separated (bench backbones); --backbone NAME for one.", "Grid"),
    Option("seeds", 10, _int_at_least(1), "Run seeds 0..N-1.", "Grid", int),
    # data and protocol
    Option("img_size", 224, _int_at_least(8), "Square input size in pixels.", "Data and protocol", int, settings=True),
    Option("resize", "stretch", _choice(RESIZE_MODES),
           "How an image becomes a square of --img-size: stretch (the paper's; squeezes a 16:9 frame), pad (letterbox "
           "with the image's mean colour) or center-crop.", "Data and protocol", settings=True),
    Option("majority_count", 10000, _int_at_least(1),
           "Majority-class training images (capped at what exists); with --task lt the head class's.",
           "Data and protocol", int, settings=True),
    Option("val_count", 100, _int_at_least(0),
           "Validation images per class, held out of training at every ratio (at most half a class's images; a data "
           "set with val/ and test/ uses its own val/). Sweeps and post-hoc adjustment choose on it; 0: none.",
           "Data and protocol", int, settings=True),
    # training
    Option("epochs", 100, _int_at_least(1), "Training epochs.", "Training", int, settings=True),
    Option("batch_size", 64, _int_at_least(2), "Batch size.", "Training", int, settings=True),
    Option("lr", 1e-3, _float_in(0.0, math.inf, low_open=True, high_open=True), "Adam learning rate." + _SWEEP,
           "Training", settings=True, sweepable=True),
    Option("weight_decay", 1e-5, _float_in(0.0, math.inf, high_open=True), "Adam weight decay." + _SWEEP, "Training",
           settings=True, sweepable=True),
    Option("warmup_epochs", 0, _int_at_least(0), "Linear warm-up epochs before the cosine decay.", "Training", int,
           settings=True),
    Option("randaug_ops", 2, _int_at_least(0), "RandAugment ops per image.", "Training", int, settings=True),
    Option("randaug_magnitude", 9, _int_at_least(0), "RandAugment magnitude, 0-30 (torchvision's bins).", "Training",
           int, settings=True),
    Option("randaug_strength", "fixed", _choice(RANDAUG_STRENGTHS),
           "RandAugment strength: fixed (torchvision's: the magnitude's value with a random sign) or uniform (drawn "
           "in [-m, m]).", "Training", settings=True),
    Option("oversample_epoch", "subset", _choice(OVERSAMPLE_EPOCHS),
           "Images per epoch of os and drs: subset (the training subset's size, as every other method) or full "
           "(every class drawn as often as the largest: C x n_max).", "Training", settings=True,
           used_by=("os", "drs")),
    Option("pretrained", False, _flag, "Start from timm's weights (downloads) instead of from scratch.", "Training",
           bool, flag="--pretrained/--scratch", settings=True, shown_default="scratch"),
    Option("pretrained_file", None, _optional_path, "Start from a local timm-compatible checkpoint (offline).",
           "Training", Path, settings=True, shown_default="none"),
    # method hyper-parameters
    Option("sim_weight", 0.1, _float_in(0.0, math.inf, high_open=True),
           "Weight of fscl's similarity loss (the KCC authors' code; the paper's equation has 1)." + _SWEEP,
           "Method hyper-parameters", settings=True, used_by=("fscl",), sweepable=True),
    Option("stages", None, lambda v, n: parse_stages(v),
           "Stage indices the auxiliary losses tap, comma-separated (bench stages NAME).", "Method hyper-parameters",
           settings=True, used_by=_AUX, shown_default="last two"),
    Option("supcon_weight", 1.0, _float_in(0.0, math.inf, high_open=True),
           "Weight of the supervised contrastive loss (supcon)." + _SWEEP, "Method hyper-parameters", settings=True,
           used_by=("supcon",), sweepable=True),
    Option("bcl_weight", 0.3, _float_in(0.0, math.inf, high_open=True),
           "Weight of the balanced contrastive loss (bcl; Zhu et al.'s 0.6 over their CE weight 2)." + _SWEEP,
           "Method hyper-parameters", settings=True, used_by=("bcl",), sweepable=True),
    Option("triplet_weight", 1.0, _float_in(0.0, math.inf, high_open=True),
           "Weight of the batch-hard triplet loss (triplet)." + _SWEEP, "Method hyper-parameters", settings=True,
           used_by=("triplet",), sweepable=True),
    Option("supcon_temperature", 0.1, _float_in(0.0, math.inf, low_open=True, high_open=True),
           "Temperature of the supervised contrastive losses (supcon, bcl)." + _SWEEP, "Method hyper-parameters",
           settings=True, used_by=("supcon", "bcl"), sweepable=True),
    Option("triplet_margin", 0.2, _float_in(0.0, math.inf, high_open=True),
           "Margin of the batch-hard triplet loss (triplet)." + _SWEEP, "Method hyper-parameters", settings=True,
           used_by=("triplet",), sweepable=True),
    Option("cb_beta", 0.9999, _float_in(0.0, 1.0, high_open=True), "Class-balanced loss beta (cb)." + _SWEEP,
           "Method hyper-parameters", settings=True, used_by=("cb",), sweepable=True),
    Option("cb_gamma", 0.0, _float_in(0.0, math.inf, high_open=True),
           "Focal gamma of the class-balanced loss (--cb-kind focal)." + _SWEEP, "Method hyper-parameters",
           settings=True, used_by=("cb",), sweepable=True),
    Option("cb_kind", "softmax", _choice(CB_KINDS), "Class-balanced loss kind: softmax, sigmoid or focal.",
           "Method hyper-parameters", settings=True, used_by=("cb",)),
    Option("focal_gamma", 2.0, _float_in(0.0, math.inf, high_open=True), "Gamma of the focal loss (focal)." + _SWEEP,
           "Method hyper-parameters", settings=True, used_by=("focal",), sweepable=True),
    Option("ldam_max_margin", 0.5, _float_in(0.0, math.inf, high_open=True),
           "LDAM margin of the rarest class; the others scale as n_c^-1/4 (ldam)." + _SWEEP,
           "Method hyper-parameters", settings=True, used_by=("ldam",), sweepable=True),
    Option("ldam_scale", 30.0, _float_in(0.0, math.inf, low_open=True, high_open=True),
           "LDAM logit scale s (ldam)." + _SWEEP, "Method hyper-parameters", settings=True, used_by=("ldam",),
           sweepable=True),
    Option("drw_epoch", None, lambda v, n: None if v is None else _int_at_least(1)(v, n),
           "First epoch (1-based) of ldam's class-balanced re-weighting and of drs's oversampling." + _SWEEP,
           "Method hyper-parameters", settings=True, used_by=("ldam", "drs"),
           shown_default="floor(0.8 x epochs) + 1", sweepable=True),
    Option("la_tau", 1.0, _float_in(0.0, math.inf, high_open=True), "Logit-adjustment strength tau (la)." + _SWEEP,
           "Method hyper-parameters", settings=True, used_by=("la",), sweepable=True),
    # hardware: none of these changes which results count as finished
    Option("device", "auto", _device, "auto, cpu, cuda, cuda:N or mps.", "Hardware"),
    Option("amp", "auto", _choice(AMP_MODES),
           "Mixed precision: auto (bf16 on GPUs of compute capability 8.0+, off on older GPUs and the CPU), off, bf16 "
           "or fp16.", "Hardware", settings=True),
    Option("workers", None, _workers, "Data-loader worker processes.", "Hardware", int,
           shown_default="0 on <= 2 cores, else cores - 1"),
    Option("compile", False, _flag, "torch.compile the training forward (pays off on long GPU runs; ~1 min).",
           "Hardware", bool, flag="--compile/--no-compile"),
    # scale-out
    Option("executor", "local", _choice(EXECUTORS),
           "local (runs one after another in this process) or ray (a Ray task per run).", "Scale-out"),
    Option("ray_address", None, _optional_text, "With --executor ray: auto or HOST:PORT joins a cluster.",
           "Scale-out", shown_default="start a local instance"),
    Option("gpus_per_run", None, _gpus_per_run, "With --executor ray: GPUs per run; fractions pack runs (0.25).",
           "Scale-out", float, shown_default="1 if the cluster has GPUs, else 0"),
    Option("cpus_per_run", 1.0, _float_in(0.0, math.inf, low_open=True, high_open=True),
           "With --executor ray: CPUs per run; torch threads = whole CPUs.", "Scale-out", float),
    # output
    Option("checkpoint_minutes", 10.0, _minutes,
           "Save a run's training state after an epoch at most this often; a stopped run resumes from it (0: every "
           "epoch, inf: never).", "Output", float),
    Option("checkpoint_dir", None, _optional_path,
           "Keep checkpoints under DIR/<run id>/; with --executor ray a folder every node can write.", "Output", Path,
           shown_default="each run folder; none on Ray"),
)  # fmt: skip
OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
assert len(OPTIONS_BY_NAME) == len(OPTIONS)

#: The paper's protocol (KCC 2025) and the authors' code: the defaults for the user's own data.
PAPER_DEFAULTS: dict[str, Any] = {option.name: option.default for option in OPTIONS}
_PARSERS: dict[str, Callable[[Any, str], Any]] = {option.name: option.parse_value for option in OPTIONS}
#: The settings that change a run's numbers, in table order: the fields of :class:`TrainSettings`.
SETTINGS_KEYS: tuple[str, ...] = tuple(option.name for option in OPTIONS if option.settings)
#: The settings that take several values (a sweep), in table order; each is also in :data:`SETTINGS_KEYS`.
SWEEPABLE_KEYS: tuple[str, ...] = tuple(option.name for option in OPTIONS if option.sweepable)
assert set(SWEEPABLE_KEYS) <= set(SETTINGS_KEYS)


def method_uses(method: str, key: str) -> bool:
    """Whether a run of ``method`` (``"fscl+os"``) reads setting ``key``; an unused setting does not key the run."""
    used_by = OPTIONS_BY_NAME[key].used_by if key in OPTIONS_BY_NAME else None
    return used_by is None or bool(set(used_by) & set(method.split("+")))


#: Where a value came from, for the sources of the settings table: the command line, or the paper's protocol.
FLAG_SOURCE = "flag"
PAPER_SOURCE = "paper"


def _unknown_option(key: str, where: str) -> ConfigError:
    hint = difflib.get_close_matches(key, list(_PARSERS), n=1)
    also = f" (did you mean '{hint[0]}'?)" if hint else ""
    return ConfigError(f"{where}unknown option '{key}'{also}; valid: {', '.join(sorted(_PARSERS))}")


def resolve_layers(layers: Sequence[tuple[str, dict[str, Any]]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge ``(source, options)`` layers, lowest precedence first, over :data:`PAPER_DEFAULTS`; validate each value.

    Returns the values and, per option, its source: the layer's label (``"flag"``, a file's path, ``"data set default
    (cifar10)"``) or ``"paper"``. ``None`` in a layer means "not given" and never overrides a lower layer. A bad
    value from a file is reported with the file's path and its TOML key, from a flag with the flag.
    """
    merged, sources = dict(PAPER_DEFAULTS), dict.fromkeys(PAPER_DEFAULTS, PAPER_SOURCE)
    for source, layer in layers:
        for key, value in layer.items():
            if key not in _PARSERS:
                raise _unknown_option(key, "" if source == FLAG_SOURCE else f"{source}: ")
            if value is not None:
                merged[key], sources[key] = value, source
    resolved = {}
    for key, value in merged.items():
        from_file = sources[key] not in (FLAG_SOURCE, PAPER_SOURCE) and not sources[key].startswith("data set")
        name = key if from_file else OPTIONS_BY_NAME[key].flag_name
        try:
            resolved[key] = None if value is None else _PARSERS[key](value, name)
        except ConfigError as error:
            raise ConfigError(f"{sources[key]}: {error}" if from_file else str(error)) from None
    if resolved["warmup_epochs"] >= resolved["epochs"]:
        raise ConfigError(
            f"--warmup-epochs ({resolved['warmup_epochs']}) must be smaller than --epochs ({resolved['epochs']})"
        )
    return resolved, sources


def resolve_options(*layers: dict[str, Any]) -> dict[str, Any]:
    """:func:`resolve_layers` without sources: layers lowest precedence first, as if all were flags."""
    return resolve_layers([(FLAG_SOURCE, layer) for layer in layers])[0]


# ---------------------------------------------------------------------------------------------- config file


#: The file at an ImageFolder root that describes that data set: task presets and option values.
DATA_ROOT_FILE = "bench.toml"


@dataclass(frozen=True)
class FileConfig:
    """What a TOML file contributes: a data root, task presets and option values; ``label`` names it as a source."""

    label: str
    data: str | None
    tasks: dict[str, tuple[str, ...]]
    options: dict[str, Any]


def load_config_file(path: Path, *, label: str | None = None, data_root: Path | None = None) -> FileConfig:
    """Read a ``--config`` file, or with ``data_root`` the ``bench.toml`` at that data root: one reader, one set of
    rules for both.

    Keys: ``data = "root"`` (relative to the file; in a data-root file only the root itself), ``[tasks.NAME]
    classes = [majority, minority]`` (or more names, head first, for a long-tailed task) and any run option by its
    flag name with underscores (``epochs = 50``, ``ratios = [1, 0.1]``). Anything else: one-line ConfigError.
    ``label`` is how the file is named as a source of settings (default: its path).
    """
    label = label or str(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing TOML file to --config")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"cannot read config file {label}: {message}; fix the TOML syntax") from None
    data = table.pop("data", None)
    if data is not None:
        if not isinstance(data, str):
            raise ConfigError(f"{label}: 'data' must be a string (a folder, 'digits' or 'cifar10')")
        if data not in ("digits", "cifar10") and not Path(data).expanduser().is_absolute():
            data = str((path.parent / Path(data).expanduser()).resolve())
        if data_root is not None and data != str(data_root.expanduser().resolve()):
            raise ConfigError(
                f"{label}: 'data = {table_value(data)}' points away from the data set this file sits in; a "
                f"{DATA_ROOT_FILE} at a data root describes that root: remove 'data' (or pass the file with --config)"
            )
    tasks = parse_tasks_table(table.pop("tasks", {}), label)
    unknown = sorted(set(table) - set(_PARSERS))
    if unknown:
        hint = difflib.get_close_matches(unknown[0], list(_PARSERS), n=1)
        also = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(
            f"{label}: unknown key '{unknown[0]}'{also}; valid: data, tasks, {', '.join(sorted(_PARSERS))}"
        )
    return FileConfig(label=label, data=data, tasks=tasks, options=table)


def table_value(value: Any) -> str:
    """A value as TOML would spell it, for messages."""
    return f'"{value}"' if isinstance(value, str) else str(value)


def parse_tasks_table(tasks: Any, where: str) -> dict[str, tuple[str, ...]]:
    """``{"fine": {"classes": ["a", "b"]}}`` -> ``{"fine": ("a", "b")}`` with one-line errors naming ``where``.

    Two names are (majority, minority); more than two are a long-tailed task, head class first.
    """
    if not isinstance(tasks, dict):
        raise ConfigError(f"{where}: 'tasks' must be a table of [tasks.NAME] sections")
    parsed = {}
    for name, body in tasks.items():
        classes = body.get("classes") if isinstance(body, dict) else None
        extra = sorted(set(body) - {"classes"}) if isinstance(body, dict) else []
        if extra:
            raise ConfigError(
                f"{where}: [tasks.{name}] has an unknown key '{extra[0]}'; a task has only classes = [...]"
            )
        if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) and c for c in classes)):
            raise ConfigError(
                f'{where}: [tasks.{name}] needs classes = ["majority", "minority"] (two class names, or more for a '
                "long-tailed task, head first)"
            )
        if len(set(classes)) != len(classes):
            raise ConfigError(f"{where}: [tasks.{name}] names the same class twice")
        parsed[name] = tuple(classes)
    return parsed


# ---------------------------------------------------------------------------------------------- run and grid


def _settings_from_options(cls: type, options: dict[str, Any]) -> Any:
    return cls(**{key: options[key] for key in SETTINGS_KEYS})


#: Settings shared by every run of a grid that change its numbers (device and workers are not among them): one
#: frozen field per option of the table with ``settings=True``, in table order. ``from_options(resolved)`` builds it.
TrainSettings = make_dataclass(
    "TrainSettings",
    [(key, Any) for key in SETTINGS_KEYS],
    frozen=True,
    namespace={"from_options": classmethod(_settings_from_options)},
)
TrainSettings.__module__ = __name__  # so that pickle (Ray) finds it


def _default_drw_epoch(epochs: int) -> int:
    from losses.ldam import default_drw_epoch  # the loss defines its schedule; imported late (torch)

    return default_drw_epoch(epochs)


#: A run's swept settings, ``((key, value), ...)`` sorted by key: ``(("sim_weight", 0.3),)``; empty when none.
Sweep = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class RunConfig:
    """One cell of the grid: everything that determines one training run's result.

    ``sources`` (option -> where its value came from) and ``data_given`` (the data path as the user typed it) are
    recorded for people and never key a run: the data set is keyed by its fingerprint. ``sweep`` names the values of
    the grid's swept settings that this run's method reads (their values are in ``settings`` too, which holds one
    value per setting): it tells the run's folder and label apart from the other values'.
    """

    dataset: str
    data_fingerprint: str
    task: str
    classes: tuple[str, ...]  # (majority, minority), or C > 2 classes of a long-tailed task, head first
    backbone: str
    method: str
    ratio: float
    seed: int
    settings: Any  # TrainSettings
    sources: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    data_given: str = field(default="", compare=False)
    sweep: Sweep = ()

    @property
    def label(self) -> str:
        """The method with its swept values, as folders, progress lines and reports name it: ``fscl+os`` or
        ``fscl+os[sim_weight=0.3]`` (several joined by ``,``, numbers as ``:g``)."""
        if not self.sweep:
            return self.method
        return f"{self.method}[{','.join(f'{key}={format_value(value)}' for key, value in self.sweep)}]"

    @property
    def run_id(self) -> str:
        """Folder name of the run: task, backbone, method (with its swept values), ratio and seed, safe on every file
        system."""
        backbone = re.sub(r"[^A-Za-z0-9._+-]", "-", self.backbone)
        return f"{self.task}__{backbone}__{self.label}__r{self.ratio:g}__s{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """Every field and setting, JSON-friendly (what config.json and result.json record), ``sweep`` as ``{key:
        value}``; ``drw_epoch`` resolved for a method that uses it."""
        record = asdict(self)
        record.pop("sources")
        record.pop("data_given")
        record["classes"] = list(self.classes)
        record["sweep"] = dict(self.sweep)
        settings = record.pop("settings")
        if settings["stages"] is not None:
            settings["stages"] = list(settings["stages"])
        if settings["drw_epoch"] is None and method_uses(self.method, "drw_epoch"):
            settings["drw_epoch"] = _default_drw_epoch(settings["epochs"])  # the epoch the run switches at
        return {**record, **settings}

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run: :meth:`to_dict` without the settings its method does not read, without
        the data set's path (its fingerprint stays) and without ``sweep`` (the settings' values say it; results
        written before sweeps existed lack it)."""
        return {
            key: value
            for key, value in self.to_dict().items()
            if key not in ("dataset", "sweep") and (key not in OPTIONS_BY_NAME or method_uses(self.method, key))
        }


@dataclass(frozen=True)
class GridSpec:
    """The grid: tasks x backbones x ratios x methods (each x the values of the swept settings it reads) x seeds over
    one dataset.

    ``task_fingerprints`` keys each task's runs by the fingerprint of its own classes' images (ImageFolder data, see
    :meth:`bench.data.DatasetSource.fingerprint_of`); a task not listed there uses ``data_fingerprint``.

    ``settings`` holds one value per setting, or for a swept setting (:data:`SWEEPABLE_KEYS`) the tuple of its values.
    """

    dataset: str
    data_fingerprint: str
    tasks: tuple[tuple[str, tuple[str, ...]], ...]
    backbones: tuple[str, ...]
    methods: tuple[str, ...]
    ratios: tuple[float, ...]
    seeds: int
    settings: Any  # TrainSettings
    sources: tuple[tuple[str, str], ...] = ()
    data_given: str = ""
    task_fingerprints: tuple[tuple[tuple[str, ...], str], ...] = ()  # classes -> the fingerprint of their images

    def fingerprint_of(self, classes: tuple[str, ...]) -> str:
        """The data fingerprint that keys a task's runs: its classes' own (ImageFolder data), else the data set's."""
        return dict(self.task_fingerprints).get(classes, self.data_fingerprint)

    @property
    def sweeps(self) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        """The swept settings and their values, in table order: ``(("sim_weight", (0.1, 0.3)),)``."""
        return tuple(
            (key, getattr(self.settings, key))
            for key in SWEEPABLE_KEYS
            if isinstance(getattr(self.settings, key), tuple)
        )

    def variants(self, method: str) -> list[Sweep]:
        """The sweeps of one method: every combination of the values of the swept settings it reads, the last
        setting's values varying fastest; ``[()]`` when it reads none."""
        read = [(key, values) for key, values in self.sweeps if method_uses(method, key)]
        return [
            tuple(sorted(zip([key for key, _ in read], combination, strict=True)))
            for combination in itertools.product(*(values for _, values in read))
        ]

    def cells(self) -> list[RunConfig]:
        """All runs, seed-major, so an interrupted grid already has every cell at n = 1 before any at n = 2.

        A swept setting that a cell's method does not read keeps its first value there (it does not key the run).
        """
        plain = replace(self.settings, **{key: values[0] for key, values in self.sweeps})
        variants = {method: self.variants(method) for method in self.methods}
        return [
            RunConfig(
                self.dataset,
                self.fingerprint_of(classes),
                task,
                classes,
                backbone,
                method,
                ratio,
                seed,
                replace(plain, **dict(sweep)),
                self.sources,
                self.data_given,
                sweep,
            )  # fmt: skip
            for seed in range(self.seeds)
            for task, classes in self.tasks
            for backbone in self.backbones
            for ratio in self.ratios
            for method in self.methods
            for sweep in variants[method]
        ]
