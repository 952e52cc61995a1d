"""Render collected runs as a Markdown + CSV leaderboard (plus ``comparisons.csv``) and write the files."""

from __future__ import annotations

import contextlib
import csv
import functools
import gc
import io
import itertools
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reports.aggregate import (
    CellKey,
    CellStats,
    aggregate,
    cell_sort_key,
    cell_values,
    group_records,
    method_sort_key,
)
from reports.checks import HARDWARE_MARK, RATIO_MARK, RunChecks, check_runs
from reports.collect import Collection, RunRecord, collect_runs, variant_text
from reports.comparisons import COMPARISONS_FILE, comparison_table, render_comparisons_csv
from reports.deployment import redeploy
from reports.ensemble import OUTPUTS_FILE, with_ensembles
from reports.formatting import NO_DATA, fmt_float, fmt_ratio, md_escape
from reports.posthoc import POSTHOC_SUFFIX, POSTHOC_TAUS, VAL_OUTPUTS_FILE, with_posthoc
from reports.posthoc_cache import CACHE_FOLDER
from reports.selection import SWEEPS_FILE, Selection, SweepChoice, render_sweeps_csv, select_variants, sweep_table
from reports.statistics import (
    DEFAULT_BASELINES,
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_PAIRS,
    Interval,
    PairedComparison,
    cell_intervals,
    comparison_groups,
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
    "test_deploy_precision": "Minority precision at the natural frequency",
    "test_deploy_recall": "Minority recall (= minority-class accuracy, at any frequency)",
    "test_deploy_f1": "Minority F1 at the natural frequency",
    "test_deploy_false_alarms": "False alarms per true minority detection at the natural frequency (lower is better)",
    "test_minority_ap": "Minority average precision at the natural frequency (no threshold)",
    "test_deploy_macro_precision": "Macro precision at the natural frequency",
    "test_deploy_macro_recall": "Macro recall (= balanced accuracy, at any frequency)",
    "test_deploy_macro_f1": "Macro F1 at the natural frequency",
    "test_macro_ap": "Macro average precision at the natural frequency (one-vs-rest, no threshold)",
    "test_ece": "Expected calibration error (15 bins; lower is better)",
    "test_nll": "Negative log-likelihood (lower is better)",
    "test_brier": "Brier score (lower is better)",
    "val_minority_acc": "Validation minority-class accuracy",
    "val_balanced_acc": "Validation balanced accuracy",
    "posthoc_tau": "Post-hoc tau (chosen on validation)",
}
#: The "Deployment at the natural frequency" block of a binary section (bench.deployment): the test confusion
#: re-weighted to the deploy prior.
DEPLOYMENT_METRICS: tuple[str, ...] = (
    "test_deploy_precision",
    "test_deploy_recall",
    "test_deploy_f1",
    "test_deploy_false_alarms",
    "test_minority_ap",
)
#: The same block of a long-tailed section: macro means over the classes present in test.
LONG_TAIL_DEPLOYMENT_METRICS: tuple[str, ...] = (
    "test_deploy_macro_precision",
    "test_deploy_macro_recall",
    "test_deploy_macro_f1",
    "test_macro_ap",
)
#: The "Calibration" block (bench.calibration), on the test split as it is.
CALIBRATION_METRICS: tuple[str, ...] = ("test_ece", "test_nll", "test_brier")
#: Metrics where the lowest mean is best (bold): false alarms and the calibration errors.
LOWER_IS_BETTER: frozenset[str] = frozenset({"test_deploy_false_alarms", *CALIBRATION_METRICS})
#: Decimals shown in the Markdown where 3 read worse (false alarms run to tens); bold compares at these decimals.
DECIMALS: dict[str, int] = {"test_deploy_false_alarms": 2}
DEFAULT_DECIMALS = 3
#: Shown in leaderboard.csv when some record reports them: the validation headline and the post-hoc tau.
CSV_EXTRA_METRICS: tuple[str, ...] = ("val_minority_acc", "val_balanced_acc", "posthoc_tau")
DEPLOYMENT_TITLE = "Deployment at the natural frequency"
CALIBRATION_TITLE = "Calibration"
SWEEP_TITLE = "Sweeps: settings chosen on validation"
SETTING_COLUMN = "setting"
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


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector off inside, as it was outside afterwards. The tables make millions of small objects
    that hold no cycles (freed by reference counting as usual), and every collection they trigger walks all live
    objects, the runs included: 24 -> 15 s CPU for the tables of 100,000 runs."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
        "The best mean in each column (the highest, or the lowest where the title says lower is better; at the "
        "decimals shown; ties all bold) is in **bold**. "
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
    sweeps_path: Path | None = None  # sweeps.csv, written when settings were chosen on validation


