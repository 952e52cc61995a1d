"""Figures of what the models predict on the test split, one figure per ratio with a panel per method:

- :func:`draw_confusion`: the test confusion matrix (from each run's ``result.json``; the run record keeps scalars
  only), rows normalised to the share of the true class's images, mean over seeds, counts summed over seeds;
- :func:`draw_reliability`: the reliability diagram of the top-class softmax probability
  (:func:`bench.calibration.reliability_bins`) over the test images of every seed pooled, with the diagonal of
  perfect calibration and the pooled expected calibration error in the legend.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.calibration import ECE_BINS, ReliabilityBins, expected_calibration_error, reliability_bins
from reports.collect import RunRecord
from reports.formatting import fmt_ratio
from reports.plots import load_outputs, runs_by_label, save_figure, seed_count_text, task_title

#: Up to this many classes a confusion matrix shows each cell's numbers and each class's name.
MAX_ANNOTATED_CLASSES = 12


def read_confusion(record: RunRecord) -> np.ndarray | None:
    """``metrics.test_confusion`` of the run's ``result.json``: int64 [C, C] (rows = true class, columns =
    predicted), or None when absent or malformed."""
    try:
        data = json.loads(record.path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    metrics = data.get("metrics") if isinstance(data, dict) else None
    raw = metrics.get("test_confusion") if isinstance(metrics, dict) else None
    try:
        matrix = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    square = matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1] >= 2
    if not square or not np.isfinite(matrix).all() or (matrix < 0).any() or (matrix != np.round(matrix)).any():
        return None
    return matrix.astype(np.int64)


@dataclass(frozen=True)
class MeanConfusion:
    """Test confusion over seeds: ``rates`` float [C, C] is the mean over seeds of each row divided by its sum
    (nan in a row whose class had no test images in any seed), ``counts`` int [C, C] the sum over seeds, ``n`` the
    number of seeds."""

    rates: np.ndarray
    counts: np.ndarray
    n: int


def mean_confusion(matrices: Sequence[np.ndarray]) -> MeanConfusion | None:
    """Row-normalise each seed's confusion int [C, C] and average the rates over seeds (a seed whose row is empty
    does not count for that row); None without matrices. Matrices of another shape than the first are left out."""
    if not matrices:
        return None
    same = [m for m in matrices if m.shape == matrices[0].shape]
    stack = np.stack(same).astype(np.float64)  # [S, C, C]
    totals = stack.sum(axis=2, keepdims=True)  # [S, C, 1]
    rates = np.divide(stack, totals, out=np.zeros_like(stack), where=totals > 0)
    seeds_with_row = (totals > 0).sum(axis=0)  # [C, 1]
    mean = np.divide(rates.sum(axis=0), seeds_with_row, out=np.full(stack.shape[1:], np.nan), where=seeds_with_row > 0)
    return MeanConfusion(rates=mean, counts=stack.sum(axis=0).astype(np.int64), n=len(same))


def draw_confusion(records: Sequence[RunRecord], *, classes: Sequence[str]) -> Figure | None:
    """One panel per method for the runs of one task, backbone and ratio: :func:`mean_confusion` of their test
    confusion matrices as a heat map of rates, each cell reading ``rate`` over ``count summed over seeds``."""
    panels = []
    for name, runs in runs_by_label(records).items():
        confusion = mean_confusion([m for m in map(read_confusion, runs) if m is not None])
        if confusion is not None:
            panels.append((name, confusion))
    if not panels:
        return None
    size = panels[0][1].rates.shape[0]
    annotate = size <= MAX_ANNOTATED_CLASSES
    names = [classes[i] if i < len(classes) else str(i) for i in range(size)]
    side = 3.0 if size <= 4 else min(3.0 + 0.25 * size, 9.0)
    figure = Figure(figsize=(side * len(panels) + 1.0, side + 0.9), layout="constrained")
    grid = figure.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for axes, (name, confusion) in zip(grid, panels, strict=True):
        image = axes.imshow(confusion.rates, cmap="Blues", vmin=0.0, vmax=1.0)
        axes.set_title(f"{name} ({seed_count_text([confusion.n])})", fontsize="medium")
        axes.set_xlabel("predicted class")
        if annotate:
            axes.set_xticks(range(size), names, rotation=0 if size <= 4 else 90)
            axes.set_yticks(range(size), names)
            for (row, column), rate in np.ndenumerate(confusion.rates):
                text = "—" if np.isnan(rate) else f"{rate:.0%}\n({confusion.counts[row, column]})"
                colour = "white" if not np.isnan(rate) and rate > 0.6 else "black"
                axes.text(column, row, text, ha="center", va="center", fontsize="small", color=colour)
    grid[0].set_ylabel("true class")
    figure.colorbar(image, ax=list(grid), shrink=0.8, label="share of the true class's test images")
    cells = "; cell: share (test images, summed over seeds)" if annotate else ""
    figure.suptitle(
        f"{task_title(records)}, ratio {fmt_ratio(records[0].ratio)}\ntest confusion, rows = true class, mean over "
        f"seeds{cells}",
        fontsize="medium",
    )
    return figure


def plot_confusion(records: Sequence[RunRecord], path: Path, *, classes: Sequence[str]) -> Path | None:
    """:func:`draw_confusion` written to ``path``."""
    return save_figure(draw_confusion(records, classes=classes), path)


def pooled_reliability(runs: Sequence[RunRecord], bins: int = ECE_BINS) -> tuple[ReliabilityBins, int] | None:
    """Reliability bins of the test logits of ``runs`` pooled (every image of every seed once) and the number of
    runs whose outputs could be read; None when none could."""
    labels, logits = [], []
    for record in runs:
        outputs = load_outputs(record.folder, ("labels", "logits"))
        if outputs is not None and outputs["logits"].ndim == 2 and len(outputs["labels"]) == len(outputs["logits"]):
            labels.append(outputs["labels"].astype(np.int64))
            logits.append(outputs["logits"].astype(np.float64))
    if not labels or len({a.shape[1] for a in logits}) != 1:
        return None
    return reliability_bins(np.concatenate(labels), np.concatenate(logits), bins), len(labels)


def draw_reliability(records: Sequence[RunRecord], bins: int = ECE_BINS) -> Figure | None:
    """One panel per method for the runs of one task, backbone and ratio: accuracy of the top class against its
    softmax probability in ``bins`` equal-width bins, every seed's test images pooled; bars = accuracy per bin, the
    dashed diagonal = perfect calibration, the legend gives the pooled ECE."""
    panels = []
    for name, runs in runs_by_label(records).items():
        pooled = pooled_reliability(runs, bins)
        if pooled is not None:
            panels.append((name, *pooled))
    if not panels:
        return None
    figure = Figure(figsize=(3.2 * len(panels), 3.8), layout="constrained")
    grid = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for axes, (name, reliability, n) in zip(grid, panels, strict=True):
        edges = reliability.edges
        filled = reliability.counts > 0
        ece = expected_calibration_error(reliability)
        axes.bar(edges[:-1][filled], reliability.accuracy[filled], width=np.diff(edges)[filled], align="edge",
                 color="#4477aa", edgecolor="white", label=f"accuracy per bin (ECE {ece:.3f})")  # fmt: skip
        axes.bar(edges[:-1][filled], (reliability.confidence - reliability.accuracy)[filled],
                 bottom=reliability.accuracy[filled], width=np.diff(edges)[filled], align="edge", color="#ee6677",
                 alpha=0.35, edgecolor="#ee6677", hatch="//", label="gap to mean confidence")  # fmt: skip
        axes.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="grey", label="perfect calibration")
        axes.set_xlim(0.0, 1.0)
        axes.set_ylim(0.0, 1.0)
        axes.set_aspect("equal")
        axes.set_xlabel("confidence (top-class probability)")
        images = int(reliability.counts.sum())
        axes.set_title(f"{name}\n{seed_count_text([n])} pooled, {images} test images", fontsize="medium")
        axes.legend(fontsize="x-small", loc="upper left")
        axes.grid(alpha=0.3)
    grid[0].set_ylabel("accuracy of the top class")
    figure.suptitle(
        f"{task_title(records)}, ratio {fmt_ratio(records[0].ratio)}\nreliability on the test split "
        f"({bins} equal-width bins of the top-class probability)",
        fontsize="medium",
    )
    return figure


def plot_reliability(records: Sequence[RunRecord], path: Path, bins: int = ECE_BINS) -> Path | None:
    """:func:`draw_reliability` written to ``path``."""
    return save_figure(draw_reliability(records, bins), path)
