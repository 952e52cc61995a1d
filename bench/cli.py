"""The ``bench`` command line: parse, validate, hand off. Heavy imports happen inside the commands so that
``bench --help`` is instant."""

from __future__ import annotations

import inspect
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import typer.core

from bench.config import OPTIONS, OPTIONS_BY_NAME, Option

#: Panels whose defaults are the paper's protocol (the lowest layer of settings), marked "paper:" in the help.
PROTOCOL_GROUPS = ("Grid", "Data and protocol", "Training", "Method hyper-parameters")

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (e.g. from a batch scheduler): stop like Ctrl-C does."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _split_class_pairs(argv: list[str]) -> list[str]:
    """``--classes a,b`` (or ``--classes=a,b``) as ``--classes a b``: the option takes two values, and a comma would
    otherwise make it swallow the next option."""
    fixed: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--classes" and index + 1 < len(argv) and "," in argv[index + 1]:
            fixed += [token, *argv[index + 1].split(",")]
            index += 2
            continue
        if token.startswith("--classes=") and "," in token:
            fixed += ["--classes", *token.split("=", 1)[1].split(",")]
        else:
            fixed.append(token)
        index += 1
    return fixed


class _OneLineErrors(typer.core.TyperGroup):
    """Typer's own usage errors (an unknown option, a value of the wrong type, ...) as one line and exit code 2,
    like the errors bench raises itself, instead of a multi-line box. ``bench`` alone still prints the help."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True,
             **extra: Any) -> Any:  # fmt: skip
        argv = args = _split_class_pairs(sys.argv[1:] if args is None else list(args))
        if not standalone_mode or not argv:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as error:  # typer's ClickException and its usage errors
            message = " ".join(str(error.format_message()).split()).rstrip(".")
            context = getattr(error, "ctx", None)
            hint = f"; see {context.command_path} --help" if context is not None else ""
            typer.echo(f"error: {one_line(message)}{hint}", err=True)
            sys.exit(getattr(error, "exit_code", EXIT_BAD_INPUT))
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Benchmark training methods for imbalanced, fine-grained image classification on timm backbones.",
)


_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")  # what str.splitlines splits on


def one_line(message: str) -> str:
    """``message`` on one line: line breaks (e.g. from a user's input echoed back) are shown escaped."""
    return "".join(c.encode("unicode_escape").decode() if c in _LINE_BREAKS else c for c in message)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print a one-line error to stderr and exit (2 = bad input)."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[Exception], ...]:
    from backbones import BackboneError
    from bench.config import ConfigError
    from bench.data import DataError

    return ConfigError, DataError, BackboneError


# ---------------------------------------------------------------------------------------------- bench run
# Its options come from bench.config.OPTIONS (each declared once: flag, TOML key, default, help, panel); only the
# parameters that are not settings of a run (what to read, where to write, --dry-run) are declared here.


def _escaped(text: str) -> str:
    """``[x]`` for rich markup, which would otherwise take it for a style tag and print nothing."""
    return text.replace("[", "\\[")


def _option_help(option: Option) -> str:
    """A table option's help with its default, marked ``paper:`` when the default is the paper's protocol."""
    source = "paper: " if option.group in PROTOCOL_GROUPS else ""
    return _escaped(f"{option.help} [{source}{option.default_text()}]")


def _option_parameter(option: Option) -> inspect.Parameter:
    """A keyword parameter of ``run`` for a table option: ``None`` unless given, so lower layers decide."""
    help_text = _option_help(option)
    declarations = [option.flag] if option.flag else [option.flag_name]
    metavar = "NUMBER[,NUMBER...]" if option.sweepable else None  # several values sweep it
    info = typer.Option(
        *declarations, help=help_text, rich_help_panel=option.group, show_default=False, metavar=metavar
    )
    return inspect.Parameter(
        option.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[option.kind | None, info]
    )


def _command_parameter(
    name: str, kind: Any, default: Any, panel: str, help_text: str, *flags: str
) -> inspect.Parameter:
    info = typer.Option(*flags, help=_escaped(help_text), rich_help_panel=panel, show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info])