def _format_cell(
    stats: CellStats | None, bold: bool, n_missing: int = 0, mark: str = "", decimals: int = DEFAULT_DECIMALS
) -> str:
    """``0.912 ± 0.034 (n=3)``, ``0.912 (n=1)``, ``—`` (means at ``decimals``); `` ✗k`` for k failed runs, `` ?k`` for
    k missing runs, then the checks' ``mark`` (:mod:`reports.checks`)."""
    suffix = (f" ?{n_missing}" if n_missing else "") + (f" {mark}" if mark else "")
    if stats is None:
        return NO_DATA + suffix
    if stats.mean is None:
        text = NO_DATA
    else:
        mean = f"{stats.mean:.{decimals}f}"
        text = mean if stats.std is None else f"{mean} ± {stats.std:.{decimals}f}"
        text = f"{text} (n={stats.n})"
        if bold:
            text = f"**{text}**"
    failed = f" ✗{stats.n_failed}" if stats.n_failed else ""
    return text + failed + suffix


def _best_means(
    cells: Sequence[CellStats | None], *, lower: bool = False, decimals: int = DEFAULT_DECIMALS
) -> set[int]:
    """Indices of the cells whose mean, at display precision (``decimals``), is the best in the column: the highest,
    or the lowest when ``lower`` is better."""
    shown = {i: round(c.mean, decimals) for i, c in enumerate(cells) if c is not None and c.mean is not None}
    if not shown:
        return set()
    best = min(shown.values()) if lower else max(shown.values())
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
    metric: str = "",
) -> list[str]:
    """One Markdown table: rows = methods, columns = ratios; ``marks`` flag cells (:mod:`reports.checks`); the
    ``metric``'s direction (:data:`LOWER_IS_BETTER`) and :data:`DECIMALS` decide the bold and the digits."""
    missing = missing or {}
    marks = marks or {}
    decimals = DECIMALS.get(metric, DEFAULT_DECIMALS)
    grid = [[cells.get((task, backbone, m, r)) for r in ratios] for m in methods]
    lower = metric in LOWER_IS_BETTER
    best = [_best_means([row[j] for row in grid], lower=lower, decimals=decimals) for j in range(len(ratios))]
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
                decimals,
            )
            for j, (cell, ratio) in enumerate(zip(row, ratios, strict=True))
        ]
        lines.append(f"| {md_escape(method)} | " + " | ".join(texts) + " |")
    return lines


_NO_INTERVAL = Interval(n=0, mean=None, std=None, low=None, high=None)


def _stats_by_cell(runs: ReportRuns, metrics: Sequence[str]) -> dict[str, dict[CellKey, CellStats]]:
    """``{metric: {(task, backbone, method, ratio): CellStats}}`` of the rows of ``runs``."""
    records = runs.collection.records

    def cells(metric: str) -> Callable[[], dict[CellKey, CellStats]]:
        return lambda: {
            (s.task, s.backbone, s.method, s.ratio): s
            for s in aggregate(records, metric, _groups(runs), _values(runs, metric))
        }

    return {m: runs.computed(("stats", m), cells(m)) for m in metrics}


@dataclass(frozen=True)
class ReportRuns:
    """The rows a report shows and what made them: ``collection`` (runs, each swept method at its chosen setting,
    ensemble and post-hoc rows), the sweep ``selection`` (:mod:`reports.selection`; None: none made) and the
    ``deploy_prior`` ({class: share}) the deploy_* metrics were recomputed at (None: each run's training prior)."""

    collection: Collection
    selection: Selection | None = None
    deploy_prior: dict[str, float] | None = None
    #: What the renderings computed from the rows (cell statistics, comparisons), kept for the next rendering: the
    #: report renders the same rows three times (leaderboard.md, report.md, the CSV files).
    memo: dict[tuple[object, ...], Any] = field(default_factory=dict, compare=False, repr=False)

    def computed(self, key: tuple[object, ...], compute: Callable[[], Any]) -> Any:
        """``compute()``, once per ``key`` for these rows."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    @property
    def choices(self) -> tuple[SweepChoice, ...]:
        return self.selection.choices if self.selection is not None else ()

    @property
    def left_out(self) -> tuple[RunRecord, ...]:
        """Runs of swept settings not chosen: trained, but in no table row (only in the sweep tables)."""
        return self.selection.left_out if self.selection is not None else ()

    @property
    def trained(self) -> list[RunRecord]:
        """Every run that trained: the rows' runs and the settings not chosen; no derived rows."""
        return [*(r for r in self.collection.records if not r.derived), *self.left_out]


