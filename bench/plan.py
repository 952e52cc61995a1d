"""Turn what the user asked for (flags, a config file, a data set's presets) into a validated grid."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import (
    DATA_ROOT_FILE,
    FLAG_SOURCE,
    OPTIONS,
    OPTIONS_BY_NAME,
    PAPER_SOURCE,
    ConfigError,
    FileConfig,
    GridSpec,
    TrainSettings,
    format_value,
    load_config_file,
    method_uses,
    resolve_layers,
)
from bench.data import BUILTIN_SOURCES, DatasetSource, open_source
from bench.method_names import parse_methods

#: Settings the table at the start of a run always shows: the protocol's scale.
ALWAYS_SHOWN = (
    "ratios", "methods", "backbones", "seeds", "img_size", "majority_count", "val_count", "epochs", "batch_size"
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """A grid ready to run, with the run-time options that do not change results."""

    spec: GridSpec
    source: DatasetSource
    device: str
    workers: int | None
    compile: bool = False
    executor: str = "local"  # local (in this process) or ray
    ray_address: str | None = None  # None: start a local Ray instance; auto or HOST:PORT: join a cluster
    gpus_per_run: float | None = None  # None: 1 when the Ray cluster has GPUs, else 0
    cpus_per_run: float = 1.0
    checkpoint_minutes: float = 10.0  # least time between two checkpoints of a run; inf: never
    checkpoint_dir: str | None = None  # None: in each run folder (local executor); Ray needs shared storage
    options: dict[str, Any] = field(default_factory=dict)  # every option's resolved value
    sources: dict[str, str] = field(default_factory=dict)  # every option's source (bench.config.resolve_layers)

    def settings_rows(self) -> list[tuple[str, str, str]]:
        """(setting, value, source) of the settings that matter for this grid: the protocol's main ones, and any
        set anywhere or differing from the paper's value that a method of the grid reads; in table order."""
        methods = self.spec.methods
        rows = []
        for option in OPTIONS:
            value = self.options.get(option.name, option.default)
            source = self.sources.get(option.name, PAPER_SOURCE)
            shown = option.name in ALWAYS_SHOWN or source != PAPER_SOURCE or value != option.default
            if shown and any(method_uses(method, option.name) for method in methods):
                rows.append((option.name, format_value(value), source))
        return rows


#: The task name that means "every class of the data set, long-tailed" when no preset of that name exists.
LONG_TAIL_TASK = "lt"


def _long_tail_task(source_classes: tuple[str, ...], where: str) -> tuple[str, ...]:
    """The classes of ``--task lt`` without a preset: all of the data set's, in its sorted order (head first)."""
    if len(source_classes) < 3:
        raise ConfigError(
            f"--task {LONG_TAIL_TASK} needs a data set with at least 3 classes; {where} has {len(source_classes)}"
        )
    return tuple(source_classes)


