"""``report.md``: the leaderboard tables with the settings and the figures, written next to the CSV files.

Layout of the output folder::

    report.md              tables + pictures, reads on GitHub
    leaderboard.md/.csv    the tables alone (one CSV row per task x backbone x method x ratio)
    comparisons.csv        paired differences against ce and os
    sweeps.csv             swept settings per method and ratio: validation and test means, the one chosen
    figures/<task>__<backbone>/
        accuracy_vs_ratio.png        minority-class accuracy (long-tailed tasks: balanced accuracy) against the ratio
        separation_vs_ratio.png      feature separation (silhouette) against the ratio
        training_curves_r<ratio>.png loss terms and train accuracy per epoch, one column per method
        feature_space_r<ratio>_s<seed>.png  PCA of one seed's test features, one panel per method
        confusion_r<ratio>.png       test confusion per method, mean row rates over seeds
        reliability_r<ratio>.png     reliability per method, seeds pooled, with the ECE
        gallery_r<ratio>.png         two-class tasks: minority test images the method chosen on validation gets wrong
        .figures.json                what the section's figures were drawn from: the next report reuses them
    sweeps.csv             a sweep's candidates with their validation and test means (when something was swept)

A report over more than :data:`MAX_FIGURE_SECTIONS` sections draws the figures of the first ones only, and it starts
with a table of contents. The runs folder keeps the post-hoc rows in ``.bench-report/`` (:mod:`reports.posthoc_cache`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.config import OPTIONS_BY_NAME, format_value, method_uses
from bench.results import legacy_value
from reports.checks import UNKNOWN_HARDWARE
from reports.collect import Collection, RunRecord, collect_runs
from reports.figures import section_figures
from reports.formatting import md_escape
from reports.leaderboard import (
    DEFAULT_METRICS,
    LeaderboardFiles,
    ReportRuns,
    as_report_runs,
    base_method,
    prepare_runs,
    prior_text,
    render_markdown,
    write_leaderboard,
)
from reports.selection import value_sort_key
from reports.statistics import DEFAULT_CONFIDENCE

REPORT_FILE = "report.md"
FIGURES_DIR = "figures"
#: The figures of at most this many sections are drawn (the first in report order): each section's take seconds per
#: figure, and a report over hundreds of sections is read by its tables. The others get :data:`FIGURES_CAPPED`.
MAX_FIGURE_SECTIONS = 6
FIGURES_CAPPED = (
    "No figures for this section: a report over {sections} sections draws the figures of the first {cap} only "
    "(seconds per figure); `bench report --figure-sections N` draws more."
)
#: In each section's figure folder: what its figures were drawn from and the Markdown that embeds them, so that the
#: next report reuses them while the section's runs are unchanged. Bump the version when a figure changes.
FIGURES_STAMP = ".figures.json"
FIGURES_VERSION = 1
_FIGURE_INPUTS = ("result.json", "metrics.jsonl", "test_outputs.npz")
#: Settings shown in the report's settings table, in this order (from each result's "config"). A setting that only
#: some methods read (the option table's ``used_by``: a loss's weight, a sampler's epoch) is shown only when a run's
#: method reads it.
SETTING_KEYS: tuple[str, ...] = (
    "dataset",
    "epochs",
    "img_size",
    "majority_count",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_epochs",
    "randaug_ops",
    "randaug_magnitude",
    "randaug_strength",
    "pretrained",
    "oversample_epoch",
    "stages",
    "sim_weight",
    "supcon_weight",
    "bcl_weight",
    "triplet_weight",
    "supcon_temperature",
    "triplet_margin",
    "cb_beta",
    "cb_gamma",
    "cb_kind",
    "focal_gamma",
    "ldam_max_margin",
    "ldam_scale",
    "drw_epoch",
    "la_tau",
)
#: A settings row whose option goes by another name in a run's ``sources`` (the precision follows --amp).
SOURCE_KEYS: dict[str, str] = {"dataset": "data", "precision": "amp"}
NO_SOURCE = "-"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote."""

    report_path: Path
    figures: list[Path]
    leaderboard: LeaderboardFiles


def safe_name(text: str) -> str:
    """A file-name-safe version of a task or backbone name (``hf-hub:timm/x`` -> ``hf-hub_timm_x``)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "_"


def _distinct(values: list[object]) -> str:
    shown = list(dict.fromkeys("default" if v is None else str(v) for v in values))
    return ", ".join(shown) if shown else "—"


def _sources(records: Sequence[RunRecord], key: str) -> str:
    """Where ``key``'s value came from, as recorded by the runs (distinct values listed); ``-`` where not recorded."""
    alias = SOURCE_KEYS.get(key, key)
    found = [r.sources[key] if key in r.sources else r.sources.get(alias, NO_SOURCE) for r in records]
    return ", ".join(dict.fromkeys(found)) if found else NO_SOURCE