def as_report_runs(runs: Collection | ReportRuns) -> ReportRuns:
    """``runs`` as :class:`ReportRuns`; a plain collection whose cells mix swept settings gets its settings chosen on
    validation first (:func:`reports.selection.select_variants`), so that no cell averages several settings."""
    if isinstance(runs, ReportRuns):
        return runs
    settings: dict[CellKey, set[tuple[tuple[str, object], ...]]] = {}
    for r in runs.records:
        settings.setdefault((r.task, r.backbone, r.method, r.ratio), set()).add(r.variant)
    if all(len(found) == 1 for found in settings.values()):
        return ReportRuns(runs)
    selection = select_variants(runs)
    return ReportRuns(selection.collection, selection)


def _footer(runs: ReportRuns, n_check_warnings: int = 0) -> str:
    """Run counts (every trained run, settings not chosen included; derived rows apart), missing runs, warnings."""
    collection = runs.collection
    trained = runs.trained
    n_finished = sum(1 for r in trained if r.status == "finished")
    n_failed = sum(1 for r in trained if r.status == "failed")
    n_missing = sum(len(seeds) for seeds in _missing(runs).values())
    n_ensembles = sum(1 for r in collection.records if r.members)
    n_posthoc = sum(1 for r in collection.records if r.posthoc_tau is not None)
    ensembles = f" · ensemble rows (per seed): {n_ensembles}" if n_ensembles else ""
    posthoc = f" · post-hoc rows (per run): {n_posthoc}" if n_posthoc else ""
    aside = f"; {len(runs.left_out)} of swept settings not chosen" if runs.left_out else ""
    return (
        f"Runs: {len(trained)} ({n_finished} finished, {n_failed} failed{aside}) · missing runs: {n_missing} · "
        f"incomplete folders: {collection.incomplete} · warnings: {len(collection.warnings) + n_check_warnings}"
        f"{ensembles}{posthoc}"
    )


def reported_metrics(records: Sequence[RunRecord], metrics: Sequence[str]) -> list[str]:
    """The metrics of ``metrics`` that at least one record reports (older runs lack newer metrics)."""
    found = [r.metrics for r in records]
    return [m for m in metrics if any(map(operator.contains, found, itertools.repeat(m)))]


def is_long_tail(records: Sequence[RunRecord]) -> bool:
    """Whether the runs are of a task with more than two classes (:attr:`RunRecord.is_long_tail`)."""
    return max(map(len, map(operator.attrgetter("classes"), records)), default=0) > 2


def headline_metric(records: Sequence[RunRecord]) -> str:
    """Minority-class accuracy for a binary task, balanced (mean per-class) accuracy for a long-tailed one."""
    return LONG_TAIL_COMPARISON_METRICS[0] if is_long_tail(records) else COMPARISON_METRICS[0]


def section_metrics(records: Sequence[RunRecord], metrics: Sequence[str]) -> list[str]:
    """The metrics of one (task, backbone) section's first tables: :data:`DEFAULT_METRICS` adapts to the task
    (long-tailed -> :data:`LONG_TAIL_METRICS`; binary -> plus :data:`OPTIONAL_METRICS`); an explicit list is used as
    given, less the blocks' metrics (:func:`block_metrics`). Only metrics some record reports."""
    if tuple(metrics) == DEFAULT_METRICS:
        metrics = LONG_TAIL_METRICS if is_long_tail(records) else (*DEFAULT_METRICS, *OPTIONAL_METRICS)
    in_blocks = {*DEPLOYMENT_METRICS, *LONG_TAIL_DEPLOYMENT_METRICS, *CALIBRATION_METRICS}
    return reported_metrics(records, [m for m in metrics if m not in in_blocks])


def block_metrics(records: Sequence[RunRecord], metrics: Sequence[str]) -> dict[str, list[str]]:
    """``{block title: metrics}`` of a section's "Deployment at the natural frequency" and "Calibration" blocks: all
    their metrics for :data:`DEFAULT_METRICS`, else those of ``metrics``; only metrics some record reports."""
    deployment = LONG_TAIL_DEPLOYMENT_METRICS if is_long_tail(records) else DEPLOYMENT_METRICS
    wanted = (*deployment, *CALIBRATION_METRICS) if tuple(metrics) == DEFAULT_METRICS else tuple(metrics)
    return {
        DEPLOYMENT_TITLE: reported_metrics(records, [m for m in deployment if m in wanted]),
        CALIBRATION_TITLE: reported_metrics(records, [m for m in CALIBRATION_METRICS if m in wanted]),
    }


