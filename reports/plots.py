"""The report's figures, drawn with matplotlib's object API (no pyplot state, no display needed).

- :func:`plot_accuracy_vs_ratio`: a metric against the imbalance ratio (log axis), one line per method (the mean
  over seeds), the seeds themselves as dots when there are few, error bars = the Student-t interval over seeds
  clipped to the metric's range (the paper's Figure 3);
- :func:`plot_training_curves`: per method, the loss terms and the train accuracy per epoch from
  ``metrics.jsonl`` (mean over seeds, band = min..max);
- :func:`plot_feature_space`: per method, the test images' pre-logits features of one run projected to 2-D by
  PCA, coloured by class (the paper's Figure 2), from ``test_outputs.npz``.

Each ``draw_*`` function returns the :class:`~matplotlib.figure.Figure` (or ``None`` when there is nothing to
draw); each ``plot_*`` draws it and returns the path written. A method's runs are told apart by their swept
settings (:attr:`RunRecord.label`: ``fscl+os[sim_weight=0.3]``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA

from reports.aggregate import method_sort_key
from reports.collect import RunRecord
from reports.formatting import fmt_ratio
from reports.statistics import DEFAULT_CONFIDENCE, Interval, t_interval

METRICS_FILE = "metrics.jsonl"
OUTPUTS_FILE = "test_outputs.npz"
OUTPUT_ARRAYS = ("features", "labels", "logits")
#: Points per class drawn in a feature-space panel (a fixed random sample when the test split is larger).
MAX_POINTS_PER_CLASS = 600
CLASS_COLOURS = ("#4477aa", "#ee6677")  # majority, minority (colour-blind safe); more classes: tab10 / tab20
CLASS_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "<", ">", "*")
DPI = 110
#: The range a metric's values can take (intervals are clipped to it); any metric not listed lies in [0, 1].
METRIC_RANGES: dict[str, tuple[float, float]] = {"test_feature_silhouette": (-1.0, 1.0)}
#: Up to this many seeds in a point, each seed is drawn as a dot beside the mean.
MAX_SEEDS_SHOWN = 5
SEEDS_GID = "seeds"  # the dots of single seeds in accuracy_vs_ratio (for finding them in the Figure)


def save_figure(figure: Figure | None, path: Path) -> Path | None:
    """Write ``figure`` as a PNG at ``path`` (folders made); None when there is no figure."""
    if figure is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def label_sort_key(record: RunRecord) -> tuple[tuple[int, str], str]:
    """Methods in the preferred order, a method's variants by their label."""
    return (method_sort_key(record.method), record.label)


def labels_in_order(records: Sequence[RunRecord]) -> list[str]:
    """The distinct ``label`` of ``records``, methods in the preferred order."""
    return list(dict.fromkeys(r.label for r in sorted(records, key=label_sort_key)))


def task_title(records: Sequence[RunRecord]) -> str:
    """``fine: 1 (majority) vs 8 (minority)``, or ``lt: 10 classes`` for a long-tailed task."""
    task = records[0].task if records else ""
    classes = next((r.classes for r in records if len(r.classes) >= 2), ())
    if len(classes) == 2:
        return f"{task}: {classes[0]} (majority) vs {classes[1]} (minority)"
    return f"{task}: {len(classes)} classes" if classes else task


def seed_count_text(counts: Sequence[int]) -> str:
    """``n = 3 seeds``, or ``n = 2–3 seeds`` when the count varies (``1 seed`` in the singular)."""
    low, high = min(counts), max(counts)
    if low == high:
        return f"n = {low} seed" + ("s" if low != 1 else "")
    return f"n = {low}–{high} seeds"


def metric_range(metric: str) -> tuple[float, float]:
    """Where ``metric``'s values lie: [-1, 1] for the silhouette, [0, 1] for accuracies and the rest."""
    return METRIC_RANGES.get(metric, (0.0, 1.0))


def clipped_interval(interval: Interval, value_range: tuple[float, float]) -> tuple[float, float] | None:
    """``(low, high)`` of ``interval`` clipped to ``value_range``; None when it has no interval (n < 2)."""
    if interval.low is None or interval.high is None:
        return None
    return max(interval.low, value_range[0]), min(interval.high, value_range[1])