_COMMAND_PARAMETERS = (
    _command_parameter("data", str | None, None, "Data and protocol",
                       "ImageFolder root (train/ and test|val|valid/ of class folders; its bench.toml is read), "
                       "'cifar10', or 'digits'. [digits]"),
    _command_parameter("config", Path | None, None, "Data and protocol",
                       "TOML file: data = ..., [tasks.NAME] classes = [...], and any option below by its name."),
    _command_parameter("task", str | None, None, "Grid",
                       "Task preset(s), comma-separated, e.g. fine,coarse; lt: every class long-tailed. [fine]"),
    _command_parameter("classes", tuple[str, str] | None, None, "Grid",
                       "A task by its two class names: MAJORITY MINORITY (or MAJORITY,MINORITY)."),
    _command_parameter("backbone", str | None, None, "Grid", "One timm model name (bench backbones). [resnet18]"),
    _command_parameter("out", Path | None, None, "Output",
                       "Output folder; re-running into it resumes. [runs/<timestamp>]"),
    _command_parameter("cache_dir", Path | None, None, "Output",
                       "Where downloaded data sets and decoded images go. [$BENCH_CACHE or ~/.cache/bench]"),
    _command_parameter("decode_cache", bool, True, "Output",
                       "Keep decoded ImageFolder images in CACHE_DIR/decoded and reuse them in later runs. [on]",
                       "--decode-cache/--no-decode-cache"),
    _command_parameter("dry_run", bool, False, "Output",
                       "Print the settings, the grid, what --out holds already and the estimated cost; train, write "
                       "nothing.", "--dry-run"),
    _command_parameter("parallel", int | None, None, "Output",
                       "With --dry-run: runs at once, for the wall time. [1; with ray, what fits here]"),
)  # fmt: skip


def run(**arguments: Any) -> None:
    """Train every cell of the grid (task x backbone x ratio x method x seed), then print the leaderboard."""
    from bench.config import parse_names
    from bench.session import run_session

    errors = _user_errors()
    backbone, parallel = arguments.pop("backbone"), arguments.pop("parallel")
    if backbone is not None and arguments["backbones"] is not None:
        fail("give --backbone or --backbones, not both")
    if parallel is not None and parallel < 1:
        fail(f"--parallel must be at least 1, got {parallel}")
    options = {option.name: arguments[option.name] for option in OPTIONS}
    options["backbones"] = options["backbones"] or backbone
    for name, value in options.items():
        if isinstance(value, Path):
            options[name] = str(value)
    out = arguments["out"] or Path("runs") / datetime.now().strftime("%Y-%m-%d_%H%M%S")
    previous_handler = signal.signal(signal.SIGTERM, _terminate)
    try:
        task_names = parse_names(arguments["task"], "--task") if arguments["task"] is not None else ()
        code = run_session(
            data=arguments["data"], config_path=arguments["config"], task_names=task_names,
            classes=arguments["classes"], options=options, out=out, cache_dir=arguments["cache_dir"],
            decode_cache=arguments["decode_cache"], dry_run=arguments["dry_run"], parallel=parallel,
        )  # fmt: skip
    except errors as error:
        fail(str(error))
    except KeyboardInterrupt as interrupt:
        code = EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
        fail(f"interrupted; finished runs are kept in {out}; run the same command with --out {out} to resume", code)
    except OSError as error:  # e.g. the disk filled up while a result was written
        fail(f"cannot write results: {error}; finished runs are kept in {out}; fix that and run the same command "
             f"with --out {out} to resume", EXIT_FAILED)  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    raise typer.Exit(code)


def _run_signature() -> inspect.Signature:
    """``run``'s parameters: the command's own, then the table's options, each in its help panel."""
    command = {p.name: p for p in _COMMAND_PARAMETERS}
    grid = [_option_parameter(o) for o in OPTIONS if o.group == "Grid"]
    rest = [_option_parameter(o) for o in OPTIONS if o.group != "Grid"]
    first = [command.pop(name) for name in ("task", "classes")]
    data = [command.pop(name) for name in ("backbone", "data", "config")]
    return inspect.Signature([*first, *grid, *data, *rest, *command.values()])


