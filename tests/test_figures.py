"""The report's figures on a small fake result set whose numbers are worked out by hand, checked through matplotlib's
objects (titles, labels, limits, legends, panels, points), not pixels."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.image import AxesImage
from PIL import Image

from reports import collect_runs
from reports.collect import RunRecord
from reports.figures import section_figures
from reports.gallery import choose_on_validation, draw_gallery, minority_misses
from reports.plots import (
    SEEDS_GID,
    draw_accuracy_vs_ratio,
    draw_feature_space,
    draw_training_curves,
    pca_2d,
)
from reports.prediction_plots import draw_confusion, draw_reliability, mean_confusion, read_confusion

CLASSES = ("deer", "horse")  # majority, minority
METHODS = ("ce", "os")
RATIOS = (1.0, 0.1)
SEEDS = (0, 1, 2)
MINORITY_IMAGES = 6  # and as many majority images: 12 test images per run
# minority test images (by index 0..5) each run gets wrong; every majority image is right
WRONG: dict[tuple[str, float], tuple[set[int], ...]] = {
    ("ce", 0.1): ({0, 1, 2}, {0, 1}, {0}),
    ("os", 0.1): ({0}, set(), {1}),
    ("ce", 1.0): (set(), set(), {5}),
    ("os", 1.0): (set(), set(), set()),
}
# validation prefers ce at both ratios, although os is better on test at ratio 0.1
VAL_MINORITY = {("ce", 0.1): 0.9, ("os", 0.1): 0.7, ("ce", 1.0): 0.95, ("os", 1.0): 0.9}
# logits: a majority image [2, 0] (right, confidence 1 / (1 + e^-2)); a minority image wrong [1, 0] (confidence
# 1 / (1 + e^-1) in the majority), right [0, 3] (confidence 1 / (1 + e^-3))
MAJORITY_LOGITS, WRONG_LOGITS, RIGHT_LOGITS = [2.0, 0.0], [1.0, 0.0], [0.0, 3.0]
T_975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def image_ids() -> list[str]:
    return [f"test/{name}/{i}.png" for name in CLASSES for i in range(MINORITY_IMAGES)]


def write_images(root: Path) -> Path:
    """12 PNGs of 8x8 pixels, each a solid colour that encodes its class and index."""
    for position, image_id in enumerate(image_ids()):
        path = root / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), 20 * position, dtype=np.uint8)).save(path)
    return root


def write_run(
    runs: Path, data: Path | str, method: str, ratio: float, seed: int, *, ids: bool = True, val: bool = True
) -> Path:
    wrong = WRONG[(method, ratio)][seed]
    folder = runs / f"fine__resnet18__{method}__r{ratio:g}__s{seed}"
    folder.mkdir(parents=True)
    labels = np.repeat([0, 1], MINORITY_IMAGES)
    logits = [MAJORITY_LOGITS] * MINORITY_IMAGES
    logits += [WRONG_LOGITS if i in wrong else RIGHT_LOGITS for i in range(MINORITY_IMAGES)]
    # features on two axes: majority e1, -e1, ...; minority e2, -e2, e2, -e2, e1, -e1 -> variance 8 : 4 (67% : 33%)
    features = np.zeros((12, 8))
    features[np.arange(12), [0] * 6 + [1] * 4 + [0] * 2] = [1, -1] * 6
    outputs: dict[str, Any] = {"logits": np.array(logits, dtype=np.float32), "labels": labels}
    outputs["features"] = features.astype(np.float16)
    if ids:
        outputs["ids"] = np.array(image_ids())
    np.savez(folder / "test_outputs.npz", **outputs)
    metrics: dict[str, Any] = {
        "test_minority_acc": 1 - len(wrong) / MINORITY_IMAGES,
        "test_feature_silhouette": (-0.2 if method == "ce" else 0.3) + 0.1 * seed,
        "test_confusion": [[MINORITY_IMAGES, 0], [len(wrong), MINORITY_IMAGES - len(wrong)]],
    }
    if val:
        metrics["val_minority_acc"] = VAL_MINORITY[(method, ratio)]
    result = {
        "schema_version": 1,
        "status": "finished",
        "task": "fine",
        "dataset": str(data),
        "classes": list(CLASSES),
        "backbone": "resnet18",
        "method": method,
        "ratio": ratio,
        "seed": seed,
        "metrics": metrics,
        "config": {"epochs": 3},
        "train_counts": {"deer": 100, "horse": max(1, int(100 * ratio))},
    }
    (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")
    rows = [{"epoch": e, "train_acc": 0.5 + 0.1 * e, "train_loss_ce": (2.0 if method == "os" else 1.0) / e}
            for e in (1, 2, 3)]  # fmt: skip
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def write_runs(root: Path, data: Path | str | None = None, **options: Any) -> list[RunRecord]:
    """Every method, ratio and seed of the fake set, the images written to ``root / data`` (the default data set)."""
    images = write_images(root / "data").resolve()
    for method in METHODS:
        for ratio in RATIOS:
            for seed in SEEDS:
                write_run(root / "runs", images if data is None else data, method, ratio, seed, **options)
    return collect_runs(root / "runs").records


@pytest.fixture()
def records(tmp_path: Path) -> list[RunRecord]:
    return write_runs(tmp_path)


def at(records: list[RunRecord], ratio: float) -> list[RunRecord]:
    return [r for r in records if r.ratio == ratio]


def test_accuracy_vs_ratio_title_clipped_bars_and_seed_dots(records: list[RunRecord]) -> None:
    figure = draw_accuracy_vs_ratio(records)
    (axes,) = figure.axes
    title = axes.get_title()
    assert title.startswith("fine: deer (majority) vs horse (minority), n = 3 seeds per point")
    assert "dots: single seeds" in title and "clipped to [0, 1]" in title
    assert axes.get_ylim() == pytest.approx((-0.02, 1.02))
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["ce", "os"]
    # ce at ratio 0.1: 0.5, 4/6, 5/6 -> mean 2/3, sd 1/6, t-interval 2/3 ± 4.3027 / 6 / sqrt(3) = [0.253, 1.081]:
    # the bar stops at 1
    half = T_975_DF2 / 6 / math.sqrt(3)
    assert 2 / 3 + half > 1
    ce_bars = axes.containers[0]
    segments = ce_bars.lines[2][0].get_segments()  # one vertical segment per ratio, ascending ratio
    assert segments[0][:, 1] == pytest.approx([2 / 3 - half, 1.0])
    dots = [c for c in axes.collections if c.get_gid() == SEEDS_GID]
    assert len(dots) == 2 and all(len(d.get_offsets()) == 6 for d in dots)  # 2 ratios x 3 seeds per method
    assert sorted(dots[0].get_offsets()[:, 1])[:3] == pytest.approx([0.5, 4 / 6, 5 / 6])


def test_separation_axis_shows_negative_silhouettes(records: list[RunRecord]) -> None:
    figure = draw_accuracy_vs_ratio(records, metric="test_feature_silhouette", label="silhouette")
    (axes,) = figure.axes
    low, high = axes.get_ylim()
    # ce: -0.2, -0.1, 0.0; os: 0.3, 0.4, 0.5 (both ratios): the data's range padded, inside [-1, 1]
    assert -1.04 <= low < -0.2 and 0.5 < high <= 0.7
    assert "clipped to [-1, 1]" in axes.get_title()


def test_seed_dots_only_for_few_seeds(records: list[RunRecord]) -> None:
    many = [replace(r, seed=r.seed + 10 * copy) for r in records for copy in range(2)]  # 6 seeds per point
    figure = draw_accuracy_vs_ratio(many)
    assert not [c for c in figure.axes[0].collections if c.get_gid() == SEEDS_GID]
    assert "n = 6 seeds per point" in figure.axes[0].get_title()
    fewer = [r for r in records if not (r.method == "os" and r.ratio == 0.1 and r.seed == 2)]
    assert "n = 2–3 seeds per point" in draw_accuracy_vs_ratio(fewer).axes[0].get_title()


def test_training_curves_name_terms_share_axes_and_count_whole_epochs(records: list[RunRecord]) -> None:
    figure = draw_training_curves(at(records, 0.1))
    assert len(figure.axes) == 4  # 2 methods x (loss, accuracy)
    ce_loss, os_loss, ce_acc, os_acc = figure.axes
    assert [t.get_text() for t in os_loss.get_legend().get_texts()] == ["loss term: ce"]
    assert [ce_loss.get_title(), os_loss.get_title()] == ["ce (n = 3 seeds)", "os (n = 3 seeds)"]
    assert ce_loss.get_shared_y_axes().joined(ce_loss, os_loss) and ce_acc.get_shared_y_axes().joined(ce_acc, os_acc)
    assert os_loss.get_ylim()[1] >= 2.0  # os's loss (2 at epoch 1) fits in ce's panel too
    assert ce_loss.get_ylim() == os_loss.get_ylim()
    ticks = [t for t in ce_acc.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert "ratio 0.1" in figure.get_suptitle() and "deer (majority) vs horse (minority)" in figure.get_suptitle()


def test_pca_explained_variance_by_hand() -> None:
    # e1, -e1 (x4) and e2, -e2 (x2): centred; variance along e1 is 4, along e2 2 -> 2/3 and 1/3
    points = np.array([[1, 0, 0], [-1, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], dtype=float)
    _, explained = pca_2d(points * 5.0)
    assert explained == pytest.approx([2 / 3, 1 / 3])


def test_feature_space_axes_say_the_explained_variance(records: list[RunRecord]) -> None:
    figure = draw_feature_space([r for r in at(records, 0.1) if r.seed == 1], classes=CLASSES)
    assert len(figure.axes) == 2
    axes = figure.axes[0]
    # the fixture's features: 8 of 12 on the e1 axis, 4 on e2 -> 67% and 33%
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("PC1 (67% of variance)", "PC2 (33% of variance)")
    assert figure.get_suptitle().endswith("test features at ratio 0.1, seed 1")
    scatters = [c for c in axes.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in scatters] == [6, 6]
    assert min(c.get_alpha() for c in scatters) >= 0.8
    assert [t.get_text() for t in axes.get_legend().get_texts()] == list(CLASSES)


def test_mean_confusion_by_hand() -> None:
    matrices = [np.array([[6, 0], [3, 3]]), np.array([[6, 0], [2, 4]]), np.array([[6, 0], [1, 5]])]
    confusion = mean_confusion(matrices)
    # minority row: (3/6 + 2/6 + 1/6) / 3 = 1/3 predicted majority, 2/3 right; counts summed: 6 and 12
    np.testing.assert_allclose(confusion.rates, [[1.0, 0.0], [1 / 3, 2 / 3]])
    np.testing.assert_array_equal(confusion.counts, [[18, 0], [6, 12]])
    assert confusion.n == 3
    # rates are averaged, not counts pooled: (1/2 + 4/4) / 2 = 0.75 (pooled would be 5/6); a class without test
    # images in one seed: that seed does not count for its row; in every seed: nan
    rates = mean_confusion([np.array([[1, 1], [0, 0]]), np.array([[4, 0], [0, 0]])]).rates
    np.testing.assert_allclose(rates[0], [0.75, 0.25])
    np.testing.assert_allclose(
        mean_confusion([np.array([[1, 1], [0, 2]]), np.array([[4, 0], [0, 0]])]).rates[1], [0, 1]
    )
    assert np.isnan(rates[1]).all()


def test_confusion_figure_reads_the_result_files(records: list[RunRecord]) -> None:
    np.testing.assert_array_equal(read_confusion(at(records, 0.1)[0]), [[6, 0], [3, 3]])
    figure = draw_confusion(at(records, 0.1), classes=CLASSES)
    ce, os_ = figure.axes[:2]  # then the colour bar
    assert [ce.get_title(), os_.get_title()] == ["ce (n = 3 seeds)", "os (n = 3 seeds)"]
    assert (ce.get_xlabel(), ce.get_ylabel()) == ("predicted class", "true class")
    assert [t.get_text() for t in ce.get_yticklabels()] == list(CLASSES)
    (image,) = ce.get_images()
    np.testing.assert_allclose(image.get_array(), [[1.0, 0.0], [1 / 3, 2 / 3]])
    # cells row by row: 100% (18), 0% (0), 33% (6), 67% (12)
    assert [t.get_text() for t in ce.texts] == ["100%\n(18)", "0%\n(0)", "33%\n(6)", "67%\n(12)"]
    # os: minority wrong 1/6, 0, 1/6 -> 1/9 = 11% (2 images)
    assert os_.texts[2].get_text() == "11%\n(2)"
    assert "ratio 0.1" in figure.get_suptitle() and "rows = true class" in figure.get_suptitle()


def test_reliability_pools_seeds_with_the_ece_by_hand(records: list[RunRecord]) -> None:
    figure = draw_reliability(at(records, 0.1))
    ce, os_ = figure.axes
    # ce, 3 seeds pooled (36 images): 18 majority at confidence s(2), right (bin 13 of 15); 6 wrong minority at s(1)
    # for the majority (bin 10); 12 right minority at s(3) (bin 14)
    ece = (18 * (1 - sigmoid(2)) + 6 * sigmoid(1) + 12 * (1 - sigmoid(3))) / 36
    assert ece == pytest.approx(0.1973, abs=1e-4)
    legend = [t.get_text() for t in ce.get_legend().get_texts()]
    assert sorted(legend) == [f"accuracy per bin (ECE {ece:.3f})", "gap to mean confidence", "perfect calibration"]
    bars, gaps = ce.containers
    assert [round(b.get_x() * 15) for b in bars] == [10, 13, 14]
    assert [b.get_height() for b in bars] == pytest.approx([0.0, 1.0, 1.0])
    # the gap bars run from each bin's accuracy to its mean confidence
    assert [(b.get_y(), b.get_y() + b.get_height()) for b in gaps] == [
        pytest.approx((0.0, sigmoid(1))),
        pytest.approx((1.0, sigmoid(2))),
        pytest.approx((1.0, sigmoid(3))),
    ]
    diagonal = [line for line in ce.get_lines() if line.get_linestyle() == "--"]
    assert len(diagonal) == 1 and list(diagonal[0].get_xydata().ravel()) == [0.0, 0.0, 1.0, 1.0]
    assert ce.get_xlim() == (0.0, 1.0) and ce.get_ylim() == (0.0, 1.0)
    assert ce.get_title() == "ce\nn = 3 seeds pooled, 36 test images"
    assert ce.get_xlabel() == "confidence (top-class probability)"


def test_gallery_follows_validation_not_test(records: list[RunRecord]) -> None:
    low = at(records, 0.1)
    choice = choose_on_validation(low)
    # test prefers os (mean minority accuracy 8/9 against ce's 2/3); validation prefers ce (0.9 against 0.7)
    assert choice.label == "ce" and choice.mean == pytest.approx(0.9)
    misses = minority_misses(choice.runs)
    # horse 0 wrong in 3 seeds, horse 1 in 2, horse 2 in 1; p(horse) = s(-1) when wrong, s(3) when right
    assert [(m.image_id, m.wrong, m.seeds) for m in misses] == [
        ("test/horse/0.png", 3, 3),
        ("test/horse/1.png", 2, 3),
        ("test/horse/2.png", 1, 3),
    ]
    assert misses[1].minority_probability == pytest.approx((2 * sigmoid(-1) + sigmoid(3)) / 3)
    gallery = draw_gallery(low)
    images = [a for a in gallery.figure.axes if a.get_images()]
    assert len(images) == 3
    (first,) = images[0].get_images()
    assert isinstance(first, AxesImage)
    np.testing.assert_array_equal(first.get_array(), np.full((8, 8, 3), 20 * 6))  # the file test/horse/0.png
    assert images[0].get_title() == f"predicted deer (3/3)\nmean p(horse) = {sigmoid(-1):.2f}"
    assert "minority test images ce gets wrong" in gallery.figure.get_suptitle()
    assert "chosen on validation (val_minority_acc 0.900)" in gallery.figure.get_suptitle()
    assert gallery.text.startswith("Minority (horse) test images that ce gets wrong at ratio 0.1: 3 of 3")


def test_gallery_notes_instead_of_errors(tmp_path: Path) -> None:
    no_val = write_runs(tmp_path / "a", val=False)
    assert draw_gallery(at(no_val, 0.1)).figure is None
    no_ids = draw_gallery(at(write_runs(tmp_path / "b", ids=False), 0.1))
    assert no_ids.figure is None and "saved no test image ids" in no_ids.text
    moved = draw_gallery(at(write_runs(tmp_path / "c", data=tmp_path / "gone"), 0.1))
    assert moved.figure is None and "not found (moved?)" in moved.text
    none_wrong = draw_gallery([r for r in write_runs(tmp_path / "d") if r.ratio == 1.0 and r.method == "os"])
    assert none_wrong.figure is None and "gets every minority test image right" in none_wrong.text


def test_gallery_of_a_builtin_data_set_reads_the_split_by_index(tmp_path: Path) -> None:
    from bench.data.sources import open_source

    records = write_runs(tmp_path, data="digits")
    gallery = draw_gallery(at(records, 0.1))
    # ids are paths here, not indices: a note, not an error
    assert gallery.figure is None and "cannot be read" in gallery.text
    for folder in (tmp_path / "runs").iterdir():
        with np.load(folder / "test_outputs.npz") as stored:
            arrays = {name: stored[name] for name in stored.files}
        np.savez(folder / "test_outputs.npz", **{**arrays, "ids": np.array([str(i) for i in range(12)])})
    gallery = draw_gallery(at(records, 0.1))
    first = next(a for a in gallery.figure.axes if a.get_images())
    np.testing.assert_array_equal(first.get_images()[0].get_array(), open_source("digits").test.images[6])


def test_swept_settings_are_lines_of_their_own(records: list[RunRecord]) -> None:
    swept = replace(records[0], method="fscl+os", variant=(("cb_beta", 0.999), ("sim_weight", 0.3)))
    other = replace(swept, variant=(("sim_weight", 1.0),))
    figure = draw_accuracy_vs_ratio([swept, other, *records[1:]])
    labels = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert "fscl+os[cb_beta=0.999,sim_weight=0.3]" in labels and "fscl+os[sim_weight=1]" in labels


RATIO_NAMES = ("1", "0.1")


def test_section_figures_embed_every_figure_with_captions(records: list[RunRecord], tmp_path: Path) -> None:
    out = tmp_path / "report"
    lines = section_figures(records, out / "figures" / "fine", out, CLASSES)
    markdown = "\n".join(lines)
    names = {p.name for p in (out / "figures" / "fine").iterdir()}
    assert names == {
        "accuracy_vs_ratio.png",
        "separation_vs_ratio.png",
        *(
            f"{kind}_r{r}.png"
            for kind in ("training_curves", "confusion", "reliability", "gallery")
            for r in ("1", "0.1")
        ),
        "feature_space_r1_s0.png",
        "feature_space_r0.1_s0.png",
    }
    for kind in ("confusion", "reliability", "gallery"):
        assert f"](figures/fine/{kind}_r0.1.png)" in markdown and f"[ratio 1](figures/fine/{kind}_r1.png)" in markdown
    assert "Test confusion at ratio 0.1, one panel per method" in markdown and "mean over n = 3 seeds" in markdown
    assert "Reliability at ratio 0.1, one panel per method: the test images of n = 3 seeds pooled" in markdown
    assert "Minority (horse) test images that ce gets wrong at ratio 0.1" in markdown


def test_section_without_validation_notes_the_missing_gallery(tmp_path: Path) -> None:
    records = write_runs(tmp_path, val=False)
    lines = section_figures(records, tmp_path / "out" / "f", tmp_path / "out", CLASSES)
    notes = [line for line in lines if line.startswith("No gallery")]
    assert notes == [  # one line for the section, not one per ratio
        "No gallery of misclassified minority test images: no run has validation metrics (`val_minority_acc`) to "
        "choose the method on, and choosing it on test would flatter it."
    ]
    assert not any((tmp_path / "out" / "f").glob("gallery_*"))


def test_derived_rows_only_in_the_ratio_lines(records: list[RunRecord]) -> None:
    posthoc = [replace(r, method="ce+posthoc", posthoc_tau=1.0, metrics={**r.metrics, "val_minority_acc": 1.0})
               for r in records if r.method == "ce"]  # fmt: skip
    both = [*records, *posthoc]
    legend = [t.get_text() for t in draw_accuracy_vs_ratio(both).axes[0].get_legend().get_texts()]
    assert legend == ["ce", "ce+posthoc", "os"]  # a post-hoc row follows its method
    # a post-hoc row shares its run's folder: its result.json, logits and curves are the plain run's
    assert len(draw_confusion(at(both, 0.1), classes=CLASSES).axes) == 3  # ce, os, colour bar
    assert len(draw_reliability(at(both, 0.1)).axes) == 2
    assert len(draw_training_curves(at(both, 0.1)).axes) == 4
    assert choose_on_validation(at(both, 0.1)).label == "ce"  # not the post-hoc row, whose logits are not saved


def write_long_tail_run(runs: Path, seed: int) -> None:
    folder = runs / f"lt__resnet18__ce__r0.1__s{seed}"
    folder.mkdir(parents=True)
    labels = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(3)[[0, 0, 1, 0, 2, 1 if seed else 2]] * 2.0  # seed 0: one tail image wrong; seed 1: two
    np.savez(folder / "test_outputs.npz", logits=logits.astype(np.float32), labels=labels,
             features=np.eye(6, 4)[[0, 1, 2, 3, 0, 1]].astype(np.float16))  # fmt: skip
    confusion = [[2, 0, 0], [1, 1, 0], [0, 1 if seed else 0, 1 if seed else 2]]
    result = {"status": "finished", "task": "lt", "dataset": "digits", "classes": ["a", "b", "c"],
              "backbone": "resnet18", "method": "ce", "ratio": 0.1, "seed": seed,
              "metrics": {"test_balanced_acc": 0.8 - 0.1 * seed, "test_confusion": confusion}}  # fmt: skip
    (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")


def test_long_tailed_figures_name_the_classes_and_skip_the_gallery(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_long_tail_run(tmp_path / "runs", seed)
    records = collect_runs(tmp_path / "runs").records
    accuracy = draw_accuracy_vs_ratio(records, metric="test_balanced_acc", label="balanced accuracy")
    assert accuracy.axes[0].get_title().startswith("lt: 3 classes, n = 2 seeds per point")
    confusion = draw_confusion(records, classes=("a", "b", "c"))
    axes = confusion.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["a", "b", "c"]
    # class c: seed 0 [0, 0, 2] -> 100% right; seed 1 [0, 1, 1] -> 50%: mean 75%, 3 of 4 images summed
    assert axes.texts[8].get_text() == "75%\n(3)" and axes.texts[7].get_text() == "25%\n(1)"
    lines = section_figures(records, tmp_path / "out" / "f", tmp_path / "out", ("a", "b", "c"))
    assert not any("gallery" in line.lower() for line in lines)
    assert (tmp_path / "out" / "f" / "confusion_r0.1.png").is_file()