def seed_values(records: Sequence[RunRecord], metric: str) -> dict[str, dict[float, list[float]]]:
    """Per run label (preferred order), per ratio (ascending): ``metric`` of each finished run, seeds ascending."""
    values: dict[str, dict[float, list[float]]] = {}
    for record in sorted(records, key=lambda r: (label_sort_key(r), r.ratio, r.seed)):
        if record.status == "finished" and metric in record.metrics:
            by_ratio = values.setdefault(record.label, {})
            by_ratio.setdefault(record.ratio, []).append(record.metrics[metric])
    return {label: dict(sorted(by_ratio.items())) for label, by_ratio in values.items()}


def ratio_series(
    records: Sequence[RunRecord], metric: str, confidence: float = DEFAULT_CONFIDENCE
) -> dict[str, list[tuple[float, Interval]]]:
    """Per run label (preferred order): ``(ratio, interval of metric over seeds)`` by ascending ratio, cells with
    data."""
    return {
        label: [(ratio, t_interval(values, confidence)) for ratio, values in by_ratio.items()]
        for label, by_ratio in seed_values(records, metric).items()
    }


def _value_limits(values: list[float], value_range: tuple[float, float]) -> tuple[float, float]:
    """Y limits: the whole range for [0, 1]; otherwise the data's range (with 0) padded, within ``value_range``."""
    low, high = value_range
    if value_range == (0.0, 1.0):
        return low - 0.02, high + 0.02
    data_low, data_high = min([*values, 0.0]), max([*values, 0.0])
    pad = max(0.05 * (data_high - data_low), 0.02 * (high - low))
    return max(data_low - pad, low - 0.02 * (high - low)), min(data_high + pad, high + 0.02 * (high - low))


def draw_accuracy_vs_ratio(
    records: Sequence[RunRecord],
    *,
    metric: str = "test_minority_acc",
    label: str = "minority-class accuracy",
    confidence: float = DEFAULT_CONFIDENCE,
) -> Figure | None:
    """``metric`` (mean over seeds, the line) against the ratio for the records of one task and backbone.

    Error bars span the Student-t interval clipped to the metric's range (:func:`metric_range`); a cell with one
    finished seed has a point without a bar. With at most :data:`MAX_SEEDS_SHOWN` seeds per point, each seed is a
    dot. Methods are nudged apart sideways (by a few percent of the ratio) so that their bars do not hide each
    other. The title names the task, its classes and n.
    """
    values = seed_values(records, metric)
    if not values:
        return None
    value_range = metric_range(metric)
    counts = [len(seeds) for by_ratio in values.values() for seeds in by_ratio.values()]
    show_seeds = max(counts) <= MAX_SEEDS_SHOWN
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    axes = figure.add_subplot()
    shown: list[float] = []
    for position, (name, by_ratio) in enumerate(values.items()):
        nudge = 10 ** (0.025 * (position - (len(values) - 1) / 2))
        x = np.array([ratio * nudge for ratio in by_ratio])
        intervals = [t_interval(seeds, confidence) for seeds in by_ratio.values()]
        y = np.array([interval.mean for interval in intervals])
        clipped = [clipped_interval(interval, value_range) for interval in intervals]
        below = [mean - c[0] if c else 0.0 for mean, c in zip(y, clipped, strict=True)]
        above = [c[1] - mean if c else 0.0 for mean, c in zip(y, clipped, strict=True)]
        bars = axes.errorbar(x, y, yerr=np.array([below, above]), marker="o", markersize=4, capsize=3, label=name)
        shown += [*y, *(end for c in clipped if c for end in c)]
        if show_seeds:
            dots_x = np.concatenate([np.full(len(seeds), xi) for xi, seeds in zip(x, by_ratio.values(), strict=True)])
            dots_y = np.concatenate([seeds for seeds in by_ratio.values()])
            colour = bars.lines[0].get_color()
            axes.scatter(dots_x, dots_y, s=14, color=colour, alpha=0.55, linewidths=0, zorder=3, gid=SEEDS_GID)
            shown += list(dots_y)
    ratios = sorted({r.ratio for r in records})
    axes.set_xscale("log")
    axes.set_xticks(ratios, [fmt_ratio(r) for r in ratios])
    axes.minorticks_off()
    axes.set_xlabel("imbalance ratio (minority / majority training images)")
    axes.set_ylabel(label)
    axes.set_ylim(*_value_limits(shown, value_range))
    if value_range[0] < 0.0 < value_range[1]:
        axes.axhline(0.0, color="grey", linewidth=0.8, zorder=0)
    axes.grid(alpha=0.3)
    axes.legend(title="method", fontsize="small")
    dots = "; dots: single seeds" if show_seeds else ""
    level = f"{confidence * 100:g}% t-interval clipped to [{value_range[0]:g}, {value_range[1]:g}]"
    axes.set_title(
        f"{task_title(records)}, {seed_count_text(counts)} per point\nline: mean over seeds{dots}; bars: {level}",
        fontsize="small",
    )
    return figure