def table_metrics(records: Sequence[RunRecord], metrics: Sequence[str]) -> list[str]:
    """The CSV's metrics: ``metrics``, and for the default set also the long-tail and optional metrics, the
    deployment and calibration metrics and :data:`CSV_EXTRA_METRICS` that some record reports (so a binary-only grid
    keeps its columns)."""
    if tuple(metrics) != DEFAULT_METRICS:
        return list(metrics)
    candidates = (*LONG_TAIL_METRICS, *OPTIONAL_METRICS) if is_long_tail(records) else OPTIONAL_METRICS
    blocks = [m for names in block_metrics(records, metrics).values() for m in names]
    extra = reported_metrics(records, [m for m in (*candidates, *CSV_EXTRA_METRICS) if m not in metrics])
    return list(dict.fromkeys([*metrics, *extra, *blocks]))


def _compared_metrics(records: Sequence[RunRecord]) -> tuple[str, ...]:
    return LONG_TAIL_COMPARISON_METRICS if is_long_tail(records) else COMPARISON_METRICS


def _comparisons(runs: ReportRuns, metrics: Sequence[str], confidence: float) -> dict[str, list[PairedComparison]]:
    """``{metric: paired comparisons against each of DEFAULT_BASELINES}`` of the rows of ``runs``."""
    records = runs.collection.records

    def compare(metric: str) -> Callable[[], list[PairedComparison]]:
        groups = runs.computed(("comparison groups",), lambda: comparison_groups(records))
        return lambda: paired_comparisons(
            records, metric, DEFAULT_BASELINES, min_pairs=DEFAULT_MIN_PAIRS, confidence=confidence, groups=groups
        )

    return {m: runs.computed(("comparisons", m, confidence), compare(m)) for m in metrics}


def _groups(runs: ReportRuns) -> dict[CellKey, list[RunRecord]]:
    return runs.computed(("groups",), lambda: group_records(runs.collection.records))


def _values(runs: ReportRuns, metric: str) -> dict[CellKey, list[float]]:
    return runs.computed(("values", metric), lambda: cell_values(_groups(runs), metric))


def _missing(runs: ReportRuns) -> dict[CellKey, tuple[int, ...]]:
    return runs.computed(("missing",), lambda: missing_seeds(runs.collection.records))


def _checks(runs: ReportRuns) -> RunChecks:
    return runs.computed(("checks",), lambda: check_runs(runs.collection.records))


#: A report with at least this many sections starts with a table of contents.
CONTENTS_FROM_SECTIONS = 2
CONTENTS_TITLE = "Contents"