def _resolve_tasks(
    task_names: tuple[str, ...],
    classes: tuple[str, str] | None,
    presets: dict[str, tuple[str, ...]],
    where: str,
    source_classes: tuple[str, ...] = (),
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if classes is not None:
        if classes[0] == classes[1]:
            raise ConfigError(f"--classes names '{classes[0]}' twice; give the majority class, then the minority class")
        if len(task_names) > 1:
            raise ConfigError("--classes defines one task; give at most one --task name with it")
        name = task_names[0] if task_names else f"{classes[0]}-vs-{classes[1]}"
        return ((name, classes),)
    if not task_names:
        if "fine" not in presets:
            raise ConfigError(f"{where} has no task presets; name the classes with --classes MAJORITY MINORITY")
        task_names = ("fine",)
    tasks = []
    for name in task_names:
        if name == LONG_TAIL_TASK and name not in presets:
            tasks.append((name, _long_tail_task(source_classes, where)))
            continue
        if name not in presets:
            close = difflib.get_close_matches(name, list(presets), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(presets) or "none"
            raise ConfigError(
                f"unknown task '{name}'{hint} for {where}; presets: {known}; or use --classes MAJORITY MINORITY"
            )
        tasks.append((name, presets[name]))
    return tuple(tasks)


def _used_classes(
    task_names: tuple[str, ...],
    classes: tuple[str, str] | None,
    presets: dict[str, tuple[str, ...]],
    all_presets: bool,
) -> tuple[str, ...] | None:
    """The class folders the tasks name (as :func:`_resolve_tasks` will resolve them), or None for every class: a
    task takes them all (``lt`` without a preset), or ``all_presets`` without task names (a check of the whole data
    set). A task name that is not a preset adds nothing: :func:`_resolve_tasks` reports it."""
    if classes is not None:
        return tuple(classes)
    if all_presets and not task_names:  # a check of the whole data set (bench doctor): every class folder
        return None
    if any(name == LONG_TAIL_TASK and name not in presets for name in task_names):
        return None
    chosen = [presets[name] for name in task_names or ("fine",) if name in presets]
    return tuple(dict.fromkeys(name for names in chosen for name in names))  # none: the tasks are an error


def check_sweeps(spec: GridSpec, sources: dict[str, str]) -> None:
    """A setting given several values must be read by a method of the grid: else its sweep multiplies nothing and
    was surely meant for a method left out (one-line ConfigError)."""
    methods = spec.methods
    for key, values in spec.sweeps:
        if any(method_uses(method, key) for method in methods):
            continue
        option = OPTIONS_BY_NAME[key]
        source = sources.get(key, FLAG_SOURCE)
        if source == FLAG_SOURCE:
            given = f"{option.flag_name} {format_value(values)}"
        else:  # a config file (or a data set's defaults): its TOML key and list
            given = f"{source}: {key} = [{', '.join(format_value(value) for value in values)}]"
        readers = " or ".join(option.used_by or ())
        raise ConfigError(
            f"{given} sweeps a setting that none of the methods {', '.join(methods)} reads; add {readers} to --methods "
            "or give one value"
        )


def data_root_file(data: str | None) -> FileConfig | None:
    """The ``bench.toml`` at an ImageFolder root, read as a layer of settings (None for a built-in data set or a root
    without one); named ``ROOT/bench.toml`` with the root as the user wrote it."""
    if data is None or str(data) in BUILTIN_SOURCES:
        return None
    root = Path(data).expanduser()
    path = root / DATA_ROOT_FILE
    if not path.is_file():
        return None
    return load_config_file(path, label=str(Path(data) / DATA_ROOT_FILE), data_root=root)


def dataset_key(data: str | None, source: DatasetSource) -> str:
    """How runs name their data set: a built-in's name, or a folder's resolved absolute path, so ``wildlife``,
    ``wildlife/`` and ``../x/wildlife`` are one data set in a report (runs themselves are keyed by the fingerprint)."""
    if data is None or str(data) in BUILTIN_SOURCES:
        return source.name
    return str(Path(data).expanduser().resolve())


def plan_run(
    *,
    data: str | None,
    config_path: Path | None,
    task_names: tuple[str, ...],
    classes: tuple[str, str] | None,
    options: dict[str, Any],
    cache_dir: Path | None = None,
    all_presets: bool = False,
) -> Plan:
    """Resolve data, tasks and options: flag > ``--config`` file > the data root's ``bench.toml`` > the data set's
    defaults > the paper's values, remembering where each value came from.

    Without task names or classes the grid has the ``fine`` preset, or with ``all_presets`` every preset (possibly
    none).
    """
    file = load_config_file(config_path) if config_path is not None else None
    data = data if data is not None else (file.data if file else None)
    root_file = data_root_file(data)
    files = [f for f in (root_file, file) if f is not None]
    builtin = data is None or str(data) in BUILTIN_SOURCES
    source = open_source(data, cache_dir=cache_dir) if builtin else None
    presets = dict(source.tasks) if source is not None else {}  # a folder's own presets are in its root file
    for layer in files:
        presets.update(layer.tasks)
    if source is None:  # index only the class folders the tasks use
        source = open_source(
            data, cache_dir=cache_dir, classes=_used_classes(task_names, classes, presets, all_presets)
        )
    resolved, sources = resolve_layers(
        [
            (f"data set default ({source.defaults_from or source.name})", source.defaults),
            *((layer.label, layer.options) for layer in files),
            (FLAG_SOURCE, options),
        ]
    )
    parse_methods(resolved["methods"])
    if all_presets and not task_names and classes is None:
        tasks = tuple(presets.items())
    else:
        tasks = _resolve_tasks(task_names, classes, presets, f"data set '{source.name}'", source.classes)
    spec = GridSpec(
        dataset=dataset_key(data, source),
        data_fingerprint=source.fingerprint,
        tasks=tasks,
        backbones=resolved["backbones"],
        methods=resolved["methods"],
        ratios=resolved["ratios"],
        seeds=resolved["seeds"],
        settings=TrainSettings.from_options(resolved),
        sources=tuple(sources.items()),
        data_given=str(data) if data is not None else source.name,
        task_fingerprints=tuple((task_classes, source.fingerprint_of(task_classes)) for _, task_classes in tasks),
    )
    check_sweeps(spec, sources)
    return Plan(
        spec=spec,
        source=source,
        device=resolved["device"],
        workers=resolved["workers"],
        compile=resolved["compile"],
        executor=resolved["executor"],
        ray_address=resolved["ray_address"],
        gpus_per_run=resolved["gpus_per_run"],
        cpus_per_run=resolved["cpus_per_run"],
        checkpoint_minutes=resolved["checkpoint_minutes"],
        checkpoint_dir=resolved["checkpoint_dir"],
        options=resolved,
        sources=sources,
    )
