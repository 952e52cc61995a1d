"""Render collected runs as a Markdown + CSV leaderboard (plus ``comparisons.csv``) and write the files."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reports.aggregate import CellKey, CellStats, aggregate, method_sort_key
from reports.checks import HARDWARE_MARK, RATIO_MARK, RunChecks, check_runs
from reports.collect import Collection, RunRecord, collect_runs
from reports.comparisons import COMPARISONS_FILE, comparison_table, render_comparisons_csv
from reports.ensemble import with_ensembles
from reports.formatting import NO_DATA, fmt_float, fmt_ratio, md_escape
from reports.statistics import (
    DEFAULT_BASELINES,
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_PAIRS,
    Interval,
    PairedComparison,
    cell_intervals,
    missing_seeds,
    paired_comparisons,
)

DEFAULT_METRICS: tuple[str, ...] = ("test_minority_acc", "test_balanced_acc", "test_feature_silhouette")
METRIC_TITLES: dict[str, str] = {
    "test_minority_acc": "Minority-class accuracy",
    "test_majority_acc": "Majority-class accuracy",
    "test_balanced_acc": "Balanced accuracy",
    "test_acc": "Accuracy",
    "test_macro_f1": "Macro F1",
    "test_feature_silhouette": "Feature separation (silhouette, cosine, test images)",
    "test_feature_fisher": "Feature separation (Fisher ratio, test images)",
    "test_many_acc": "Many-shot accuracy (classes with > 100 training images)",
    "test_medium_acc": "Medium-shot accuracy (classes with 20-100 training images)",
    "test_few_acc": "Few-shot accuracy (classes with < 20 training images)",
    "test_top5_acc": "Top-5 accuracy",
    "test_map5": "MAP@5",
    "test_knn_acc": "kNN accuracy (k = 5, cosine, train embeddings)",
}
#: A long-tailed section's tables (a task of more than two classes): balanced accuracy (the mean per-class accuracy)
#: is the headline, then the many / medium / few-shot split, top-5, MAP@5, macro-F1, kNN accuracy and separation.
LONG_TAIL_METRICS: tuple[str, ...] = (
    "test_balanced_acc",
    "test_many_acc",
    "test_medium_acc",
    "test_few_acc",
    "test_top5_acc",
    "test_map5",
    "test_macro_f1",
    "test_knn_acc",
    "test_feature_silhouette",
)
#: Shown after the default metrics of a binary section when its runs report them (metric-learning methods).
OPTIONAL_METRICS: tuple[str, ...] = ("test_knn_acc",)
#: Metrics that get "Paired difference vs <baseline>" tables in the Markdown (comparisons.csv has every metric).
COMPARISON_METRICS: tuple[str, ...] = ("test_minority_acc",)
#: The same for a long-tailed section: its headline.
LONG_TAIL_COMPARISON_METRICS: tuple[str, ...] = ("test_balanced_acc",)
MARKDOWN_FILE = "leaderboard.md"
CSV_FILE = "leaderboard.csv"


def pairs_to_reach(alpha: float) -> int:
    """The fewest pairs whose sign-flip test can reach ``alpha``: its smallest p-value is 2 / 2^n."""
    n = 1
    while 2.0 / 2**n > alpha:
        n += 1
    return n


def _legend(confidence: float) -> str:
    level = _fmt_level(confidence)
    alpha = 1.0 - confidence
    return (
        "Each cell is the mean ± sample standard deviation (ddof=1) over seeds, with n the number of finished runs "
        "that report the metric (a single run shows no std); ✗k marks k failed runs, which are left out of the mean; "
        "?k marks k missing runs: seeds that have a run elsewhere in the same task and backbone (any method or ratio) "
        f"but no result for this method and ratio (not run, unfinished or unreadable); {NO_DATA} means no data. "
        "The best mean in each column (at the 3 decimals shown; ties all bold) is in **bold**. "
        "Columns are the imbalance ratio = minority/majority training images asked for; "
        f"{RATIO_MARK} marks a cell with runs that trained at another actual ratio (the minority count is rounded to "
        f"whole images, at least 1, and capped by the images available), {HARDWARE_MARK} a cell whose runs mix "
        "hardware (device type or "
        "precision) or record it only partly; the notes under the section heading say which.\n\n"
        "Paired differences: per seed, method minus baseline (the same seed trains on the same subset), then the mean "
        f"[{level} Student-t interval] over the n seeds both finished, and p, the two-sided exact sign-flip "
        "(permutation) test of the mean difference: the share of the 2^n ways to flip the differences' signs that give "
        "a mean at least as far from 0 (seeded Monte-Carlo beyond 20 pairs). "
        f"▲ / ▼ only when that test reaches {_fmt_level(alpha)} (p ≤ {alpha:g}): better / worse than the baseline; "
        "no marker: no difference shown. The interval describes the difference but does not decide: identical "
        "differences give a zero-width interval yet p = 0.25 for 3 seeds, and below "
        f"{pairs_to_reach(alpha)} paired seeds no difference can reach {_fmt_level(alpha)} (the smallest p is 2/2^n). "
        f"Fewer than {DEFAULT_MIN_PAIRS} paired seeds are not tested. Nothing is corrected for multiple comparisons."
    )


def _fmt_level(confidence: float) -> str:
    return f"{confidence * 100:g}%"


@dataclass(frozen=True)
class LeaderboardFiles:
    """What :func:`write_leaderboard` wrote, plus the Markdown text and collection warnings."""

    markdown_path: Path
    csv_path: Path
    markdown: str
    warnings: list[str]
    n_runs: int
    comparisons_path: Path


def _format_cell(stats: CellStats | None, bold: bool, n_missing: int = 0, mark: str = "") -> str:
    """``0.912 ± 0.034 (n=3)``, ``0.912 (n=1)``, ``—``; `` ✗k`` for k failed runs, `` ?k`` for k missing runs,
    then the checks' ``mark`` (:mod:`reports.checks`)."""
    suffix = (f" ?{n_missing}" if n_missing else "") + (f" {mark}" if mark else "")
    if stats is None:
        return NO_DATA + suffix
    if stats.mean is None:
        text = NO_DATA
    else:
        text = f"{stats.mean:.3f}" if stats.std is None else f"{stats.mean:.3f} ± {stats.std:.3f}"
        text = f"{text} (n={stats.n})"
        if bold:
            text = f"**{text}**"
    failed = f" ✗{stats.n_failed}" if stats.n_failed else ""
    return text + failed + suffix


