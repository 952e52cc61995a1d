"""Checks that a table cell's runs measured what its row and column say: one hardware setup, the asked ratio.

- **Hardware** (``‡``): a cell (task x backbone x method x ratio) whose runs record different device types or
  precisions (``"hardware"`` of result.json: ``cuda/bf16`` vs ``cpu/fp32``), or whose runs record it only partly
  (runs written before the key existed are "unknown"; unknown runs alone are not flagged against each other).
  Failed runs count too: they are part of the cell (✗k). Channels-last and compile are not compared.
- **Actual ratio** (``†``): a cell with a run whose actual ratio (minority / majority training images used) differs
  from the column's asked ratio: the minority count is rounded to whole images (at least 1) and capped by the images
  available.
- **Same subset**: two asked ratios of one task, backbone, method and seed that trained on the same numbers of
  images per class, hence (subsets are nested) on the same images: those columns repeat one experiment.

Derived rows (soft-voting ensembles, post-hoc adjustments) are marked for the actual ratio only (they inherit it from
their runs) and are not named in the notes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reports.aggregate import CellKey, group_records, method_sort_key
from reports.collect import RunRecord
from reports.formatting import fmt_ratio, md_escape

RATIO_MARK = "†"
HARDWARE_MARK = "‡"
UNKNOWN_HARDWARE = "unknown"
SubsetRuns = dict[tuple[tuple[float, ...], str], list[tuple[str, int]]]  # (ratios, counts) -> [(method, seed)]
#: result.json keeps the actual ratio to 6 decimals; closer than this to the asked ratio is "the asked ratio".
RATIO_TOLERANCE = 1e-6


@dataclass(frozen=True)
class RunChecks:
    """The checks' findings: marks per table cell, Markdown note lines per (task, backbone), one-line warnings."""

    marks: dict[CellKey, str]
    notes: dict[tuple[str, str], list[str]]
    warnings: list[str]


def hardware_label(record: RunRecord) -> str:
    """``cuda/bf16`` from a result's ``hardware`` (device type / precision); ``unknown`` when it is not recorded."""
    device, precision = record.hardware.get("device_type"), record.hardware.get("precision")
    if isinstance(device, str) and device and isinstance(precision, str) and precision:
        return f"{device}/{precision}"
    return UNKNOWN_HARDWARE


def _seeds(seeds: Sequence[int]) -> str:
    ordered = sorted(set(seeds))
    return f"seed{'s' if len(ordered) > 1 else ''} {', '.join(str(s) for s in ordered)}"


def _methods(methods: Sequence[str]) -> str:
    return ", ".join(sorted(set(methods), key=method_sort_key))


def _counts(record: RunRecord) -> str:
    """``135 vs 1 training images`` (first class vs last: majority vs minority, head vs tail); '' if not recorded."""
    if not record.classes or not record.train_counts:
        return ""
    first, last = record.train_counts.get(record.classes[0]), record.train_counts.get(record.classes[-1])
    return "" if first is None or last is None else f"{first} vs {last} training images"


def _hardware(cell: CellKey, group: Sequence[RunRecord]) -> tuple[str, str] | None:
    """(warning, note) when the cell's runs mix hardware or record it only partly; None when they agree."""
    by_label: dict[str, list[int]] = {}
    for record in group:
        by_label.setdefault(hardware_label(record), []).append(record.seed)
    known = [label for label in by_label if label != UNKNOWN_HARDWARE]
    if len(known) <= 1 and (not known or UNKNOWN_HARDWARE not in by_label):
        return None
    kind = "mix hardware" if len(known) > 1 else "record their hardware only partly"
    parts = ", ".join(f"{label} ({_seeds(seeds)})" for label, seeds in sorted(by_label.items()))
    task, backbone, method, ratio = cell
    warning = f"{task} — {backbone}, {method} at ratio {fmt_ratio(ratio)}: the runs {kind}: {parts}"
    note = f"- {HARDWARE_MARK} {md_escape(method)} at ratio {fmt_ratio(ratio)}: the runs {kind}: {md_escape(parts)}."
    return warning, note