run.__signature__ = _run_signature()  # type: ignore[attr-defined]
app.command()(run)


@app.command()
def report(
    runs_dir: Annotated[Path, typer.Argument(help="A folder of run folders written by bench run.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write report.md, the CSV files and figures/. \\[RUNS_DIR]")
    ] = None,
    ensemble: Annotated[
        bool,
        typer.Option(
            "--ensemble/--no-ensemble",
            help="Add soft-voting rows: each method averaged across backbones, and all methods of one backbone.",
        ),
    ] = False,
    select_metric: Annotated[
        str | None,
        typer.Option(
            help="The validation metric a swept method's setting is chosen on, per ratio (mean over seeds): "
            "minority_acc, balanced_acc, macro_f1, ... Never a test metric. \\[minority_acc; long-tailed tasks: "
            "balanced_acc]",
        ),
    ] = None,
    posthoc: Annotated[
        str,
        typer.Option(
            help="Add <method>+posthoc rows: the saved test logits minus tau x log(training prior), tau chosen per "
            "run on its validation logits. 'all', 'none' or methods separated by commas (ce,os).",
        ),
    ] = "all",
    deploy_prior: Annotated[
        str | None,
        typer.Option(
            help="The class frequencies of deployment the deploy_* metrics are computed at: the minority's share P "
            "of a binary task (0.01), or name=share,... for every class. \\[each run's training prior]",
        ),
    ] = None,
    gallery: Annotated[
        bool,
        typer.Option(
            "--gallery/--no-gallery",
            help="Draw the gallery of minority test images the method chosen on validation gets wrong (it copies "
            "the images into figures/: leave it out for photographs that must not be passed on, e.g. with people).",
        ),
    ] = True,
    figure_sections: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Draw the figures of the first N sections (task x backbone, in report order; each takes seconds); "
            "the others say so. 0: no figures.",
        ),
    ] = 6,
) -> None:
    """Write report.md (settings, tables, paired comparisons, deployment and calibration, sweeps, figures),
    leaderboard.md/.csv, comparisons.csv and, for sweeps, sweeps.csv."""
    from reports import collect_runs, write_report
    from reports.deployment import parse_deploy_prior
    from reports.leaderboard import check_posthoc_methods, deploy_classes, parse_posthoc, prepare_runs
    from reports.selection import parse_select_metric

    if not runs_dir.is_dir():
        fail(f"{runs_dir} is not a folder; pass the --out folder of a bench run")
    if figure_sections < 0:
        fail(f"--figure-sections must be 0 or more, got {figure_sections}")
    try:
        chosen_on = parse_select_metric(select_metric) if select_metric is not None else None
    except ValueError as error:
        fail(f"--select-metric: {error}")
    try:
        posthoc_methods = parse_posthoc(posthoc)
    except ValueError as error:
        fail(f"--posthoc: {error}")
    collection = collect_runs(runs_dir)
    if not collection.records:  # checked before anything is written: an error leaves no files behind
        for warning in collection.warnings:
            typer.echo(f"warning: {warning}", err=True)
        fail(f"no finished runs found in {runs_dir}; pass the --out folder of a bench run")
    try:
        check_posthoc_methods(posthoc_methods, collection.records)
    except ValueError as error:
        fail(f"--posthoc: {error}")
    try:
        prior = None if deploy_prior is None else parse_deploy_prior(deploy_prior, deploy_classes(collection.records))
    except ValueError as error:
        fail(f"--deploy-prior: {error}")
    runs = prepare_runs(
        collection, ensemble=ensemble, select_metric=chosen_on, posthoc=posthoc_methods, deploy_prior=prior
    )
    try:
        files = write_report(
            runs_dir,
            out,
            progress=lambda what: typer.echo(f"drawing {what}", err=True),
            collection=runs,
            gallery=gallery,
            figure_sections=figure_sections,
        )
    except OSError as error:
        fail(f"cannot write the report: {error}")
    leaderboard = files.leaderboard
    for warning in leaderboard.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(leaderboard.markdown)
    sweeps = f", {leaderboard.sweeps_path}" if leaderboard.sweeps_path is not None else ""
    typer.echo(
        f"wrote {files.report_path} ({len(files.figures)} figures), {leaderboard.csv_path}{sweeps} and "
        f"{leaderboard.comparisons_path}",
        err=True,
    )


