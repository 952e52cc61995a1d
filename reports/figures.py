"""One report section's figures: draw them into the section's folder and return the Markdown that embeds them.

Per section: ``accuracy_vs_ratio.png`` and ``separation_vs_ratio.png``; per ratio ``feature_space_r<ratio>_s<seed>``,
``training_curves_r<ratio>``, ``confusion_r<ratio>``, ``reliability_r<ratio>`` and, for a binary task,
``gallery_r<ratio>`` (.png). The lowest ratio's figure of each kind is embedded with a one-line caption, the other
ratios' are linked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reports.collect import RunRecord
from reports.formatting import fmt_ratio
from reports.gallery import SELECT_METRIC, draw_gallery
from reports.leaderboard import headline_metric, is_long_tail
from reports.plots import (
    plot_accuracy_vs_ratio,
    plot_feature_space,
    plot_training_curves,
    runs_by_label,
    save_figure,
    seed_count_text,
)
from reports.prediction_plots import plot_confusion, plot_reliability

Drawn = tuple[float, Path]  # (ratio, the figure written)
#: The captions of the first ratio's figures ({ratio}; {seeds}: ``n = 3 seeds`` per method at that ratio).
CURVES_CAPTION = (
    "Training curves at ratio {ratio}: mean over {seeds} per method, band = min..max; loss terms unweighted."
)
CONFUSION_CAPTION = (
    "Test confusion at ratio {ratio}, one panel per method: rows = true class, each cell the share of the true "
    "class's test images (mean over {seeds}) and, in brackets, the images summed over seeds."
)
RELIABILITY_CAPTION = (
    "Reliability at ratio {ratio}, one panel per method: the test images of {seeds} pooled, accuracy of the top "
    "class per confidence bin against the diagonal of perfect calibration; the pooled ECE in the legend."
)


def _figure_seed(records: Sequence[RunRecord]) -> int | None:
    """The smallest seed with the most finished methods at one ratio (so every panel shows the same subset)."""
    finished = [r for r in records if r.status == "finished"]
    if not finished:
        return None
    counts = {seed: sum(1 for r in finished if r.seed == seed) for seed in {r.seed for r in finished}}
    best = max(counts.values())
    return min(seed for seed, count in counts.items() if count == best)


def _image(path: Path, out: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(out).as_posix()})"


def _seeds(records: Sequence[RunRecord]) -> str:
    """``n = 3 seeds`` per method at one ratio (a range when methods differ)."""
    runs = runs_by_label(records)
    return seed_count_text([len(r) for r in runs.values()]) if runs else "n = 0 seeds"


def _embed(drawn: Sequence[Drawn], out: Path, alt: str, caption: str) -> list[str]:
    """The first ratio's figure with its caption, then links to the other ratios' figures."""
    if not drawn:
        return []
    lines = [caption, "", _image(drawn[0][1], out, alt), ""]
    others = [f"[ratio {fmt_ratio(ratio)}]({path.relative_to(out).as_posix()})" for ratio, path in drawn[1:]]
    return lines + ([f"Other ratios: {', '.join(others)}.", ""] if others else [])


#: The note in place of the gallery under ``bench report --no-gallery``.
GALLERY_OFF = "No gallery of misclassified test images: turned off (`--no-gallery`)."


def _gallery_lines(section: Sequence[RunRecord], ratios: Sequence[float], folder: Path, out: Path) -> list[str]:
    """A binary section's gallery of misclassified minority images per ratio, or one-line notes why there is none."""
    if not any(SELECT_METRIC in r.metrics for r in section):
        return [
            f"No gallery of misclassified minority test images: no run has validation metrics (`{SELECT_METRIC}`) "
            "to choose the method on, and choosing it on test would flatter it.",
            "",
        ]
    drawn: list[Drawn] = []
    captions, notes = [], []
    for ratio in ratios:
        gallery = draw_gallery([r for r in section if r.ratio == ratio])
        if gallery.figure is None:
            notes.append(gallery.text)
        else:
            drawn.append((ratio, save_figure(gallery.figure, folder / f"gallery_r{fmt_ratio(ratio)}.png")))
            captions.append(gallery.text)
    lines = _embed(drawn, out, "misclassified minority test images", captions[0]) if drawn else []
    return lines + ([" ".join(notes), ""] if notes else [])


def section_figures(
    section: Sequence[RunRecord], folder: Path, out: Path, classes: Sequence[str], *, gallery: bool = True
) -> list[str]:
    """Draw one section's figures into ``folder``; return the Markdown that embeds them."""
    lines: list[str] = []
    if is_long_tail(section):
        accuracy = plot_accuracy_vs_ratio(
            section,
            folder / "accuracy_vs_ratio.png",
            metric=headline_metric(section),
            label="balanced accuracy (mean per-class)",
        )
    else:
        accuracy = plot_accuracy_vs_ratio(section, folder / "accuracy_vs_ratio.png")
    separation = plot_accuracy_vs_ratio(
        section,
        folder / "separation_vs_ratio.png",
        metric="test_feature_silhouette",
        label="feature separation (silhouette, cosine)",
    )
    shown = [p for p in (accuracy, separation) if p is not None]
    if shown:
        lines += [" ".join(_image(p, out, p.stem.replace("_", " ")) for p in shown), ""]
    ratios = sorted({r.ratio for r in section})
    curves: list[Drawn] = []
    spaces: list[tuple[float, int, Path]] = []
    confusions: list[Drawn] = []
    reliabilities: list[Drawn] = []
    for ratio in ratios:
        at_ratio = [r for r in section if r.ratio == ratio]
        name = fmt_ratio(ratio)
        curve = plot_training_curves(at_ratio, folder / f"training_curves_r{name}.png")
        curves += [(ratio, curve)] if curve is not None else []
        seed = _figure_seed(at_ratio)
        if seed is not None:
            space_path = folder / f"feature_space_r{name}_s{seed}.png"
            space = plot_feature_space([r for r in at_ratio if r.seed == seed], space_path, classes=classes)
            spaces += [(ratio, seed, space)] if space is not None else []
        confusion = plot_confusion(at_ratio, folder / f"confusion_r{name}.png", classes=classes)
        confusions += [(ratio, confusion)] if confusion is not None else []
        reliability = plot_reliability(at_ratio, folder / f"reliability_r{name}.png")
        reliabilities += [(ratio, reliability)] if reliability is not None else []
    if spaces:
        ratio, seed, _ = spaces[0]
        caption = (
            f"Feature space at ratio {fmt_ratio(ratio)} (seed {seed}): PCA of the L2-normalised pre-logits features "
            "of the test images, one panel per method."
        )
        lines += _embed([(r, p) for r, _, p in spaces], out, "feature space", caption)
    for drawn, alt, caption in (
        (curves, "training curves", CURVES_CAPTION),
        (confusions, "confusion matrices", CONFUSION_CAPTION),
        (reliabilities, "reliability diagrams", RELIABILITY_CAPTION),
    ):
        if drawn:
            seeds = _seeds([r for r in section if r.ratio == drawn[0][0]])
            lines += _embed(drawn, out, alt, caption.format(ratio=fmt_ratio(drawn[0][0]), seeds=seeds))
    if not is_long_tail(section):
        lines += _gallery_lines(section, ratios, folder, out) if gallery else [GALLERY_OFF, ""]
    return lines