def section_anchors(sections: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """A link target per (task, backbone) section, unique and made of ``[a-z0-9_-]`` (``s-fine--resnet18``), in the
    order given."""
    anchors: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    for task, backbone in sections:
        base = "s-" + re.sub(r"[^a-z0-9_]+", "-", f"{task}--{backbone}".lower()).strip("-")
        anchor, n = base, 1
        while anchor in taken:
            n += 1
            anchor = f"{base}-{n}"
        taken.add(anchor)
        anchors[(task, backbone)] = anchor
    return anchors


def contents(
    sections: Mapping[tuple[str, str], Sequence[RunRecord]], anchors: Mapping[tuple[str, str], str]
) -> list[str]:
    """The table of contents: per data set, per task, a link to each backbone's section (report order)."""
    tree: dict[str, dict[str, list[tuple[str, str]]]] = {}
    for key in anchors:
        datasets = ", ".join(sorted({r.dataset for r in sections[key] if r.dataset})) or "data set not recorded"
        tree.setdefault(datasets, {}).setdefault(key[0], []).append(key)
    lines = [f"## {CONTENTS_TITLE}", ""]
    for dataset in sorted(tree):
        lines.append(f"- data set {md_escape(dataset)}")
        for task, keys in tree[dataset].items():
            links = " · ".join(f"[{md_escape(backbone)}](#{anchors[(t, backbone)]})" for t, backbone in keys)
            lines.append(f"  - {md_escape(task)}: {links}")
    return [*lines, ""]


def _caption(metric: str, confidence: float) -> str:
    """What a table's cells are: mean ± sample sd (n), where its intervals are, and its direction."""
    lower = "; lower is better" if metric in LOWER_IS_BETTER else ""
    return (
        f"Mean ± sample sd over seeds (n = finished runs){lower}. Intervals: {_fmt_level(confidence)} Student-t "
        f"interval over seeds (per cell: `{metric}_ci_low`, `{metric}_ci_high` in {CSV_FILE})."
    )


def _titled(level: str, metric: str, table: Sequence[str], confidence: float) -> list[str]:
    """A metric's table under its title (``level``: ``###`` or ``####``), its caption beneath."""
    return [f"{level} {METRIC_TITLES.get(metric, metric)}", "", *table, "", _caption(metric, confidence), ""]


def prior_text(deploy_prior: Mapping[str, float] | None) -> str:
    """``each run's training prior (...)`` or ``the prior 1=0.99, 8=0.01 (--deploy-prior)``."""
    if deploy_prior is None:
        return "each run's training prior (its training images per class, normalised to sum 1)"
    shares = ", ".join(f"{name}={share:.4g}" for name, share in deploy_prior.items())
    return f"the prior {shares} (--deploy-prior)"


def _block_caption(title: str, records: Sequence[RunRecord], deploy_prior: Mapping[str, float] | None) -> str:
    if title == CALIBRATION_TITLE:
        return (
            "On the test split as it is (no re-weighting), from the softmax of the saved logits: expected calibration "
            "error (ECE: over 15 equal-width bins of the top-class confidence, the sum of bin share x |accuracy - mean "
            "confidence|), negative log-likelihood (mean -ln p of the true class) and Brier score (mean over images "
            "of the summed squared error of the probabilities). Lower is better: the lowest mean is bold."
        )
    detections = "per-class" if is_long_tail(records) else "minority"
    return (
        f"The test split's per-class rates re-weighted to {md_escape(prior_text(deploy_prior))}: what a user meets "
        "when the classes come at that frequency rather than at the test split's. Precision, F1 and false alarms "
        f"(false {detections} detections per true one) depend on it; recall does not. A run that never predicts "
        "the class has no precision or false-alarm rate: it is left out of those cells (a smaller n, or —). Average "
        "precision ranks the test images by the class's softmax score, each image weighted by its class's share over "
        "its test images: no threshold. Means over the classes present in test for a long-tailed task (macro)."
    )


def _posthoc_note(records: Sequence[RunRecord]) -> list[str]:
    """The section's note on its ``<method>+posthoc`` rows; none without them."""
    if not any(r.posthoc_tau is not None for r in records):
        return []
    taus = ", ".join(f"{tau:g}" for tau in POSTHOC_TAUS)
    return [
        f"- `<method>{POSTHOC_SUFFIX}` rows: post-hoc logit adjustment (Menon et al., ICLR 2021) of the method's saved "
        "test logits, logits - tau x ln(training prior), with tau chosen per run on its own validation logits (the "
        f"best balanced accuracy; ties: the smallest tau) from {taus}; the mean tau is `posthoc_tau_mean` in "
        f"{CSV_FILE}. Nothing is trained: these rows are not counted as runs and have no missing marks."
    ]


@gc_paused()
def render_markdown(
    collection: Collection | ReportRuns,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
    title: str = "Leaderboard",
    preamble: Sequence[str] = (),
    figures: Mapping[tuple[str, str], Sequence[str]] | None = None,
    checks: RunChecks | None = None,
) -> str:
    """Markdown leaderboard: one section per (task, backbone), one table per metric.

    Under each table its caption (what ± is, where the intervals are); for :data:`COMPARISON_METRICS` also one
    "Paired difference vs <baseline>" table per baseline present in the section; then the "Deployment at the natural
    frequency" and "Calibration" blocks and, for a sweep (a :class:`ReportRuns`), the sweep table. ``preamble``
    lines follow the title; ``figures`` maps (task, backbone) to Markdown lines placed at the top of that section
    (the report's pictures). The notes of ``checks`` (default: :func:`reports.checks.check_runs` of the records),
    of the sweep selection and of post-hoc rows follow each section's heading.
    """
    runs = as_report_runs(collection)
    records = runs.collection.records
    checks = checks if checks is not None else _checks(runs)
    missing = _missing(runs)
    sections: dict[tuple[str, str], list[RunRecord]] = {}
    for record in records:
        sections.setdefault((record.task, record.backbone), []).append(record)
    shown = {key: section_metrics(section, metrics) for key, section in sections.items()}
    blocks = {key: block_metrics(section, metrics) for key, section in sections.items()}
    in_blocks = [m for by_title in blocks.values() for names in by_title.values() for m in names]
    used = list(dict.fromkeys([*(m for names in shown.values() for m in names), *in_blocks]))
    cells = _stats_by_cell(runs, used)
    compared = {key: [m for m in shown[key] if m in _compared_metrics(section)] for key, section in sections.items()}
    comparisons = _comparisons(runs, list(dict.fromkeys(m for names in compared.values() for m in names)), confidence)
    by_section: dict[tuple[str, str, str], list[PairedComparison]] = {}
    for metric, found in comparisons.items():
        for c in found:
            by_section.setdefault((c.task, c.backbone, metric), []).append(c)
    choices_by_section: dict[tuple[str, str], list[SweepChoice]] = {}
    for choice in runs.choices:
        choices_by_section.setdefault((choice.task, choice.backbone), []).append(choice)
    selection_notes = (runs.selection.notes or {}) if runs.selection is not None else {}
    order = sorted(sections, key=lambda key: (key[0], key[1].startswith("ens("), key[1]))
    anchors = section_anchors(order)

    lines = [f"# {title}", ""]
    lines += contents(sections, anchors) if len(sections) >= CONTENTS_FROM_SECTIONS else []
    lines += [*preamble, _legend(confidence), ""]
    if not sections:
        lines += ["_No runs found._", ""]
    for task, backbone in order:
        section = sections[(task, backbone)]
        methods = sorted({r.method for r in section}, key=method_sort_key)
        ratios = sorted({r.ratio for r in section}, reverse=True)
        heading = [f'<a id="{anchors[(task, backbone)]}"></a>', ""] if len(sections) >= CONTENTS_FROM_SECTIONS else []
        lines += [*heading, f"## {md_escape(task)} — {md_escape(backbone)}", "", _class_description(section), ""]
        notes = [
            *checks.notes.get((task, backbone), []),
            *selection_notes.get((task, backbone), []),
            *_posthoc_note(section),
        ]
        lines += ["Notes:", "", *notes, ""] if notes else []
        lines += list((figures or {}).get((task, backbone), ()))

        for metric in shown[(task, backbone)]:
            table = _table(methods, ratios, cells[metric], task, backbone, missing, checks.marks, metric)
            lines += _titled("###", metric, table, confidence)
            own = by_section.get((task, backbone, metric), []) if metric in compared[(task, backbone)] else []
            for baseline in DEFAULT_BASELINES:
                paired = comparison_table(own, methods, ratios, baseline)
                if paired:
                    lines += [f"#### Paired difference vs {md_escape(baseline)}", "", *paired, ""]
        for block, names in blocks[(task, backbone)].items():
            if names:
                lines += [f"### {block}", "", _block_caption(block, section, runs.deploy_prior), ""]
                for metric in names:
                    table = _table(methods, ratios, cells[metric], task, backbone, missing, checks.marks, metric)
                    lines += _titled("####", metric, table, confidence)
        choices = choices_by_section.get((task, backbone), [])
        if choices:
            lines += [
                f"### {SWEEP_TITLE}",
                "",
                *sweep_table(choices, methods),
                "",
                "Per method and ratio, each setting's means over its finished seeds (n); the setting with the best "
                "validation mean (ties: the first listed) is the method's row in the tables above, with its test "
                "metrics as measured. The test mean is shown, never used to choose. Paired differences use the "
                "chosen setting's runs.",
                "",
            ]
    lines += ["---", "", _footer(runs, len(checks.warnings)), ""]
    return "\n".join(lines)


def csv_fieldnames(metrics: Sequence[str] = DEFAULT_METRICS, *, setting: bool = False) -> list[str]:
    """CSV header: fixed columns, ``<metric>_mean, <metric>_std`` per metric, then ``n_missing`` and
    ``<metric>_ci_low, <metric>_ci_high`` per metric (added later, so after the original columns); with ``setting``
    last the swept setting of the row's runs (``sim_weight=0.1``; the one chosen on validation)."""
    fixed = ["task", "backbone", "majority_class", "minority_class", "method", "ratio", "n", "n_failed"]
    original = fixed + [f"{m}_{stat}" for m in metrics for stat in ("mean", "std")]
    later = ["n_missing"] + [f"{m}_{stat}" for m in metrics for stat in ("ci_low", "ci_high")]
    return original + later + ([SETTING_COLUMN] if setting else [])


@gc_paused()
def render_csv(
    collection: Collection | ReportRuns,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
) -> str:
    """CSV leaderboard: one row per (task, backbone, method, ratio) of the grid; ``n`` = finished runs in the cell.

    The grid is every method x ratio seen in a (task, backbone); a cell without any run has n=0 and only n_missing.
    Derived rows (ensembles, post-hoc) have a row where they have records, and n_missing 0. A swept grid adds the
    ``setting`` column.
    """
    runs = as_report_runs(collection)
    records = runs.collection.records
    metrics = table_metrics(records, metrics)
    stats = _stats_by_cell(runs, metrics)

    def interval_of(metric: str) -> Callable[[], dict[CellKey, Interval]]:
        return lambda: cell_intervals(records, metric, confidence, _groups(runs), _values(runs, metric))

    intervals = {m: runs.computed(("intervals", m, confidence), interval_of(m)) for m in metrics}
    groups = _groups(runs)
    sections: dict[tuple[str, str], RunRecord] = {}
    for r in records:
        sections.setdefault((r.task, r.backbone), r)
    missing = _missing(runs)
    swept = any(r.variant for r in records)
    buffer = io.StringIO()
    fieldnames = csv_fieldnames(metrics, setting=swept)
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fieldnames)
    columns = [(stats[m], intervals[m]) for m in metrics]
    for key in sorted(missing.keys() | groups.keys(), key=cell_sort_key):
        task, backbone, method, ratio = key
        group = groups.get(key, [])
        classes = (group[0] if group else sections[(task, backbone)]).classes
        row: list[object] = [
            task,
            backbone,
            classes[0] if len(classes) > 0 else "",
            classes[-1] if len(classes) > 1 else "",  # a long-tailed task's tail class
            method,
            fmt_float(ratio),
            (statuses := [r.status for r in group]).count("finished"),
            statuses.count("failed"),
        ]  # in csv_fieldnames order: the fixed columns, means and stds, n_missing, intervals, setting
        found = [(cells.get(key), by_cell.get(key, _NO_INTERVAL)) for cells, by_cell in columns]
        for cell, _ in found:
            row += (fmt_float(cell.mean), fmt_float(cell.std)) if cell else ("", "")
        row.append(len(missing.get(key, ())))
        for _, interval in found:
            row += (fmt_float(interval.low), fmt_float(interval.high))
        if swept:
            row.append("; ".join(dict.fromkeys(variant_text(r.variant) for r in group if r.variant)))
        writer.writerow(row)
    return buffer.getvalue()