@app.command()
def doctor(
    data: Annotated[str | None, typer.Option(help="Data set: an ImageFolder root, 'cifar10' or 'digits'.")] = None,
    task: Annotated[str | None, typer.Option(help="Task preset(s) to check, comma-separated. \\[every preset]")] = None,
    classes: Annotated[
        tuple[str, str] | None,
        typer.Option(help="A task by its two class names: MAJORITY MINORITY.", show_default=False),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file as for bench run (data, tasks, options).")] = None,
    ratios: Annotated[str | None, typer.Option(help=_option_help(OPTIONS_BY_NAME["ratios"]))] = None,
    majority_count: Annotated[int | None, typer.Option(help=_option_help(OPTIONS_BY_NAME["majority_count"]))] = None,
    val_count: Annotated[int | None, typer.Option(help=_option_help(OPTIONS_BY_NAME["val_count"]))] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where downloaded data sets go.")] = None,
    near_threshold: Annotated[
        int,
        typer.Option(
            help="Bits (of 64) up to which a test image's difference hash may differ from a train image's for the two "
            "to count as near-duplicates.",
            min=0,
            max=16,
        ),
    ] = 6,
) -> None:
    """Check a data set before a long grid: unusable class folders, readable images, unreadable files, train/test
    duplicates and near-duplicates, image sizes, and what each ratio gives.

    Exit code 0 when nothing that changes results was found, 1 when something was (listed under problems).
    """
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from bench.config import parse_names
    from bench.doctor import check_task_classes, examine, render
    from bench.plan import plan_run

    options = {"ratios": ratios, "majority_count": majority_count, "val_count": val_count}
    try:
        task_names = parse_names(task, "--task") if task is not None else ()
        plan = plan_run(
            data=data, config_path=config, task_names=task_names, classes=classes, options=options,
            cache_dir=cache_dir, all_presets=True,
        )  # fmt: skip
        spec = plan.spec
        check_task_classes(plan.source, spec.tasks)  # before the progress display, which leaves a line behind
        with Progress(transient=True, console=Console(stderr=True)) as progress:
            bars: dict[str, TaskID] = {}

            def advance(what: str, done: int, total: int) -> None:
                if what not in bars:
                    bars[what] = progress.add_task(f"reading {what}", total=total)
                progress.update(bars[what], completed=done)

            report = examine(
                plan.source, spec.tasks, spec.ratios, spec.settings.majority_count, progress=advance,
                near_threshold=near_threshold, val_count=spec.settings.val_count,
            )  # fmt: skip
    except _user_errors() as error:
        fail(str(error))
    for line in render(report):
        typer.echo(line)
    raise typer.Exit(1 if report.problems else 0)


@app.command()
def speed(
    backbone: Annotated[str, typer.Option(help="A timm model name.")] = "resnet18",
    img_size: Annotated[str, typer.Option(help="Image sizes in pixels, comma-separated.")] = "32,64",
    batch_size: Annotated[int, typer.Option(help="Images per training step.", min=1)] = 64,
    workers: Annotated[str, typer.Option(help="Loader worker counts to time the input pipeline with. [0..cores]")] = "",
    steps: Annotated[
        int, typer.Option(help="Timed training steps of each kind, interleaved one by one (medians kept).", min=1)
    ] = 40,
    data: Annotated[
        str | None, typer.Option(help="An ImageFolder root: also time epochs on its files (cache vs torchvision).")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task preset whose two classes the epochs use. \\[fine]")] = None,
    classes: Annotated[
        tuple[str, str] | None,
        typer.Option(help="Or the epochs' two class names: MAJORITY MINORITY.", show_default=False),
    ] = None,
    per_class: Annotated[int, typer.Option(help="Training images per class in a timed epoch.", min=1)] = 1000,
    epoch_workers: Annotated[
        str,
        typer.Option(
            help="Loader worker counts for the timed epochs, comma-separated; the first also for the memory "
            "measurement. \\[as bench run]"
        ),
    ] = "",
    epoch_rounds: Annotated[
        int, typer.Option(help="Timed epochs of each kind, alternating (the median is kept).", min=1)
    ] = 3,
    memory_images: Annotated[
        int, typer.Option(help="With --data: peak memory of training over this many cached images (0: skip).", min=0)
    ] = 0,
    memory_size: Annotated[int, typer.Option(help="Image size of the memory measurement.", min=8)] = 224,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda[:N] | mps.")] = "auto",
    amp: Annotated[str, typer.Option(help="auto | off | bf16 | fp16.")] = "auto",
    compile_model: Annotated[
        bool, typer.Option("--compile/--no-compile", help="torch.compile every timed model (minimal and harness).")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures to this JSON file.")] = None,
) -> None:
    """Time the training step (minimal vs harness, CE vs CE + fscl), the input pipeline and, with --data, an epoch
    with and without the decode cache against a torchvision ImageFolder loop; print the figures and ratios."""
    import json
    import os

    from bench.config import ConfigError, parse_names
    from bench.data import resolve_workers
    from bench.device import resolve_device
    from bench.plan import plan_run

    try:
        sizes = [int(v) for v in img_size.split(",")]
        counts = [int(v) for v in workers.split(",")] if workers else list(range(min(os.cpu_count() or 1, 4) + 1))
        epoch_counts = [int(v) for v in epoch_workers.split(",")] if epoch_workers else [resolve_workers(None)]
    except ValueError:
        fail(
            f"--img-size, --workers and --epoch-workers take comma-separated whole numbers, got '{img_size}', "
            f"'{workers}' and '{epoch_workers}'"
        )
    if min(sizes) < 8 or min(counts + epoch_counts) < 0:
        fail("--img-size values must be at least 8 and --workers and --epoch-workers values at least 0")
    try:
        if amp not in ("auto", "off", "bf16", "fp16"):
            raise ConfigError(f"--amp must be one of auto, off, bf16, fp16, got '{amp}'")
        setup = resolve_device(device, amp, compile=compile_model)
        from backbones import describe_stages

        describe_stages(backbone)  # an unknown name is an error before anything is timed
        source, pair = None, None
        if data is not None:
            plan = plan_run(
                data=data, config_path=None, classes=classes, options={"backbones": backbone},
                task_names=parse_names(task, "--task") if task else (),
            )  # fmt: skip
            source, pair = plan.source, plan.spec.tasks[0][1]
            if source.train.paths is None:
                raise ConfigError(f"--data {data} is held in memory, not files; epochs need an ImageFolder root")
        from bench.speed import render, run_speed

        report = run_speed(
            backbone=backbone, img_sizes=sizes, batch_size=batch_size, setup=setup, workers=counts, steps=steps,
            source=source, classes=pair, per_class=per_class,
            epoch_workers=epoch_counts, epoch_rounds=epoch_rounds, memory_images=memory_images, memory_size=memory_size,
            progress=lambda what: typer.echo(what, err=True),
        )  # fmt: skip
    except _user_errors() as error:
        fail(str(error))
    typer.echo("\n".join(render(report)))
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        typer.echo(f"wrote {json_out}", err=True)


@app.command("cache")
def cache(
    cache_dir: Annotated[
        Path | None, typer.Option(help="The cache folder bench run used. [$BENCH_CACHE or ~/.cache/bench]")
    ] = None,
    unused: Annotated[
        float | None, typer.Option(help="Remove entries no run has read for this many days.", min=0)
    ] = None,
    orphaned: Annotated[
        bool, typer.Option("--orphaned", help="Remove entries whose image folder no longer exists.")
    ] = False,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove every decoded entry and every kept class-folder index.")
    ] = False,
) -> None:
    """List the decode cache (split folder, class, size, images, disk, last use) and the kept index of class folders,
    and remove entries that are no longer wanted; temporary folders left by killed builders are removed whenever
    something is removed. --orphaned and --clear remove index records too (of gone folders, or all)."""
    import time

    from bench.data import default_cache_dir
    from bench.data.cache_admin import remove_entries, remove_leftovers, render_listing, scan, select_for_removal
    from bench.data.index import kept_records, remove_records

    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if cache_dir is not None and not folder.is_dir():
        fail(f"--cache-dir {folder} is not a folder; give the folder bench run used")
    entries, leftovers = scan(folder)
    records = kept_records(folder)
    now = time.time()
    mib = 2**20
    if clear or unused is not None or orphaned:
        chosen = select_for_removal(entries, everything=clear, unused_days=unused, orphaned=orphaned, now=now)
        stale = [record for record in records if clear or (orphaned and record.orphaned)]
        try:
            freed = remove_entries(chosen) + remove_leftovers(leftovers, now) + remove_records(stale)
        except OSError as error:
            fail(f"cannot remove from {folder}: {error.strerror or error}; check its permissions")
        left = len(entries) - len(chosen)
        typer.echo(f"removed {len(chosen)} entries and {len(stale)} index records and freed {freed / mib:.1f} MiB; "
                   f"{left} entries left in {folder}")  # fmt: skip
        return
    typer.echo("\n".join(render_listing(folder, entries, leftovers, now)))
    if records:
        gone = sum(record.orphaned for record in records)
        typer.echo(f"index of {len(records)} class folders in {folder}/index, "
                   f"{sum(r.bytes for r in records) / mib:.1f} MiB, {gone} of them gone")  # fmt: skip


@app.command()
def crops(
    detections: Annotated[
        Path, typer.Argument(help="MegaDetector batch-output JSON, format 1.x (MegaDetector, SpeciesNet, AddaxAI).")
    ],
    images: Annotated[Path, typer.Option(help="The folder the detections' 'file' paths are relative to.")],
    out: Annotated[
        Path, typer.Option(help="Where to write the crops data set: a new folder, or one this command made.")
    ],
    labels: Annotated[
        Path | None,
        typer.Option(help="CSV with columns file,label and optionally location,datetime,sequence. \\[first folder]"),
    ] = None,
    min_conf: Annotated[float, typer.Option(help="Lowest detection confidence kept (0..1).")] = 0.2,
    categories: Annotated[str, typer.Option(help="Detection category names kept, comma-separated.")] = "animal",
    per_image: Annotated[str, typer.Option(help="all: every kept box of an image; top: its most confident.")] = "all",
    square: Annotated[
        bool, typer.Option("--square/--no-square", help="Grow each box to a square around its centre.")
    ] = True,
    margin: Annotated[float, typer.Option(help="Context added on each edge, as a fraction of the box side.")] = 0.1,
    min_size: Annotated[int, typer.Option(help="Boxes shorter than this many pixels on a side are dropped.")] = 32,
    test_fraction: Annotated[float, typer.Option(help="Share of each class's crops that go to test.")] = 0.2,
    group: Annotated[
        str | None,
        typer.Option(
            help="What stays on one side of the split: location, sequence or none (by image; can leak). "
            "\\[location when --labels has locations, else sequence]"
        ),
    ] = None,
    burst_seconds: Annotated[
        float, typer.Option(help="Frames of one folder this close in time form one sequence (no CSV sequence).")
    ] = 60.0,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
) -> None:
    """Cut detector boxes into an ImageFolder (OUT/train, OUT/test, crops.csv, bench.toml) with a train/test split
    by location or sequence, and print counts: images, failures, detections kept and dropped by reason, crops per
    class and split. bench reads a detector's output; it does not run one."""
    from rich.console import Console
    from rich.progress import Progress

    from bench.config import parse_names
    from bench.crops.dataset import CropSettings, render_summary, write_crops
    from bench.crops.detections import DetectionsFormatError

    try:
        settings = CropSettings(
            detections=str(detections.expanduser().resolve()), images=str(images.expanduser().resolve()),
            labels=str(labels.expanduser().resolve()) if labels else None, min_conf=min_conf,
            categories=parse_names(categories, "--categories"), per_image=per_image, square=square, margin=margin,
            min_size=min_size, test_fraction=test_fraction, group=group, burst_seconds=burst_seconds, seed=seed,
        )  # fmt: skip
        with Progress(transient=True, console=Console(stderr=True)) as progress:
            bar = progress.add_task("cropping source images", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(bar, completed=done, total=total)

            summary = write_crops(settings, out.expanduser().resolve(), progress=advance)
    except DetectionsFormatError as error:
        for problem in error.problems:
            typer.echo(f"error: {one_line(problem)}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except _user_errors() as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write the crops to {out}: {error.strerror or error}; check the folder and free space")
    for line in render_summary(summary):
        typer.echo(line)


@app.command("methods")
def list_methods() -> None:
    """List the method components; combine them with + (e.g. fscl+os, cb+fscl)."""
    from bench.method_names import METHOD_DESCRIPTIONS, components

    for name in components():
        typer.echo(f"{name:7} {METHOD_DESCRIPTIONS.get(name, '')}")


@app.command("backbones")
def list_backbones(
    pattern: Annotated[str, typer.Argument(help="A wildcard filter, e.g. 'resnet*' or '*vit_tiny*'.")] = "*",
) -> None:
    """List the timm model names that --backbone accepts."""
    from backbones import list_backbones as names
    from backbones.factory import suggest_backbones

    found = names(pattern)
    if not found:
        fail(f"no timm model matches '{pattern}'; {suggest_backbones(pattern)}")
    typer.echo("\n".join(found))


@app.command("stages")
def list_stages(name: Annotated[str, typer.Argument(help="A timm model name.")] = "resnet18") -> None:
    """List a backbone's stages (index, module, channels, stride) for --stages."""
    from backbones import describe_stages

    try:
        rows = describe_stages(name)
    except _user_errors() as error:
        fail(str(error))
    default = {index for index, *_ in rows[-2:]}
    for index, module, channels, reduction in rows:
        mark = "  (default tap)" if index in default else ""
        typer.echo(f"{index:3}  {module:20} {channels:5} channels  stride {reduction}{mark}")


@app.command("tasks")
def list_tasks(
    data: Annotated[str | None, typer.Option(help="Data set: a folder, 'cifar10' or 'digits' (default).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where downloaded data sets go.")] = None,
) -> None:
    """List a data set's task presets, classes and image counts per split."""
    from bench.data import open_source

    try:
        source = open_source(data, cache_dir=cache_dir)
    except _user_errors() as error:
        fail(str(error))
    from bench.data.feasibility import left_out_note
    from bench.wording import join_and, plural

    unusable = source.unusable
    left_out = f" ({plural(len(unusable), 'class folder')} left out: {', '.join(unusable)})" if unusable else ""
    typer.echo(f"data set {source.name}: {plural(len(source.classes), 'class')}{left_out}")
    for name, names in source.tasks.items():
        bad = [c for c in names if c in unusable]
        mark = f"  [unusable: {join_and(bad)}; bench run refuses it]" if bad else ""
        what = f"majority {names[0]}, minority {names[1]}" if len(names) == 2 else f"head to tail: {', '.join(names)}"
        typer.echo(f"  task {name}: {what}{mark}")
    if len(source.classes) >= 3 and "lt" not in source.tasks:
        order = ", ".join(source.classes)
        note = left_out_note(source, source.classes)
        typer.echo(f"  task lt: all {plural(len(source.classes), 'class')} long-tailed, head to tail: {order}"
                   f"{f'; {note}' if note else ''}")  # fmt: skip
    for split_name, split in (("train", source.train), (source.test_split, source.test)):
        counts = ", ".join(f"{c} {len(split.indices_of(c))}" for c in split.classes)
        typer.echo(f"  {split_name}: {counts or 'no usable class'}")
    for name, reason in unusable.items():
        typer.echo(f"  unusable class {name}: {reason}")
