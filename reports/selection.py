"""Hyper-parameter sweeps chosen on validation: one row per method, the setting with the best validation mean.

A swept run records its settings (result.json ``sweep``, :attr:`reports.collect.RunRecord.variant`). Per task,
backbone, base method and ratio, each setting's mean validation metric over its finished seeds decides (ties: the
first setting in sorted order); the chosen setting's runs become the method's row, test metrics as reported. The
test split never takes part in the choice: test means are only listed beside the validation means in the sweep
table. A method whose runs lack the validation metric is not chosen for: each setting becomes its own row
(``fscl+os[sim_weight=0.3]``), with a warning and a note.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from reports.collect import Collection, RunRecord, variant_label, variant_text
from reports.formatting import fmt_float, fmt_ratio, md_escape

#: Metrics a sweep can be chosen on (``--select-metric``), without their split prefix; all higher is better.
SELECTABLE_METRICS: tuple[str, ...] = (
    "minority_acc",
    "majority_acc",
    "balanced_acc",
    "acc",
    "macro_f1",
    "many_acc",
    "medium_acc",
    "few_acc",
    "top5_acc",
    "map5",
)
SWEEPS_FILE = "sweeps.csv"
SWEEP_FIELDS: tuple[str, ...] = (
    "task",
    "backbone",
    "method",
    "ratio",
    "setting",
    "chosen",
    "n",
    "n_failed",
    "val_metric",
    "val_mean",
    "test_metric",
    "test_mean",
)
VAL_PREFIX = "val_"
TEST_PREFIX = "test_"
#: Validation means closer than this count as a tie (the first setting in sorted order wins).
TIE_TOLERANCE = 1e-12

Variant = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class SweepCandidate:
    """One setting of a swept method at one ratio: finished runs ``n``, failed runs, validation and test means
    (None without any finished run reporting the metric)."""

    variant: Variant
    n: int
    n_failed: int
    val_mean: float | None
    test_mean: float | None


@dataclass(frozen=True)
class SweepChoice:
    """The settings of one (task, backbone, method, ratio) and the one chosen on ``val_metric``; ``chosen`` is None
    when there was no choice (no validation metric, or no finished run)."""

    task: str
    backbone: str
    method: str
    ratio: float
    val_metric: str
    test_metric: str
    candidates: tuple[SweepCandidate, ...]
    chosen: Variant | None


@dataclass(frozen=True)
class Selection:
    """``collection`` with one row per swept method (its chosen setting's runs) or one row per setting (no choice);
    ``choices`` for the sweep tables, ``left_out`` the runs of settings not chosen, ``notes`` Markdown lines per
    (task, backbone). The collection's warnings include the selection's."""

    collection: Collection
    choices: tuple[SweepChoice, ...] = ()
    left_out: tuple[RunRecord, ...] = ()
    notes: dict[tuple[str, str], list[str]] | None = None


def parse_select_metric(name: str) -> str:
    """``balanced_acc`` (or ``val_balanced_acc``) -> ``val_balanced_acc``; ValueError with a one-line message for a
    test metric (choosing on test would tune on test) or an unknown name."""
    text = name.strip()
    if text.startswith(TEST_PREFIX):
        raise ValueError(
            f"{name!r} is a test metric: settings are chosen on the validation split, never on test; "
            f"name it without {TEST_PREFIX} (e.g. {text.removeprefix(TEST_PREFIX)})"
        )
    base = text.removeprefix(VAL_PREFIX)
    if base not in SELECTABLE_METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of: {', '.join(SELECTABLE_METRICS)}")
    return VAL_PREFIX + base


def default_select_metric(records: Sequence[RunRecord]) -> str:
    """The validation twin of the headline: ``val_balanced_acc`` for a long-tailed task, else ``val_minority_acc``."""
    return "val_balanced_acc" if any(r.is_long_tail for r in records) else "val_minority_acc"


def value_sort_key(value: Any) -> tuple[int, float, str]:
    """Numbers first, by value; then text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def variant_sort_key(variant: Variant) -> tuple[tuple[str, tuple[int, float, str]], ...]:
    """Settings in sorted order: by setting name, then numbers by value (1e-05 before 0.001), then text."""
    return tuple((key, value_sort_key(value)) for key, value in variant)


def _mean(records: Sequence[RunRecord], metric: str) -> float | None:
    values = [r.metrics[metric] for r in records if metric in r.metrics]
    return statistics.fmean(values) if values else None


def _candidate(variant: Variant, records: Sequence[RunRecord], val_metric: str, test_metric: str) -> SweepCandidate:
    finished = _finished(records)
    return SweepCandidate(
        variant=variant,
        n=len(finished),
        n_failed=len(records) - len(finished),
        val_mean=_mean(finished, val_metric),
        test_mean=_mean(finished, test_metric),
    )


def choose(candidates: Sequence[SweepCandidate]) -> Variant | None:
    """The candidate with the highest validation mean (ties within :data:`TIE_TOLERANCE`: the first given); None
    when no candidate has one. Test means are never read."""
    scored = [c for c in candidates if c.val_mean is not None]
    if not scored:
        return None
    best = max(c.val_mean for c in scored if c.val_mean is not None)
    return next(c.variant for c in scored if c.val_mean is not None and c.val_mean >= best - TIE_TOLERANCE)


def _finished(records: Sequence[RunRecord]) -> list[RunRecord]:
    return [r for r in records if r.status == "finished"]


def _lacks(records: Sequence[RunRecord], val_metric: str) -> bool:
    """Whether a finished run of ``records`` lacks ``val_metric``."""
    return any(val_metric not in r.metrics for r in _finished(records))


def select_variants(collection: Collection, metric: str | None = None) -> Selection:
    """Choose each swept method's setting per ratio on the validation ``metric`` (a ``val_*`` name; None: the
    section's :func:`default_select_metric`). Methods without settings pass through unchanged; derived rows too."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for record in collection.records:
        groups.setdefault((record.task, record.backbone, record.method), []).append(record)
    sections: dict[tuple[str, str], list[RunRecord]] = {}
    for record in collection.records:
        sections.setdefault((record.task, record.backbone), []).append(record)

    kept: list[RunRecord] = []
    left_out: list[RunRecord] = []
    choices: list[SweepChoice] = []
    notes: dict[tuple[str, str], list[str]] = {}
    warnings = list(collection.warnings)
    for (task, backbone, method), group in groups.items():
        if all(not r.variant for r in group) or any(r.derived for r in group):
            kept += group
            continue
        val_metric = metric or default_select_metric(sections[(task, backbone)])
        test_metric = TEST_PREFIX + val_metric.removeprefix(VAL_PREFIX)
        variants = sorted({r.variant for r in group}, key=variant_sort_key)
        by_ratio: dict[float, dict[Variant, list[RunRecord]]] = {}
        for r in group:
            by_ratio.setdefault(r.ratio, {}).setdefault(r.variant, []).append(r)
        finished = [runs for v in by_ratio.values() for runs in v.values() if any(_finished(runs))]
        if not finished or any(_lacks(runs, val_metric) for runs in finished):
            labels = ", ".join(variant_text(v) or "(not swept)" for v in variants)
            warnings.append(
                f"{task} — {backbone}, {method}: settings {labels} but no validation metric {val_metric} in every "
                "finished run to choose on; each setting is shown as its own row"
            )
            notes.setdefault((task, backbone), []).append(
                f"- {md_escape(method)}: no setting chosen (its runs lack the validation metric `{val_metric}`; "
                "choosing on test would tune on test): each setting is its own row."
            )
            kept += [replace(r, method=variant_label(r.method, r.variant)) for r in group]
            continue
        for ratio in sorted(by_ratio, reverse=True):
            by_variant = by_ratio[ratio]
            ordered = sorted(by_variant, key=variant_sort_key)
            candidates = tuple(_candidate(v, by_variant[v], val_metric, test_metric) for v in ordered)
            chosen = choose(candidates)
            choices.append(SweepChoice(task, backbone, method, ratio, val_metric, test_metric, candidates, chosen))
            for variant in ordered:
                # nothing finished at this ratio: every failure stays in the row (✗k), none is chosen
                (kept if chosen is None or variant == chosen else left_out).extend(by_variant[variant])
    return Selection(
        collection=Collection(records=kept, warnings=warnings, incomplete=collection.incomplete),
        choices=tuple(choices),
        left_out=tuple(left_out),
        notes=notes,
    )


def _fmt_mean(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def sweep_table(choices: Sequence[SweepChoice], method_order: Sequence[str]) -> list[str]:
    """Markdown lines of one section's sweep table: one row per (method, ratio, setting), the chosen one in bold with
    ✓; validation and test means over the finished seeds (n). No lines when ``choices`` is empty."""
    if not choices:
        return []
    rank = {m: i for i, m in enumerate(method_order)}
    ordered = sorted(choices, key=lambda c: (rank.get(c.method, len(rank)), c.method, -c.ratio))
    lines = [
        f"| method | ratio | setting | validation mean (`{ordered[0].val_metric}`) | "
        f"test mean (`{ordered[0].test_metric}`) | n | chosen |",
        "|:---|---:|:---|---:|---:|---:|:---:|",
    ]
    for choice in ordered:
        for c in choice.candidates:
            chosen = c.variant == choice.chosen
            setting = variant_text(c.variant) or "(not swept)"
            setting = f"**{setting}**" if chosen else setting
            failed = f" ✗{c.n_failed}" if c.n_failed else ""
            lines.append(
                f"| {md_escape(choice.method)} | {fmt_ratio(choice.ratio)} | {md_escape(setting)} | "
                f"{_fmt_mean(c.val_mean)} | {_fmt_mean(c.test_mean)} | {c.n}{failed} | {'✓' if chosen else ''} |"
            )
    return lines


def render_sweeps_csv(choices: Sequence[SweepChoice]) -> str:
    """``sweeps.csv``: one row per (task, backbone, method, ratio, setting) with its validation and test means over
    its finished seeds, ``chosen`` 1 for the setting chosen on validation (0 otherwise)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SWEEP_FIELDS), lineterminator="\n")
    writer.writeheader()
    for choice in choices:
        for c in choice.candidates:
            writer.writerow(
                {
                    "task": choice.task,
                    "backbone": choice.backbone,
                    "method": choice.method,
                    "ratio": fmt_float(choice.ratio),
                    "setting": variant_text(c.variant),
                    "chosen": int(c.variant == choice.chosen),
                    "n": c.n,
                    "n_failed": c.n_failed,
                    "val_metric": choice.val_metric,
                    "val_mean": fmt_float(c.val_mean),
                    "test_metric": choice.test_metric,
                    "test_mean": fmt_float(c.test_mean),
                }
            )
    return buffer.getvalue()