@gc_paused()
def render_comparisons(
    collection: Collection | ReportRuns,
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    confidence: float = DEFAULT_CONFIDENCE,
) -> str:
    """``comparisons.csv``: every method against each of DEFAULT_BASELINES, paired by seed, for every metric."""
    runs = as_report_runs(collection)
    records = runs.collection.records
    shown = reported_metrics(records, table_metrics(records, metrics))
    by_metric = _comparisons(runs, shown, confidence)
    return render_comparisons_csv([c for m in shown for c in by_metric[m]])


@functools.lru_cache(maxsize=4096)  # the settings table asks per run and setting
def base_method(method: str) -> str:
    """A row's method without its swept settings: ``fscl+os[sim_weight=0.3]`` -> ``fscl+os``."""
    return method.partition("[")[0]


def parse_posthoc(text: str) -> bool | tuple[str, ...]:
    """``--posthoc``: ``all`` -> True (every method), ``none`` -> False, ``ce,os`` -> the methods named; ValueError
    with a one-line message for an empty name."""
    word = text.strip()
    if word.lower() in ("all", "none"):
        return word.lower() == "all"
    names = tuple(name.strip() for name in word.split(","))
    if not word or any(not name for name in names):
        raise ValueError(f"{text!r}: give all, none or methods separated by commas (e.g. ce,os)")
    return names