def _best_means(cells: Sequence[CellStats | None]) -> set[int]:
    """Indices of the cells whose mean, at display precision, is the highest in the column."""
    shown = {i: round(c.mean, 3) for i, c in enumerate(cells) if c is not None and c.mean is not None}
    if not shown:
        return set()
    best = max(shown.values())
    return {i for i, value in shown.items() if value == best}


def _class_description(records: Sequence[RunRecord]) -> str:
    """``Dataset: digits (majority: 1, minority: 8)``; several distinct setups are joined with ``; ``."""
    parts: list[str] = []
    for dataset, classes in dict.fromkeys((r.dataset, r.classes) for r in records):
        if len(classes) == 2:
            pair = f"(majority: {classes[0]}, minority: {classes[1]})"
        elif classes:
            pair = f"(classes: {', '.join(classes)})"
        else:
            pair = "(classes unknown)"
        parts.append(f"Dataset: {dataset} {pair}" if dataset else f"Classes {pair}")
    return md_escape("; ".join(parts))


def _table(
    methods: Sequence[str],
    ratios: Sequence[float],
    cells: dict[CellKey, CellStats],
    task: str,
    backbone: str,
    missing: dict[CellKey, tuple[int, ...]] | None = None,
    marks: Mapping[CellKey, str] | None = None,
) -> list[str]:
    """One Markdown table: rows = methods, columns = ratios; ``marks`` flag cells (:mod:`reports.checks`)."""
    missing = missing or {}
    marks = marks or {}
    grid = [[cells.get((task, backbone, m, r)) for r in ratios] for m in methods]
    best = [_best_means([row[j] for row in grid]) for j in range(len(ratios))]
    lines = [
        "| method | " + " | ".join(fmt_ratio(r) for r in ratios) + " |",
        "|:---|" + "---:|" * len(ratios),
    ]
    for i, (method, row) in enumerate(zip(methods, grid, strict=True)):
        texts = [
            _format_cell(
                cell,
                i in best[j],
                len(missing.get((task, backbone, method, ratio), ())),
                marks.get((task, backbone, method, ratio), ""),
            )
            for j, (cell, ratio) in enumerate(zip(row, ratios, strict=True))
        ]
        lines.append(f"| {md_escape(method)} | " + " | ".join(texts) + " |")
    return lines