def _method_specific(key: str) -> bool:
    """Whether only some methods read ``key`` (the option table's ``used_by``)."""
    return key in OPTIONS_BY_NAME and OPTIONS_BY_NAME[key].used_by is not None


def _value(record: RunRecord, key: str) -> object:
    """A run's value of setting ``key``: its swept value, its config's, or the one bench used before the setting
    existed (:func:`bench.results.legacy_value`)."""
    if record.variant:
        swept = dict(record.variant)
        if key in swept:
            return swept[key]
    return record.config[key] if key in record.config else legacy_value(key, record.config)


def _swept(values: list[object]) -> str:
    """A swept setting's values in sorted order (numbers by value), marked as swept."""
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    ordered = sorted(distinct, key=value_sort_key)
    return f"{', '.join(format_value(v) for v in ordered)} (swept)"


def settings_table(records: Sequence[RunRecord], extra: Sequence[tuple[str, str, str]] = ()) -> list[str]:
    """A Markdown table of the runs' settings and where each came from (several values are listed when runs differ;
    ``-`` for runs that did not record the source), devices, precision, wall time, then the ``extra`` rows (setting,
    value, source). Give it the runs that trained: no ensemble or post-hoc rows.

    A setting only some methods read is shown when some run's method reads it; another setting when some run recorded
    it. A run written before a setting existed shows the value bench used then (:func:`bench.results.legacy_value`).
    A swept setting (a run's ``sweep``) lists its values in order, marked ``(swept)``.
    """
    swept = {key for r in records for key, _ in r.variant}
    rows: list[tuple[str, str, str]] = []
    methods = {r.method for r in records}
    for key in SETTING_KEYS:
        reading = {m for m in methods if method_uses(base_method(m), key)}
        users = [r for r in records if r.method in reading]
        if _method_specific(key) or key in swept or any(key in r.config for r in users):
            having = [r for r in users if key in r.config or key in OPTIONS_BY_NAME]  # "dataset" is no option
            values = [_value(r, key) for r in having]
            rows.append((key, _swept(values) if key in swept else _distinct(values), _sources(having, key)))
    for key in sorted(swept - set(SETTING_KEYS)):  # a sweepable option the table does not list otherwise
        rows.append((key, _swept([v for r in records for k, v in r.variant if k == key]), _sources(records, key)))
    rows = [row for row in rows if row[1] != "—"]
    seeds = sorted({r.seed for r in records})
    rows.append(("seeds", f"{len(seeds)} ({', '.join(str(s) for s in seeds)})", _sources(records, "seeds")))
    with_device = [r for r in records if r.device]
    rows.append(("device", _distinct([r.device for r in with_device]), _sources(with_device, "device")))
    precisions = [r.hardware.get("precision") or UNKNOWN_HARDWARE for r in records]
    rows.append(("precision", _distinct(precisions), _sources(records, "precision")))
    wall = sum(r.wall_seconds for r in records if r.wall_seconds is not None)
    rows.append(("training time, summed over runs", f"{wall / 3600:.2f} h ({len(records)} runs)", NO_SOURCE))
    rows += extra
    lines = [f"| {key} | {md_escape(value)} | {md_escape(source)} |" for key, value, source in rows]
    return ["| setting | value | source |", "|:---|:---|:---|", *lines, ""]


def _report_settings(runs: ReportRuns) -> list[tuple[str, str, str]]:
    """The settings rows of the report itself: the deploy prior, and what sweeps were chosen on."""
    deployed = any(name.startswith("test_deploy_") for r in runs.collection.records for name in r.metrics)
    source = "--deploy-prior" if runs.deploy_prior else NO_SOURCE
    rows = [("deploy prior", prior_text(runs.deploy_prior), source)] if deployed else []
    chosen_on = sorted({c.val_metric for c in runs.choices})
    if chosen_on:
        rows.append(("sweeps chosen on", f"mean {', '.join(chosen_on)} over seeds", NO_SOURCE))
    return rows


def _figures_key(section: Sequence[RunRecord], classes: Sequence[str], gallery: bool) -> str:
    """A digest of everything a section's figures are drawn from: its rows (values as shown), the size and
    modification time of the files the figures read, the classes and the gallery switch."""
    digest = hashlib.sha256(f"{FIGURES_VERSION}|{list(classes)}|{gallery}".encode())
    for r in section:
        files = []
        for name in _FIGURE_INPUTS:
            try:
                stat = os.stat(r.folder / name)
                files.append((stat.st_size, stat.st_mtime_ns))
            except OSError:
                files.append(None)
        row = (str(r.path), r.dataset, r.method, r.variant, r.ratio, r.seed, r.status, r.classes, r.members)
        digest.update(repr((row, sorted(r.metrics.items()), files)).encode())
    return digest.hexdigest()