def plot_accuracy_vs_ratio(
    records: Sequence[RunRecord],
    path: Path,
    *,
    metric: str = "test_minority_acc",
    label: str = "minority-class accuracy",
    confidence: float = DEFAULT_CONFIDENCE,
) -> Path | None:
    """:func:`draw_accuracy_vs_ratio` written to ``path``."""
    return save_figure(draw_accuracy_vs_ratio(records, metric=metric, label=label, confidence=confidence), path)


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


def loss_legend(key: str) -> str:
    """A loss column's legend text: ``total loss``, or ``loss term: ce`` (a term, not the method's name)."""
    return "total loss" if key == "train_loss" else f"loss term: {key.removeprefix('train_loss_')}"


def trained_runs(records: Sequence[RunRecord]) -> list[RunRecord]:
    """The finished runs that trained (ensemble and post-hoc rows reuse other runs' folders)."""
    return [r for r in records if r.status == "finished" and not r.derived]


def runs_by_label(records: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """:func:`trained_runs` grouped by ``label``, methods in the preferred order."""
    trained = trained_runs(records)
    return {name: [r for r in trained if r.label == name] for name in labels_in_order(trained)}


def draw_training_curves(records: Sequence[RunRecord]) -> Figure | None:
    """One column per method: loss terms (top) and train accuracy (bottom) per epoch for the given runs
    (one task, backbone and ratio), mean over seeds with a min..max band. Terms are unweighted. Rows share their
    y-axis; epochs are integer ticks."""
    finished = trained_runs(records)
    by_label = {name: runs for name, runs in runs_by_label(finished).items() if epoch_curves(runs, "train_acc")}
    if not by_label:
        return None
    figure = Figure(figsize=(2.9 * len(by_label) + 0.4, 5.8), layout="constrained")
    grid = figure.subplots(2, len(by_label), sharex=True, sharey="row", squeeze=False)
    for column, (name, runs) in enumerate(by_label.items()):
        loss_axes, acc_axes = grid[0][column], grid[1][column]
        for key in loss_keys(runs):
            curve = epoch_curves(runs, key)
            if curve is not None:
                _band(loss_axes, *curve, loss_legend(key))
        loss_axes.set_title(f"{name} ({seed_count_text([len(runs)])})", fontsize="medium")
        loss_axes.legend(fontsize="x-small")
        loss_axes.grid(alpha=0.3)
        _band(acc_axes, *epoch_curves(runs, "train_acc"), "train accuracy")
        acc_axes.set_xlabel("epoch")
        acc_axes.grid(alpha=0.3)
    grid[1][0].set_ylim(0.0 if any(r.is_long_tail for r in finished) else 0.4, 1.01)  # many classes start lower
    grid[1][0].xaxis.set_major_locator(MaxNLocator(integer=True))
    grid[0][0].set_ylabel("training loss (per image)")
    grid[1][0].set_ylabel("train accuracy")
    ratio = fmt_ratio(finished[0].ratio)
    figure.suptitle(
        f"{task_title(finished)}, ratio {ratio}\ntraining per epoch: mean over seeds, band = min..max",
        fontsize="medium",
    )
    return figure


def plot_training_curves(records: Sequence[RunRecord], path: Path) -> Path | None:
    """:func:`draw_training_curves` written to ``path``."""
    return save_figure(draw_training_curves(records), path)


def _band(axes, epochs: np.ndarray, values: np.ndarray, label: str) -> None:
    (line,) = axes.plot(epochs, values.mean(axis=0), label=label)
    if len(values) > 1:
        axes.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)