def _off_ratio(group: Sequence[RunRecord], asked: float) -> list[RunRecord]:
    """The runs whose recorded actual ratio is not the asked one."""
    return [
        r
        for r in group
        if r.actual_ratio is not None and not math.isclose(r.actual_ratio, asked, rel_tol=0, abs_tol=RATIO_TOLERANCE)
    ]


def _same_subsets(records: Sequence[RunRecord]) -> dict[tuple[str, str], SubsetRuns]:
    """Per (task, backbone): (asked ratios, counts text) -> [(method, seed)] for ratios that trained the same counts."""
    by_run: dict[tuple[str, str, str, int], dict[tuple[tuple[str, int], ...], list[RunRecord]]] = {}
    for r in records:
        if r.train_counts:
            counts = tuple(sorted(r.train_counts.items()))
            by_run.setdefault((r.task, r.backbone, r.method, r.seed), {}).setdefault(counts, []).append(r)
    found: dict[tuple[str, str], SubsetRuns] = {}
    for (task, backbone, method, seed), by_counts in by_run.items():
        for same in by_counts.values():
            ratios = tuple(sorted({r.ratio for r in same}, reverse=True))
            if len(ratios) > 1:
                key = (ratios, _counts(same[0]))
                found.setdefault((task, backbone), {}).setdefault(key, []).append((method, seed))
    return found


def check_runs(records: Sequence[RunRecord]) -> RunChecks:
    """Mark and explain the cells whose runs mix hardware or missed the asked ratio, and ratios that share a subset."""
    marks: dict[CellKey, str] = {}
    notes: dict[tuple[str, str], list[str]] = {}
    warnings: list[str] = []
    off: dict[tuple[str, str], dict[tuple[float, float, str], list[str]]] = {}
    for cell, group in group_records(records).items():
        task, backbone, method, ratio = cell
        off_ratio = _off_ratio(group, ratio)
        for r in off_ratio:
            if not r.derived:  # a derived row inherits its runs' ratio: marked, but not named again in the notes
                off.setdefault((task, backbone), {}).setdefault((ratio, r.actual_ratio, _counts(r)), []).append(method)
        hardware = None if any(r.derived for r in group) else _hardware(cell, group)
        if hardware is not None:
            warnings.append(hardware[0])
            notes.setdefault((task, backbone), []).append(hardware[1])
        mark = (RATIO_MARK if off_ratio else "") + (HARDWARE_MARK if hardware else "")
        if mark:
            marks[cell] = mark
    for (task, backbone), found in off.items():
        for (asked, actual, counts), methods in sorted(found.items(), key=lambda item: -item[0][0]):
            detail = f"actual ratio {actual:g}" + (f" ({counts})" if counts else "")
            warnings.append(f"{task} — {backbone} at ratio {fmt_ratio(asked)}: {_methods(methods)} trained at {detail}")
            notes.setdefault((task, backbone), []).append(
                f"- {RATIO_MARK} ratio {fmt_ratio(asked)}: {detail} for {md_escape(_methods(methods))} "
                "(the count is rounded to whole images, at least 1, and capped by the images available)."
            )
    for (task, backbone), found in _same_subsets([r for r in records if not r.derived]).items():
        for (ratios, counts), runs in found.items():
            asked = " and ".join(fmt_ratio(r) for r in ratios)
            what = f"the same subset{f' ({counts})' if counts else ''}"
            who = f"{_methods([m for m, _ in runs])} ({_seeds([s for _, s in runs])})"
            warnings.append(f"{task} — {backbone}: ratios {asked} trained on {what} for {who}")
            notes.setdefault((task, backbone), []).append(
                f"- Ratios {asked} trained on {what} for {md_escape(who)}: their columns repeat one experiment."
            )
    return RunChecks(marks=marks, notes=notes, warnings=warnings)