def _reused_figures(folder: Path, key: str) -> list[str] | None:
    """The Markdown of the section's figures drawn by an earlier report from the same inputs, when all its files are
    still there; None otherwise."""
    try:
        stamp = json.loads((folder / FIGURES_STAMP).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("key") != key or not isinstance(stamp.get("lines"), list):
        return None
    files = stamp.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) and (folder / f).is_file() for f in files):
        return None
    return [str(line) for line in stamp["lines"]]


def _stamp_figures(folder: Path, key: str, lines: Sequence[str]) -> None:
    if folder.is_dir():
        files = sorted(p.name for p in folder.glob("*.png"))
        stamp = {"key": key, "lines": list(lines), "files": files}
        (folder / FIGURES_STAMP).write_text(json.dumps(stamp), encoding="utf-8")


def write_report(
    runs_dir: Path,
    out_dir: Path | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    confidence: float = DEFAULT_CONFIDENCE,
    progress: Progress | None = None,
    ensemble: bool = False,
    collection: Collection | ReportRuns | None = None,
    gallery: bool = True,
    figure_sections: int | None = None,
) -> ReportFiles:
    """Write the leaderboard files, the figures and ``report.md`` for the runs in ``runs_dir`` (or ``collection``,
    already collected, or the rows :func:`reports.leaderboard.prepare_runs` made) into ``out_dir`` (default
    ``runs_dir``). When collecting here: sweeps chosen on validation, and ``ensemble`` adds soft-voting rows
    (:mod:`reports.ensemble`) to the tables. ``gallery``: draw the galleries of misclassified test images. Post-hoc
    rows get no figures of their own (they share their run's folder); the settings table lists the runs that
    trained, swept settings not chosen included. Figures are drawn for the first :data:`MAX_FIGURE_SECTIONS`
    sections, and a section's figures drawn by an earlier report into the same folder from the same inputs are
    reused (:data:`FIGURES_STAMP`). ``figure_sections``: how many sections get figures instead (0: none)."""
    cap = MAX_FIGURE_SECTIONS if figure_sections is None else figure_sections
    if collection is None:
        collection = prepare_runs(collect_runs(Path(runs_dir)), ensemble=ensemble)
    runs = as_report_runs(collection)
    leaderboard = write_leaderboard(runs_dir, out_dir, metrics=metrics, confidence=confidence, collection=runs)
    out = leaderboard.markdown_path.parent
    sections: dict[tuple[str, str], list[RunRecord]] = {}
    for record in runs.collection.records:
        if record.posthoc_tau is None:
            sections.setdefault((record.task, record.backbone), []).append(record)
    figures: dict[tuple[str, str], list[str]] = {}
    written: list[Path] = []
    order = sorted(sections, key=lambda key: (key[0], key[1].startswith("ens("), key[1]))  # as the report's sections
    for number, (task, backbone) in enumerate(order):
        if number >= cap:
            figures[(task, backbone)] = [FIGURES_CAPPED.format(sections=len(order), cap=cap), ""]
            continue
        section = sections[(task, backbone)]
        folder = out / FIGURES_DIR / f"{safe_name(task)}__{safe_name(backbone)}"
        classes = next((r.classes for r in section if len(r.classes) >= 2), ("majority", "minority"))
        key = _figures_key(section, classes, gallery)
        reused = _reused_figures(folder, key)
        if reused is None:
            if progress is not None:
                progress(f"figures for {task} — {backbone}")
            (folder / FIGURES_STAMP).unlink(missing_ok=True)
            figures[(task, backbone)] = section_figures(section, folder, out, classes, gallery=gallery)
            _stamp_figures(folder, key, figures[(task, backbone)])
        else:
            figures[(task, backbone)] = reused
        written += sorted(folder.glob("*.png")) if folder.is_dir() else []
    trained = runs.trained  # ensemble and post-hoc rows trained nothing
    preamble = ["## Settings", "", *settings_table(trained, _report_settings(runs))] if trained else []
    markdown = render_markdown(runs, metrics, confidence=confidence, title="Report", preamble=preamble, figures=figures)
    report_path = out / REPORT_FILE
    report_path.write_text(markdown, encoding="utf-8")
    return ReportFiles(report_path=report_path, figures=written, leaderboard=leaderboard)