def load_outputs(folder: Path, names: Sequence[str] = OUTPUT_ARRAYS) -> dict[str, np.ndarray] | None:
    """The arrays ``names`` of a run's ``test_outputs.npz`` (``features``, ``labels``, ``logits``), plus ``ids`` when
    the run saved them; None if the file is absent or unreadable or lacks one of ``names``."""
    try:
        with np.load(folder / OUTPUTS_FILE) as stored:
            outputs = {name: stored[name] for name in names}
            if "ids" in stored.files:
                outputs["ids"] = stored["ids"]
            return outputs
    except (OSError, ValueError, KeyError):
        return None


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalise each row (as the separation metric does), then PCA to 2-D: points float [N, 2] and the share of
    the variance each component explains, float [2]."""
    unit = features.astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    pca = PCA(n_components=2, random_state=0)
    return pca.fit_transform(unit), pca.explained_variance_ratio_


def project_features(features: np.ndarray) -> np.ndarray:
    """The points of :func:`pca_2d`: float [N, 2]."""
    return pca_2d(features)[0]


def class_colours(count: int) -> list:
    """One colour per class: the two colour-blind-safe ones for a binary task, tab10 / tab20 beyond."""
    if count <= 2:
        return list(CLASS_COLOURS[:count])
    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(count)]


def draw_feature_space(
    records: Sequence[RunRecord], *, classes: Sequence[str] = ("majority", "minority")
) -> Figure | None:
    """One panel per method: PCA of the test features of that method's run (one run each: same task, backbone,
    ratio and seed), points coloured and shaped by true class (``classes``: names by label), axes labelled with the
    variance each component explains, the run's silhouette in the panel title, ratio and seed in the figure's."""
    panels = []
    for record in sorted(trained_runs(records), key=label_sort_key):
        outputs = load_outputs(record.folder)
        if outputs is not None and len(outputs["labels"]) > 2:
            panels.append((record, outputs))
    if not panels:
        return None
    figure = Figure(figsize=(3.3 * len(panels) + 0.4, 4.1), layout="constrained")
    grid = figure.subplots(1, len(panels), squeeze=False)[0]
    rng = np.random.default_rng(0)
    shown = max(len(classes), 2)
    colours = class_colours(shown)
    for axes, (record, outputs) in zip(grid, panels, strict=True):
        points, explained = pca_2d(outputs["features"])
        labels = outputs["labels"]
        for label in range(shown):
            where = np.flatnonzero(labels == label)
            if len(where) > MAX_POINTS_PER_CLASS:
                where = np.sort(rng.choice(where, MAX_POINTS_PER_CLASS, replace=False))
            name = classes[label] if label < len(classes) else str(label)
            marker = CLASS_MARKERS[label % len(CLASS_MARKERS)]
            axes.scatter(*points[where].T, s=14, alpha=0.8, color=colours[label], marker=marker, label=name,
                         linewidths=0)  # fmt: skip
        silhouette = record.metrics.get("test_feature_silhouette")
        subtitle = f"silhouette {silhouette:.3f}" if silhouette is not None else "silhouette —"
        axes.set_title(f"{record.label}\n{subtitle}", fontsize="medium")
        axes.set_xlabel(f"PC1 ({explained[0] * 100:.0f}% of variance)")
        axes.set_ylabel(f"PC2 ({explained[1] * 100:.0f}% of variance)")
        axes.set_xticks([])
        axes.set_yticks([])
    grid[0].legend(fontsize="x-small", markerscale=1.5, loc="best", title="true class", title_fontsize="x-small")
    first = panels[0][0]
    figure.suptitle(
        f"{task_title(records)}\ntest features at ratio {fmt_ratio(first.ratio)}, seed {first.seed}",
        fontsize="medium",
    )
    return figure


def plot_feature_space(
    records: Sequence[RunRecord], path: Path, *, classes: Sequence[str] = ("majority", "minority")
) -> Path | None:
    """:func:`draw_feature_space` written to ``path``."""
    return save_figure(draw_feature_space(records, classes=classes), path)
