"""Render collected runs as a Markdown + CSV leaderboard and write both files."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reports.aggregate import CellKey, CellStats, aggregate, group_records, method_sort_key
from reports.collect import Collection, RunRecord, collect_runs

DEFAULT_METRICS: tuple[str, ...] = ("test_minority_acc", "test_balanced_acc")
METRIC_TITLES: dict[str, str] = {
    "test_minority_acc": "Minority-class accuracy",
    "test_majority_acc": "Majority-class accuracy",
    "test_balanced_acc": "Balanced accuracy",
    "test_acc": "Accuracy",
    "test_macro_f1": "Macro F1",
}
MARKDOWN_FILE = "leaderboard.md"
CSV_FILE = "leaderboard.csv"
NO_DATA = "—"
LEGEND = (
    "Each cell is the mean ± sample standard deviation (ddof=1) over seeds, with n the number of finished runs "
    "that report the metric (a single run shows no std); ✗k marks k failed runs, which are left out of the mean; "
    f"{NO_DATA} means no data. The best mean in each column (at the 3 decimals shown; ties all bold) is in **bold**. "
    "Columns are the imbalance ratio = minority/majority training images."
)


@dataclass(frozen=True)
class LeaderboardFiles:
    """What :func:`write_leaderboard` wrote, plus the Markdown text and collection warnings."""

    markdown_path: Path
    csv_path: Path
    markdown: str
    warnings: list[str]
    n_runs: int


def _fmt_ratio(ratio: float) -> str:
    return f"{ratio:g}"


def _fmt_float(value: float | None) -> str:
    """CSV number: 6 significant digits, empty string for None."""
    return "" if value is None else f"{value:.6g}"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _format_cell(stats: CellStats | None, bold: bool) -> str:
    """``0.912 ± 0.034 (n=3)``, ``0.912 (n=1)``, ``—``; `` ✗k`` appended for k failed runs."""
    if stats is None:
        return NO_DATA
    if stats.mean is None:
        text = NO_DATA
    else:
        text = f"{stats.mean:.3f}" if stats.std is None else f"{stats.mean:.3f} ± {stats.std:.3f}"
        text = f"{text} (n={stats.n})"
        if bold:
            text = f"**{text}**"
    return f"{text} ✗{stats.n_failed}" if stats.n_failed else text


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
    return _md_escape("; ".join(parts))


def _table(
    methods: Sequence[str], ratios: Sequence[float], cells: dict[CellKey, CellStats], task: str, backbone: str
) -> list[str]:
    """One Markdown table: rows = methods, columns = ratios."""
    grid = [[cells.get((task, backbone, m, r)) for r in ratios] for m in methods]
    best = [_best_means([row[j] for row in grid]) for j in range(len(ratios))]
    lines = [
        "| method | " + " | ".join(_fmt_ratio(r) for r in ratios) + " |",
        "|:---|" + "---:|" * len(ratios),
    ]
    for i, (method, row) in enumerate(zip(methods, grid, strict=True)):
        texts = [_format_cell(cell, i in best[j]) for j, cell in enumerate(row)]
        lines.append(f"| {_md_escape(method)} | " + " | ".join(texts) + " |")
    return lines


def _stats_by_cell(records: Sequence[RunRecord], metrics: Sequence[str]) -> dict[str, dict[CellKey, CellStats]]:
    """``{metric: {(task, backbone, method, ratio): CellStats}}``."""
    return {m: {(s.task, s.backbone, s.method, s.ratio): s for s in aggregate(records, m)} for m in metrics}


def _footer(collection: Collection) -> str:
    records = collection.records
    n_finished = sum(1 for r in records if r.status == "finished")
    n_failed = sum(1 for r in records if r.status == "failed")
    return (
        f"Runs: {len(records)} ({n_finished} finished, {n_failed} failed) · "
        f"incomplete folders: {collection.incomplete} · warnings: {len(collection.warnings)}"
    )


def render_markdown(collection: Collection, metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """Markdown leaderboard: one section per (task, backbone), one table per metric."""
    cells = _stats_by_cell(collection.records, metrics)
    sections: dict[tuple[str, str], list[RunRecord]] = {}
    for record in collection.records:
        sections.setdefault((record.task, record.backbone), []).append(record)

    lines = ["# Leaderboard", "", LEGEND, ""]
    if not sections:
        lines += ["_No runs found._", ""]
    for task, backbone in sorted(sections):
        records = sections[(task, backbone)]
        methods = sorted({r.method for r in records}, key=method_sort_key)
        ratios = sorted({r.ratio for r in records}, reverse=True)
        lines += [f"## {_md_escape(task)} — {_md_escape(backbone)}", "", _class_description(records), ""]
        for metric in metrics:
            lines += [f"### {METRIC_TITLES.get(metric, metric)}", ""]
            lines += _table(methods, ratios, cells[metric], task, backbone)
            lines.append("")
    lines += ["---", "", _footer(collection), ""]
    return "\n".join(lines)


def csv_fieldnames(metrics: Sequence[str] = DEFAULT_METRICS) -> list[str]:
    """CSV header: fixed columns, then ``<metric>_mean, <metric>_std`` per metric."""
    fixed = ["task", "backbone", "majority_class", "minority_class", "method", "ratio", "n", "n_failed"]
    return fixed + [f"{m}_{stat}" for m in metrics for stat in ("mean", "std")]


def render_csv(collection: Collection, metrics: Sequence[str] = DEFAULT_METRICS) -> str:
    """CSV leaderboard: one row per (task, backbone, method, ratio); ``n`` = finished runs in the cell."""
    stats = _stats_by_cell(collection.records, metrics)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_fieldnames(metrics), lineterminator="\n")
    writer.writeheader()
    for key, group in group_records(collection.records).items():
        task, backbone, method, ratio = key
        classes = group[0].classes
        row = {
            "task": task,
            "backbone": backbone,
            "majority_class": classes[0] if len(classes) > 0 else "",
            "minority_class": classes[1] if len(classes) > 1 else "",
            "method": method,
            "ratio": _fmt_float(ratio),
            "n": sum(1 for r in group if r.status == "finished"),
            "n_failed": sum(1 for r in group if r.status == "failed"),
        }
        for metric in metrics:
            row[f"{metric}_mean"] = _fmt_float(stats[metric][key].mean)
            row[f"{metric}_std"] = _fmt_float(stats[metric][key].std)
        writer.writerow(row)
    return buffer.getvalue()


def write_leaderboard(
    runs_dir: Path, out_dir: Path | None = None, *, metrics: Sequence[str] = DEFAULT_METRICS
) -> LeaderboardFiles:
    """Collect ``runs_dir`` and write ``leaderboard.md`` + ``leaderboard.csv`` into ``out_dir`` (default runs_dir)."""
    collection = collect_runs(Path(runs_dir))
    out = Path(out_dir) if out_dir is not None else Path(runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(collection, metrics)
    markdown_path = out / MARKDOWN_FILE
    csv_path = out / CSV_FILE
    markdown_path.write_text(markdown, encoding="utf-8")
    csv_path.write_text(render_csv(collection, metrics), encoding="utf-8")
    return LeaderboardFiles(
        markdown_path=markdown_path,
        csv_path=csv_path,
        markdown=markdown,
        warnings=list(collection.warnings),
        n_runs=len(collection.records),
    )