_NO_INTERVAL = Interval(n=0, mean=None, std=None, low=None, high=None)


def _stats_by_cell(records: Sequence[RunRecord], metrics: Sequence[str]) -> dict[str, dict[CellKey, CellStats]]:
    """``{metric: {(task, backbone, method, ratio): CellStats}}``."""
    return {m: {(s.task, s.backbone, s.method, s.ratio): s for s in aggregate(records, m)} for m in metrics}


def _footer(collection: Collection, n_check_warnings: int = 0) -> str:
    records = [r for r in collection.records if not r.members]
    n_finished = sum(1 for r in records if r.status == "finished")
    n_failed = sum(1 for r in records if r.status == "failed")
    n_missing = sum(len(seeds) for seeds in missing_seeds(records).values())
    n_ensembles = len(collection.records) - len(records)
    ensembles = f" · ensemble rows (per seed): {n_ensembles}" if n_ensembles else ""
    return (
        f"Runs: {len(records)} ({n_finished} finished, {n_failed} failed) · missing runs: {n_missing} · "
        f"incomplete folders: {collection.incomplete} · warnings: {len(collection.warnings) + n_check_warnings}"
        f"{ensembles}"
    )


def reported_metrics(records: Sequence[RunRecord], metrics: Sequence[str]) -> list[str]:
    """The metrics of ``metrics`` that at least one record reports (older runs lack newer metrics)."""
    return [m for m in metrics if any(m in r.metrics for r in records)]


def is_long_tail(records: Sequence[RunRecord]) -> bool:
    """Whether the runs are of a task with more than two classes."""
    return any(r.is_long_tail for r in records)


def headline_metric(records: Sequence[RunRecord]) -> str:
    """Minority-class accuracy for a binary task, balanced (mean per-class) accuracy for a long-tailed one."""
    return LONG_TAIL_COMPARISON_METRICS[0] if is_long_tail(records) else COMPARISON_METRICS[0]


def section_metrics(records: Sequence[RunRecord], metrics: Sequence[str]) -> list[str]:
    """The metrics one (task, backbone) section shows: :data:`DEFAULT_METRICS` adapts to the task (long-tailed ->
    :data:`LONG_TAIL_METRICS`; binary -> plus :data:`OPTIONAL_METRICS`); an explicit list is used as given. Only
    metrics some record reports."""
    if tuple(metrics) == DEFAULT_METRICS:
        metrics = LONG_TAIL_METRICS if is_long_tail(records) else (*DEFAULT_METRICS, *OPTIONAL_METRICS)
    return reported_metrics(records, metrics)


def table_metrics(records: Sequence[RunRecord], metrics: Sequence[str]) -> list[str]:
    """The CSV's metrics: ``metrics``, and for the default set also the long-tail and optional metrics that some
    record reports (so a binary-only grid keeps its columns)."""
    if tuple(metrics) != DEFAULT_METRICS:
        return list(metrics)
    candidates = (*LONG_TAIL_METRICS, *OPTIONAL_METRICS) if is_long_tail(records) else OPTIONAL_METRICS
    extra = reported_metrics(records, [m for m in candidates if m not in metrics])
    return [*metrics, *extra]


def _compared_metrics(records: Sequence[RunRecord]) -> tuple[str, ...]:
    return LONG_TAIL_COMPARISON_METRICS if is_long_tail(records) else COMPARISON_METRICS


def _comparisons(
    records: Sequence[RunRecord], metrics: Sequence[str], confidence: float
) -> dict[str, list[PairedComparison]]:
    """``{metric: paired comparisons against each of DEFAULT_BASELINES}``."""
    return {
        m: paired_comparisons(records, m, DEFAULT_BASELINES, min_pairs=DEFAULT_MIN_PAIRS, confidence=confidence)
        for m in metrics
    }