def check_posthoc_methods(posthoc: bool | Sequence[str], records: Sequence[RunRecord]) -> None:
    """ValueError naming the runs' methods when ``posthoc`` names a method no run has."""
    if isinstance(posthoc, bool):
        return
    present = sorted({base_method(r.method) for r in records}, key=method_sort_key)
    unknown = [name for name in posthoc if name not in present]
    if unknown:
        raise ValueError(f"no runs of method {', '.join(unknown)}; the runs have: {', '.join(present)}")


def deploy_classes(records: Sequence[RunRecord]) -> tuple[str, ...]:
    """The one set of class names of ``records`` (a deploy prior names them); ValueError when the runs have several
    or none."""
    found = list(dict.fromkeys(r.classes for r in records if r.classes))
    if len(found) != 1:
        sets = "; ".join(",".join(c) for c in found) or "none recorded"
        raise ValueError(f"a deploy prior needs runs of one set of classes; these runs have: {sets}")
    return found[0]


def _lacks_deployment(record: RunRecord) -> bool:
    """A finished run (or post-hoc row) with saved test logits but without the deployment or calibration metrics: a
    run written before they existed. A run without saved logits cannot get them: its cells stay empty."""
    recall = "test_deploy_macro_recall" if record.is_long_tail else "test_deploy_recall"
    lacks = any(name not in record.metrics for name in (recall, *CALIBRATION_METRICS))
    return lacks and record.status == "finished" and not record.members and (record.folder / OUTPUTS_FILE).is_file()


def _fill_deployment(collection: Collection) -> Collection:
    """``collection`` with the deployment and calibration metrics filled in where a run lacks them (at its recorded
    deploy prior, else its training prior: :func:`reports.deployment.redeploy` with ``fill_only``)."""
    lacking = [i for i, r in enumerate(collection.records) if _lacks_deployment(r)]
    if not lacking:
        return collection
    filled = redeploy(Collection([collection.records[i] for i in lacking], [], 0), fill_only=True)
    records = list(collection.records)
    for i, record in zip(lacking, filled.records, strict=True):
        records[i] = record
    return Collection(records, [*collection.warnings, *filled.warnings], collection.incomplete)


