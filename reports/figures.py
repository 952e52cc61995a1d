"""One report section's figures: draw them into the section's folder and return the Markdown that embeds them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reports.collect import RunRecord
from reports.formatting import fmt_ratio
from reports.leaderboard import headline_metric, is_long_tail
from reports.plots import plot_accuracy_vs_ratio, plot_feature_space, plot_training_curves


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


def section_figures(section: Sequence[RunRecord], folder: Path, out: Path, classes: Sequence[str]) -> list[str]:
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
    curves, spaces = [], []
    for ratio in ratios:
        at_ratio = [r for r in section if r.ratio == ratio]
        curve = plot_training_curves(at_ratio, folder / f"training_curves_r{fmt_ratio(ratio)}.png")
        if curve is not None:
            curves.append((ratio, curve))
        seed = _figure_seed(at_ratio)
        if seed is not None:
            name = f"feature_space_r{fmt_ratio(ratio)}_s{seed}.png"
            space = plot_feature_space([r for r in at_ratio if r.seed == seed], folder / name, classes=classes)
            if space is not None:
                spaces.append((ratio, seed, space))
    if spaces:
        ratio, seed, path = spaces[0]
        lines += [
            f"Feature space at ratio {fmt_ratio(ratio)} (seed {seed}): PCA of the L2-normalised pre-logits features "
            "of the test images, one panel per method.",
            "",
            _image(path, out, "feature space"),
            "",
        ]
        others = [f"[ratio {fmt_ratio(r)}]({p.relative_to(out).as_posix()})" for r, _, p in spaces[1:]]
        if others:
            lines += [f"Other ratios: {', '.join(others)}.", ""]
    if curves:
        ratio, path = curves[0]
        lines += [
            f"Training curves at ratio {fmt_ratio(ratio)}: mean over seeds, band = min..max; loss terms unweighted.",
            "",
            _image(path, out, "training curves"),
            "",
        ]
        others = [f"[ratio {fmt_ratio(r)}]({p.relative_to(out).as_posix()})" for r, p in curves[1:]]
        if others:
            lines += [f"Other ratios: {', '.join(others)}.", ""]
    return lines