def render_markdown(
    collection: Collection,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    title: str = "Leaderboard",
    preamble: Sequence[str] = (),
    figures: Mapping[tuple[str, str], Sequence[str]] | None = None,
    checks: RunChecks | None = None,
) -> str:
    """Markdown leaderboard: one section per (task, backbone), one table per metric.

    Under each table a note on the intervals; for :data:`COMPARISON_METRICS` also one "Paired difference vs
    <baseline>" table per baseline present in the section. ``preamble`` lines follow the title; ``figures`` maps
    (task, backbone) to Markdown lines placed at the top of that section (the report's pictures). The notes of
    ``checks`` (default: :func:`reports.checks.check_runs` of the records) follow each section's heading.
    """
    records = collection.records
    checks = checks if checks is not None else check_runs(records)
    missing = missing_seeds(records)
    sections: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        sections.setdefault((record.task, record.backbone), []).append(record)
    shown = {key: section_metrics(section, metrics) for key, section in sections.items()}
    used = list(dict.fromkeys(m for names in shown.values() for m in names))
    cells = _stats_by_cell(records, used)
    compared = {key: [m for m in shown[key] if m in _compared_metrics(section)] for key, section in sections.items()}
    comparisons = _comparisons(
        records, list(dict.fromkeys(m for names in compared.values() for m in names)), confidence
    )

    lines = [f"# {title}", "", *preamble, _legend(confidence), ""]
    if not sections:
        lines += ["_No runs found._", ""]
    for task, backbone in sorted(sections, key=lambda key: (key[0], key[1].startswith("ens("), key[1])):
        section = sections[(task, backbone)]
        methods = sorted({r.method for r in section}, key=method_sort_key)
        ratios = sorted({r.ratio for r in section}, reverse=True)
        lines += [f"## {md_escape(task)} — {md_escape(backbone)}", "", _class_description(section), ""]
        notes = checks.notes.get((task, backbone), [])
        lines += ["Notes:", "", *notes, ""] if notes else []
        lines += list((figures or {}).get((task, backbone), ()))
        for metric in shown[(task, backbone)]:
            lines += [f"### {METRIC_TITLES.get(metric, metric)}", ""]
            lines += _table(methods, ratios, cells[metric], task, backbone, missing, checks.marks)
            lines += [
                "",
                f"Intervals: {_fmt_level(confidence)} Student-t interval over seeds "
                f"(per cell: `{metric}_ci_low`, `{metric}_ci_high` in {CSV_FILE}).",
                "",
            ]
            own = [c for c in comparisons.get(metric, []) if (c.task, c.backbone) == (task, backbone)]
            own = own if metric in compared[(task, backbone)] else []
            for baseline in DEFAULT_BASELINES:
                table = comparison_table(own, methods, ratios, baseline)
                if table:
                    lines += [f"#### Paired difference vs {md_escape(baseline)}", "", *table, ""]
    lines += ["---", "", _footer(collection, len(checks.warnings)), ""]
    return "\n".join(lines)


def csv_fieldnames(metrics: Sequence[str] = DEFAULT_METRICS) -> list[str]:
    """CSV header: fixed columns, ``<metric>_mean, <metric>_std`` per metric, then ``n_missing`` and
    ``<metric>_ci_low, <metric>_ci_high`` per metric (added later, so after the original columns)."""
    fixed = ["task", "backbone", "majority_class", "minority_class", "method", "ratio", "n", "n_failed"]
    original = fixed + [f"{m}_{stat}" for m in metrics for stat in ("mean", "std")]
    return original + ["n_missing"] + [f"{m}_{stat}" for m in metrics for stat in ("ci_low", "ci_high")]