def prepare_runs(
    collection: Collection,
    *,
    ensemble: bool = False,
    select_metric: str | None = None,
    posthoc: bool | Sequence[str] = False,
    deploy_prior: Sequence[float] | None = None,
) -> ReportRuns:
    """The report's rows from collected runs, in this order: each swept method's setting chosen on validation
    (``select_metric``, a ``val_*`` name; None: the headline's twin; :mod:`reports.selection`), the soft-voting rows
    (``ensemble``), the ``<method>+posthoc`` rows (``posthoc``: True for every method, quietly none when no run saved
    validation outputs, or the methods named; a swept method's rows by its name without settings;
    :mod:`reports.posthoc`), then the deploy_* metrics recomputed at
    ``deploy_prior`` [C] in :func:`deploy_classes` order, or, for None, filled in at each run's training prior where a
    run lacks them (:func:`reports.deployment.redeploy`). The post-hoc rows are kept in the runs folder
    (``collection.root``) for the next report: :mod:`reports.posthoc_cache`."""
    cache_dir = collection.root / CACHE_FOLDER if collection.root is not None else None
    selection = select_variants(collection, select_metric)
    rows = selection.collection
    if ensemble:
        rows = with_ensembles(rows)
    with_validation = any((r.folder / VAL_OUTPUTS_FILE).is_file() for r in rows.records if not r.derived)
    if posthoc is True and with_validation:  # "all" of runs without validation outputs: nothing to adjust, no warning
        rows = with_posthoc(rows, cache_dir=cache_dir)
    elif posthoc and posthoc is not True:
        named = set(posthoc)
        rows = with_posthoc(
            rows, {r.method for r in rows.records if base_method(r.method) in named}, cache_dir=cache_dir
        )
    named_prior = None
    if deploy_prior is not None:
        classes = deploy_classes(rows.records)
        named_prior = {name: float(share) for name, share in zip(classes, deploy_prior, strict=True)}
        rows = redeploy(rows, deploy_prior)
    else:
        rows = _fill_deployment(rows)
    return ReportRuns(collection=rows, selection=selection, deploy_prior=named_prior)


def load_collection(runs_dir: Path, *, ensemble: bool = False) -> Collection:
    """The rows of ``runs_dir``: each swept method at its setting chosen on validation, with the soft-voting ensemble
    rows when ``ensemble`` (:func:`prepare_runs`, whose :class:`ReportRuns` also keeps the sweep tables)."""
    return prepare_runs(collect_runs(Path(runs_dir)), ensemble=ensemble).collection


@gc_paused()
def write_leaderboard(
    runs_dir: Path,
    out_dir: Path | None = None,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    confidence: float = DEFAULT_CONFIDENCE,
    ensemble: bool = False,
    collection: Collection | ReportRuns | None = None,
) -> LeaderboardFiles:
    """Collect ``runs_dir`` (or take ``collection``, already collected, or the rows :func:`prepare_runs` made); write
    ``leaderboard.md``, ``leaderboard.csv``, ``comparisons.csv`` and, for sweeps, ``sweeps.csv`` into ``out_dir``
    (default runs_dir). When
    collecting here: sweeps chosen on validation, and ``ensemble`` adds the soft-voting rows of
    :mod:`reports.ensemble`. ``warnings``: the collection's, then the checks' of :mod:`reports.checks`."""
    if collection is None:
        collection = prepare_runs(collect_runs(Path(runs_dir)), ensemble=ensemble)
    runs = as_report_runs(collection)
    checks = _checks(runs)
    out = Path(out_dir) if out_dir is not None else Path(runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(runs, metrics, confidence=confidence, checks=checks)
    markdown_path = out / MARKDOWN_FILE
    csv_path = out / CSV_FILE
    comparisons_path = out / COMPARISONS_FILE
    markdown_path.write_text(markdown, encoding="utf-8")
    csv_path.write_text(render_csv(runs, metrics, confidence=confidence), encoding="utf-8")
    comparisons_path.write_text(render_comparisons(runs, metrics, confidence=confidence), encoding="utf-8")
    sweeps_path = out / SWEEPS_FILE if runs.choices else None
    if sweeps_path is not None:
        sweeps_path.write_text(render_sweeps_csv(runs.choices), encoding="utf-8")
    return LeaderboardFiles(
        markdown_path=markdown_path,
        csv_path=csv_path,
        markdown=markdown,
        warnings=[*runs.collection.warnings, *checks.warnings],
        n_runs=len(runs.collection.records),
        comparisons_path=comparisons_path,
        sweeps_path=sweeps_path,
    )
