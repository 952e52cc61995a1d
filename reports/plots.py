"""The report's figures, drawn with matplotlib's object API (no pyplot state, no display needed).

- :func:`plot_accuracy_vs_ratio`: a metric against the imbalance ratio (log axis), one line per method, error
  bars = the Student-t interval over seeds (the paper's Figure 3);
- :func:`plot_training_curves`: per method, the loss terms and the train accuracy per epoch from
  ``metrics.jsonl`` (mean over seeds, band = min..max);
- :func:`plot_feature_space`: per method, the test images' pre-logits features of one run projected to 2-D by
  PCA, coloured by class (the paper's Figure 2), from ``test_outputs.npz``.

Each function returns the path written, or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from reports.aggregate import method_sort_key
from reports.collect import RunRecord
from reports.formatting import fmt_ratio
from reports.statistics import DEFAULT_CONFIDENCE, Interval, cell_intervals

METRICS_FILE = "metrics.jsonl"
OUTPUTS_FILE = "test_outputs.npz"
#: Points per class drawn in a feature-space panel (a fixed random sample when the test split is larger).
MAX_POINTS_PER_CLASS = 600
CLASS_COLOURS = ("#4477aa", "#ee6677")  # majority, minority (colour-blind safe); more classes: tab10 / tab20
DPI = 110


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _methods(records: Sequence[RunRecord]) -> list[str]:
    return sorted({r.method for r in records}, key=method_sort_key)


def ratio_series(
    records: Sequence[RunRecord], metric: str, confidence: float = DEFAULT_CONFIDENCE
) -> dict[str, list[tuple[float, Interval]]]:
    """Per method (preferred order): ``(ratio, interval of metric over seeds)`` by ascending ratio, cells with data."""
    intervals = cell_intervals(records, metric, confidence)
    series: dict[str, list[tuple[float, Interval]]] = {}
    for method in _methods(records):
        cells = [(key[3], value) for key, value in intervals.items() if key[2] == method and value.mean is not None]
        if cells:
            series[method] = sorted(cells, key=lambda cell: cell[0])
    return series


def plot_accuracy_vs_ratio(
    records: Sequence[RunRecord],
    path: Path,
    *,
    metric: str = "test_minority_acc",
    label: str = "minority-class accuracy",
    confidence: float = DEFAULT_CONFIDENCE,
) -> Path | None:
    """``metric`` (mean over seeds) against the ratio for the records of one task and backbone.

    Error bars span the Student-t interval; a cell with one finished seed has a point without a bar. Methods are
    nudged apart sideways (by a few percent of the ratio) so that their bars do not hide each other.
    """
    series = ratio_series(records, metric, confidence)
    if not series:
        return None
    figure = Figure(figsize=(6.4, 4.2))
    axes = figure.add_subplot()
    for position, (method, cells) in enumerate(series.items()):
        nudge = 10 ** (0.025 * (position - (len(series) - 1) / 2))
        x = np.array([ratio * nudge for ratio, _ in cells])
        y = np.array([interval.mean for _, interval in cells])
        below = [interval.mean - interval.low if interval.low is not None else 0.0 for _, interval in cells]
        above = [interval.high - interval.mean if interval.high is not None else 0.0 for _, interval in cells]
        axes.errorbar(x, y, yerr=np.array([below, above]), marker="o", markersize=4, capsize=3, label=method)
    ratios = sorted({r.ratio for r in records})
    axes.set_xscale("log")
    axes.set_xticks(ratios, [fmt_ratio(r) for r in ratios])
    axes.minorticks_off()
    axes.set_xlabel("imbalance ratio (minority / majority training images)")
    axes.set_ylabel(label)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(title="method", fontsize="small")
    axes.set_title(f"mean over seeds, bars: {confidence * 100:g}% t-interval", fontsize="small")
    return _save(figure, path)


def read_epochs(folder: Path) -> list[dict[str, float]]:
    """The rows of a run's ``metrics.jsonl`` (empty if the file is missing; unreadable lines are skipped)."""
    try:
        lines = (folder / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
    return rows


def epoch_curves(records: Sequence[RunRecord], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(epochs, values [runs, epochs])`` of ``key`` over the runs' common epochs, or None."""
    series = []
    for record in records:
        rows = [row for row in read_epochs(record.folder) if isinstance(row.get(key), (int, float))]
        if rows:
            series.append({row["epoch"]: float(row[key]) for row in rows})
    if not series:
        return None
    epochs = sorted(set.intersection(*(set(s) for s in series)))
    if not epochs:
        return None
    return np.array(epochs), np.array([[s[e] for e in epochs] for s in series])


def loss_keys(records: Sequence[RunRecord]) -> list[str]:
    """The loss columns of the runs' first epochs: the terms (``train_loss_<term>``), preceded by the total
    ``train_loss`` only when there are several terms (with one term the two are the same curve)."""
    keys: set[str] = set()
    for record in records:
        for row in read_epochs(record.folder)[:1]:
            keys.update(k for k in row if k.startswith("train_loss_"))
    terms = sorted(keys)
    return ["train_loss", *terms] if len(terms) != 1 else terms


def plot_training_curves(records: Sequence[RunRecord], path: Path) -> Path | None:
    """One column per method: loss terms (top) and train accuracy (bottom) per epoch for the given runs
    (one task, backbone and ratio), mean over seeds with a min..max band. Terms are unweighted."""
    finished = [r for r in records if r.status == "finished"]
    methods = [m for m in _methods(finished) if epoch_curves([r for r in finished if r.method == m], "train_acc")]
    if not methods:
        return None
    figure = Figure(figsize=(2.9 * len(methods), 5.2))
    grid = figure.subplots(2, len(methods), sharex=True, squeeze=False)
    for column, method in enumerate(methods):
        runs = [r for r in finished if r.method == method]
        loss_axes, acc_axes = grid[0][column], grid[1][column]
        for key in loss_keys(runs):
            curve = epoch_curves(runs, key)
            if curve is not None:
                _band(loss_axes, *curve, "total" if key == "train_loss" else key.removeprefix("train_loss_"))
        loss_axes.set_title(f"{method} (n={len(runs)})", fontsize="medium")
        loss_axes.legend(fontsize="x-small")
        loss_axes.grid(alpha=0.3)
        accuracy = epoch_curves(runs, "train_acc")
        if accuracy is not None:
            _band(acc_axes, *accuracy, "train accuracy")
        acc_axes.set_ylim(0.0 if any(r.is_long_tail for r in runs) else 0.4, 1.01)  # many classes start lower
        acc_axes.set_xlabel("epoch")
        acc_axes.grid(alpha=0.3)
    grid[0][0].set_ylabel("training loss (per image)")
    grid[1][0].set_ylabel("train accuracy")
    return _save(figure, path)


def _band(axes, epochs: np.ndarray, values: np.ndarray, label: str) -> None:
    (line,) = axes.plot(epochs, values.mean(axis=0), label=label)
    if len(values) > 1:
        axes.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)


def load_outputs(folder: Path) -> dict[str, np.ndarray] | None:
    """A run's ``test_outputs.npz`` as arrays (``features``, ``labels``, ``logits``), or None if absent/unreadable."""
    try:
        with np.load(folder / OUTPUTS_FILE) as stored:
            return {name: stored[name] for name in ("features", "labels", "logits")}
    except (OSError, ValueError, KeyError):
        return None


def project_features(features: np.ndarray) -> np.ndarray:
    """L2-normalise each row (as the separation metric does), then PCA to 2-D: float [N, 2]."""
    unit = features.astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    return PCA(n_components=2, random_state=0).fit_transform(unit)


def plot_feature_space(
    records: Sequence[RunRecord], path: Path, *, classes: Sequence[str] = ("majority", "minority")
) -> Path | None:
    """One panel per method: PCA of the test features of that method's run (one run each: same task, backbone,
    ratio and seed), points coloured by true class (``classes``: names by label), the run's silhouette in the title."""
    panels = []
    for record in sorted(records, key=lambda r: method_sort_key(r.method)):
        outputs = load_outputs(record.folder) if record.status == "finished" else None
        if outputs is not None and len(outputs["labels"]) > 2:
            panels.append((record, outputs))
    if not panels:
        return None
    figure = Figure(figsize=(3.1 * len(panels), 3.4))
    grid = figure.subplots(1, len(panels), squeeze=False)[0]
    rng = np.random.default_rng(0)
    shown = max(len(classes), 2)
    palette = colormaps["tab10" if shown <= 10 else "tab20"]
    colours = CLASS_COLOURS if shown <= 2 else [palette(i % palette.N) for i in range(shown)]
    for axes, (record, outputs) in zip(grid, panels, strict=True):
        points, labels = project_features(outputs["features"]), outputs["labels"]
        for label in range(shown):
            where = np.flatnonzero(labels == label)
            if len(where) > MAX_POINTS_PER_CLASS:
                where = np.sort(rng.choice(where, MAX_POINTS_PER_CLASS, replace=False))
            name = classes[label] if label < len(classes) else str(label)
            axes.scatter(*points[where].T, s=4, alpha=0.5, color=colours[label], label=name, linewidths=0)
        silhouette = record.metrics.get("test_feature_silhouette")
        subtitle = f"silhouette {silhouette:.3f}" if silhouette is not None else "silhouette —"
        axes.set_title(f"{record.method}\n{subtitle}", fontsize="medium")
        axes.set_xticks([])
        axes.set_yticks([])
    grid[0].legend(fontsize="x-small", markerscale=3, loc="best")
    return _save(figure, path)