def render_csv(
    collection: Collection, metrics: Sequence[str] = DEFAULT_METRICS, *, confidence: float = DEFAULT_CONFIDENCE
) -> str:
    """CSV leaderboard: one row per (task, backbone, method, ratio) of the grid; ``n`` = finished runs in the cell.

    The grid is every method x ratio seen in a (task, backbone); a cell without any run has n=0 and only n_missing.
    """
    records = collection.records
    metrics = table_metrics(records, metrics)
    stats = _stats_by_cell(records, metrics)
    intervals = {m: cell_intervals(records, m, confidence) for m in metrics}
    groups: dict[CellKey, list[RunRecord]] = {}
    sections: dict[tuple[str, str], RunRecord] = {}
    for r in records:
        groups.setdefault((r.task, r.backbone, r.method, r.ratio), []).append(r)
        sections.setdefault((r.task, r.backbone), r)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_fieldnames(metrics), lineterminator="\n")
    writer.writeheader()
    for key, missing in missing_seeds(records).items():
        task, backbone, method, ratio = key
        group = groups.get(key, [])
        classes = (group[0] if group else sections[(task, backbone)]).classes
        row = {
            "task": task,
            "backbone": backbone,
            "majority_class": classes[0] if len(classes) > 0 else "",
            "minority_class": classes[-1] if len(classes) > 1 else "",  # a long-tailed task's tail class
            "method": method,
            "ratio": fmt_float(ratio),
            "n": sum(1 for r in group if r.status == "finished"),
            "n_failed": sum(1 for r in group if r.status == "failed"),
            "n_missing": len(missing),
        }
        for metric in metrics:
            cell = stats[metric].get(key)
            interval = intervals[metric].get(key, _NO_INTERVAL)
            row[f"{metric}_mean"] = fmt_float(cell.mean if cell else None)
            row[f"{metric}_std"] = fmt_float(cell.std if cell else None)
            row[f"{metric}_ci_low"] = fmt_float(interval.low)
            row[f"{metric}_ci_high"] = fmt_float(interval.high)
        writer.writerow(row)
    return buffer.getvalue()


def render_comparisons(
    collection: Collection, metrics: Sequence[str] = DEFAULT_METRICS, *, confidence: float = DEFAULT_CONFIDENCE
) -> str:
    """``comparisons.csv``: every method against each of DEFAULT_BASELINES, paired by seed, for every metric."""
    shown = reported_metrics(collection.records, table_metrics(collection.records, metrics))
    by_metric = _comparisons(collection.records, shown, confidence)
    return render_comparisons_csv([c for m in shown for c in by_metric[m]])


def load_collection(runs_dir: Path, *, ensemble: bool = False) -> Collection:
    """The runs of ``runs_dir``, with the soft-voting ensemble rows when ``ensemble``."""
    collection = collect_runs(Path(runs_dir))
    return with_ensembles(collection) if ensemble else collection


def write_leaderboard(
    runs_dir: Path,
    out_dir: Path | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    confidence: float = DEFAULT_CONFIDENCE,
    ensemble: bool = False,
    collection: Collection | None = None,
) -> LeaderboardFiles:
    """Collect ``runs_dir`` (or take ``collection``, already collected); write ``leaderboard.md``, ``leaderboard.csv``
    and ``comparisons.csv`` into ``out_dir`` (default runs_dir). ``ensemble``: add the soft-voting rows of
    :mod:`reports.ensemble` (when collecting here). ``warnings``: the collection's, then the checks' of
    :mod:`reports.checks`."""
    if collection is None:
        collection = load_collection(runs_dir, ensemble=ensemble)
    checks = check_runs(collection.records)
    out = Path(out_dir) if out_dir is not None else Path(runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(collection, metrics, confidence=confidence, checks=checks)
    markdown_path = out / MARKDOWN_FILE
    csv_path = out / CSV_FILE
    comparisons_path = out / COMPARISONS_FILE
    markdown_path.write_text(markdown, encoding="utf-8")
    csv_path.write_text(render_csv(collection, metrics, confidence=confidence), encoding="utf-8")
    comparisons_path.write_text(render_comparisons(collection, metrics, confidence=confidence), encoding="utf-8")
    return LeaderboardFiles(
        markdown_path=markdown_path,
        csv_path=csv_path,
        markdown=markdown,
        warnings=[*collection.warnings, *checks.warnings],
        n_runs=len(collection.records),
        comparisons_path=comparisons_path,
    )
