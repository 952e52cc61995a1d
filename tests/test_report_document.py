"""report.md and its figures on a small fake result set whose numbers are known by hand."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from reports import collect_runs, write_report
from reports.document import safe_name, settings_table
from reports.plots import epoch_curves, loss_keys, project_features, ratio_series

METHODS = ("ce", "fscl+os")
RATIOS = (1.0, 0.1)
SEEDS = (0, 1, 2)
# minority-class accuracy per (method, ratio) for seeds 0, 1, 2
MINORITY = {
    ("ce", 1.0): (0.8, 0.9, 0.85),
    ("ce", 0.1): (0.2, 0.3, 0.4),
    ("fscl+os", 1.0): (0.82, 0.88, 0.86),
    ("fscl+os", 0.1): (0.5, 0.6, 0.7),
}
T_975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def run_name(method: str, ratio: float, seed: int) -> str:
    return f"fine__resnet18__{method}__r{ratio:g}__s{seed}"


def write_fake_run(root: Path, method: str, ratio: float, seed: int, *, outputs: bool = True) -> Path:
    folder = root / run_name(method, ratio, seed)
    folder.mkdir(parents=True)
    minority = MINORITY[(method, ratio)][seed]
    config: dict[str, Any] = {"dataset": "digits", "epochs": 3, "img_size": 16, "lr": 0.001, "stages": None}
    result = {
        "schema_version": 1,
        "status": "finished",
        "task": "fine",
        "dataset": "digits",
        "classes": ["1", "8"],
        "backbone": "resnet18",
        "method": method,
        "ratio": ratio,
        "seed": seed,
        "metrics": {"test_minority_acc": minority, "test_balanced_acc": 0.9, "test_feature_silhouette": 0.1 * seed},
        "wall_seconds": 360.0,
        "device": "cpu (fp32)",
        "config": config,
    }
    (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")
    terms = ("ce",) if method == "ce" else ("ce", "fscl")
    rows = []
    for epoch in (1, 2, 3):
        row: dict[str, Any] = {"epoch": epoch, "train_acc": 0.5 + 0.1 * epoch + 0.01 * seed}
        for position, term in enumerate(terms):
            row[f"train_loss_{term}"] = 1.0 / epoch + position
        row["train_loss"] = sum(row[f"train_loss_{term}"] for term in terms)
        rows.append(row)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    if outputs:
        generator = np.random.default_rng(seed)
        labels = np.repeat([0, 1], 20)
        features = generator.normal(size=(40, 8)) + labels[:, None] * (2.0 if method == "fscl+os" else 0.2)
        np.savez(folder / "test_outputs.npz", features=features.astype(np.float16), labels=labels,
                 logits=generator.normal(size=(40, 2)).astype(np.float32))  # fmt: skip
    return folder


@pytest.fixture()
def fake_runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for method in METHODS:
        for ratio in RATIOS:
            for seed in SEEDS:
                write_fake_run(root, method, ratio, seed)
    return root


def test_ratio_series_is_the_t_interval_by_hand(fake_runs: Path) -> None:
    series = ratio_series(collect_runs(fake_runs).records, "test_minority_acc")
    assert list(series) == ["ce", "fscl+os"]
    assert [ratio for ratio, _ in series["ce"]] == [0.1, 1.0]
    low_ratio = series["ce"][0][1]
    # values 0.2, 0.3, 0.4: mean 0.3, sample std 0.1, half width t * 0.1 / sqrt(3)
    half = T_975_DF2 * 0.1 / math.sqrt(3)
    assert (low_ratio.n, low_ratio.mean, low_ratio.std) == (3, pytest.approx(0.3), pytest.approx(0.1))
    assert (low_ratio.low, low_ratio.high) == (pytest.approx(0.3 - half), pytest.approx(0.3 + half))


def test_epoch_curves_keep_the_common_epochs(fake_runs: Path) -> None:
    records = [r for r in collect_runs(fake_runs).records if r.method == "ce" and r.ratio == 0.1]
    extra = records[0].folder / "metrics.jsonl"
    extra.write_text(extra.read_text() + json.dumps({"epoch": 4, "train_acc": 1.0}) + "\nnot json\n")
    epochs, values = epoch_curves(sorted(records, key=lambda r: r.seed), "train_acc")
    assert epochs.tolist() == [1, 2, 3]
    np.testing.assert_allclose(values, [[0.6, 0.7, 0.8], [0.61, 0.71, 0.81], [0.62, 0.72, 0.82]])


def test_loss_keys_drop_the_total_when_it_is_the_only_term(fake_runs: Path) -> None:
    records = collect_runs(fake_runs).records
    assert loss_keys([r for r in records if r.method == "ce"]) == ["train_loss_ce"]
    assert loss_keys([r for r in records if r.method == "fscl+os"]) == [
        "train_loss",
        "train_loss_ce",
        "train_loss_fscl",
    ]


def test_projection_of_plane_points_keeps_their_distances() -> None:
    # 2-D unit vectors: PCA to 2 components is a rotation (plus a shift), so pairwise distances are unchanged.
    angles = np.array([0.0, 0.4, 1.3, 2.0, 3.0])
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    projected = project_features(points * np.array([[3.0], [1.0], [0.5], [2.0], [7.0]]))  # scale is removed

    def distances(x: np.ndarray) -> np.ndarray:
        return np.linalg.norm(x[:, None] - x[None], axis=2)

    assert projected.shape == (5, 2)
    np.testing.assert_allclose(distances(projected), distances(points), atol=1e-9)


def test_write_report_embeds_tables_and_existing_figures(fake_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    files = write_report(fake_runs, out)
    markdown = files.report_path.read_text(encoding="utf-8")
    assert files.report_path == out / "report.md"
    links = re.findall(r"\]\(([^)]+\.png)\)", markdown)
    assert links and all((out / link).is_file() for link in links)
    figures = {path.name for path in files.figures}
    assert figures == {
        "accuracy_vs_ratio.png",
        "separation_vs_ratio.png",
        "training_curves_r1.png",
        "training_curves_r0.1.png",
        "feature_space_r1_s0.png",
        "feature_space_r0.1_s0.png",
        "reliability_r1.png",  # from the saved logits; no confusion figure: these results hold no test_confusion
        "reliability_r0.1.png",
    }
    for path in files.figures:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100
    # the lowest ratio is embedded, the others linked
    assert "![feature space](figures/fine__resnet18/feature_space_r0.1_s0.png)" in markdown
    assert "[ratio 1](figures/fine__resnet18/feature_space_r1_s0.png)" in markdown
    assert "| epochs | 3 | - |" in markdown and "| stages | default | - |" in markdown
    assert "| seeds | 3 (0, 1, 2) | - |" in markdown
    assert "| training time, summed over runs | 1.20 h (12 runs) | - |" in markdown  # 12 x 360 s
    assert "#### Paired difference vs ce" in markdown
    assert "### Feature separation (silhouette" in markdown
    assert (out / "leaderboard.csv").is_file() and (out / "comparisons.csv").is_file()


def test_feature_space_uses_the_smallest_seed_with_every_method(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_fake_run(root, "ce", 0.1, 0)
    for seed in (1, 2):
        for method in METHODS:
            write_fake_run(root, method, 0.1, seed)
    files = write_report(root, tmp_path / "out")
    assert "feature_space_r0.1_s1.png" in {path.name for path in files.figures}


def test_runs_without_saved_outputs_get_no_feature_space(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for seed in SEEDS:
        write_fake_run(root, "ce", 1.0, seed, outputs=False)
    files = write_report(root, tmp_path / "out")
    names = {path.name for path in files.figures}
    assert "accuracy_vs_ratio.png" in names and not any(name.startswith("feature_space") for name in names)
    assert "Feature space" not in files.report_path.read_text(encoding="utf-8")


def test_settings_table_lists_differing_values(fake_runs: Path) -> None:
    records = collect_runs(fake_runs).records
    changed = [records[0].__class__(**{**records[0].__dict__, "config": {"epochs": 5}}), *records[1:]]
    assert "| epochs | 5, 3 | - |" in settings_table(changed)


def test_safe_name() -> None:
    assert safe_name("hf-hub:timm/resnet18.a1_in1k") == "hf-hub_timm_resnet18.a1_in1k"
    assert safe_name("fscl+os") == "fscl+os"


def test_settings_table_shows_a_loss_setting_only_for_grids_that_use_it(fake_runs: Path) -> None:
    records = collect_runs(fake_runs).records
    assert not any(line.startswith(("| focal_gamma", "| drw_epoch")) for line in settings_table(records))
    template = records[0].__dict__
    focal = records[0].__class__(**{**template, "method": "focal+os", "config": {"focal_gamma": 1.5}})
    older = records[0].__class__(**{**template, "method": "ldam+drs", "config": {}})  # written before the settings
    table = settings_table([*records, focal, older])
    assert "| focal_gamma | 1.5 | - |" in table
    # written before drw_epoch was recorded resolved: 80% of its (paper default, 100) epochs, as bench then did
    assert "| drw_epoch | 80 | - |" in table and "| ldam_scale | 30.0 | - |" in table
    assert not any(line.startswith("| la_tau") for line in table)
