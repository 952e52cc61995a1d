"""What keeps ``bench report`` fast over many runs prints the same numbers: post-hoc rows kept between reports
(:mod:`reports.posthoc_cache`), figures reused or capped (:mod:`reports.document`), the table of contents."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import recall_score
from typer.testing import CliRunner

import reports.document as document
import reports.posthoc as posthoc
from bench import cli
from reports import collect_runs, write_report
from reports.collect import Collection
from reports.leaderboard import prepare_runs, render_comparisons, render_csv, render_markdown, section_anchors
from reports.posthoc_cache import CACHE_FILE, CACHE_FOLDER

CLASSES = ("common", "rare")


def write_run(root: Path, task: str, backbone: str, method: str, ratio: float, seed: int) -> Path:
    """A finished binary run with random (seeded) validation and test logits."""
    folder = root / f"{task}__{backbone}__{method}__r{ratio:g}__s{seed}"
    folder.mkdir(parents=True)
    rng = np.random.default_rng([seed, int(ratio * 100), len(method), len(task), len(backbone)])
    for name, size in (("val_outputs.npz", 40), ("test_outputs.npz", 30)):
        labels = np.arange(size) % 2
        logits = rng.normal(size=(size, 2)) + np.array([1.5, 0.0]) + labels[:, None] * np.array([-1.0, 1.0])
        np.savez(folder / name, logits=logits.astype(np.float32), labels=labels, ids=np.arange(size).astype(str))
    minority = max(1, round(90 * ratio))
    metrics = {name: float(rng.uniform()) for name in ("test_minority_acc", "test_balanced_acc", "val_minority_acc")}
    metrics |= {"test_deploy_recall": 0.5, "test_ece": 0.1, "test_nll": 0.6, "test_brier": 0.4}
    result = {"task": task, "dataset": f"{task}-data", "classes": list(CLASSES), "backbone": backbone,
              "method": method, "ratio": ratio, "seed": seed, "status": "finished", "metrics": metrics,
              "train_counts": {"common": 90, "rare": minority}}  # fmt: skip
    (folder / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return folder


def write_grid(root: Path, tasks: tuple[str, ...] = ("cam",), backbones: tuple[str, ...] = ("b",)) -> None:
    for task in tasks:
        for backbone in backbones:
            for method in ("ce", "os"):
                for ratio in (1.0, 0.1):
                    for seed in range(3):
                        write_run(root, task, backbone, method, ratio, seed)


def tables(collection: Collection) -> tuple[str, str, str]:
    runs = prepare_runs(collection, posthoc=True)
    return render_csv(runs), render_comparisons(runs), render_markdown(runs)


def uncached(root: Path) -> Collection:
    """The runs without their folder: nothing is kept, every post-hoc row scored afresh."""
    return replace(collect_runs(root), root=None)


def count_scoring(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The run folders whose post-hoc rows get scored from here on."""
    scored: list[Path] = []
    score = posthoc.posthoc_record

    def counting(record, warnings):  # noqa: ANN001, ANN202
        scored.append(record.folder)
        return score(record, warnings)

    monkeypatch.setattr(posthoc, "posthoc_record", counting)
    return scored


def test_numpy_balanced_accuracy_is_scikit_learns() -> None:
    rng = np.random.default_rng(0)
    for classes in (2, 3, 7):
        for size in (1, 5, 50):
            labels = rng.integers(0, classes, size=size)
            logits = rng.normal(size=(size, classes))
            expected = recall_score(labels, logits.argmax(axis=1), labels=np.unique(labels), average="macro")
            assert posthoc.balanced_accuracy(labels, logits) == float(expected)


def test_kept_posthoc_rows_print_the_same_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_grid(tmp_path)
    plain = tables(uncached(tmp_path))
    assert not (tmp_path / CACHE_FOLDER).exists()  # a collection without its folder keeps nothing
    assert "ce+posthoc" in plain[0]
    first = tables(collect_runs(tmp_path))  # scores every run and keeps the rows
    assert (tmp_path / CACHE_FOLDER / CACHE_FILE).is_file()
    scored = count_scoring(monkeypatch)
    again = tables(collect_runs(tmp_path))
    assert scored == []  # read back, not scored
    assert first == plain and again == plain


def test_a_changed_run_is_scored_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_grid(tmp_path)
    tables(collect_runs(tmp_path))
    changed = tmp_path / "cam__b__ce__r0.1__s1"
    with np.load(changed / "test_outputs.npz") as stored:
        outputs = dict(stored)
    outputs["logits"] = outputs["logits"] + np.float32(2.0) * np.array([1.0, -1.0], dtype=np.float32)
    np.savez(changed / "test_outputs.npz", **outputs)  # other test logits
    stat = (changed / "test_outputs.npz").stat()
    os.utime(changed / "test_outputs.npz", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    scored = count_scoring(monkeypatch)
    after = tables(collect_runs(tmp_path))
    assert scored == [changed]  # the unchanged runs are read back
    monkeypatch.undo()
    assert after == tables(uncached(tmp_path))  # what scoring everything afresh prints
    (tmp_path / "cam__b__os__r1__s2" / "result.json").touch()  # a rewritten result (a run done again by a resume)
    os.utime(tmp_path / "cam__b__os__r1__s2" / "result.json", ns=(0, 10**9))
    scored = count_scoring(monkeypatch)
    tables(collect_runs(tmp_path))
    assert scored == [tmp_path / "cam__b__os__r1__s2"]


def test_a_damaged_cache_is_scored_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_grid(tmp_path)
    plain = tables(uncached(tmp_path))
    (tmp_path / CACHE_FOLDER).mkdir()
    (tmp_path / CACHE_FOLDER / CACHE_FILE).write_bytes(b"not a zip file")
    assert tables(collect_runs(tmp_path)) == plain
    scored = count_scoring(monkeypatch)
    assert tables(collect_runs(tmp_path)) == plain and scored == []  # rewritten: read back next time
    monkeypatch.setattr(posthoc, "CACHE_VERSION", 999)  # another computation: its rows are not used
    monkeypatch.setattr(posthoc, "POSTHOC_TAUS", (0.0, 1.0))
    scored.clear()
    tables(collect_runs(tmp_path))
    assert len(scored) == 12


def test_contents_link_every_section(tmp_path: Path) -> None:
    write_grid(tmp_path, tasks=("cam", "deer"), backbones=("resnet18", "vit"))
    markdown = render_markdown(prepare_runs(collect_runs(tmp_path)))
    contents = markdown.split("## Contents", 1)[1].split("\n## ", 1)[0]
    assert "- data set cam-data" in contents and "- data set deer-data" in contents
    links = [part.split(")", 1)[0] for part in contents.split("](#")[1:]]
    assert len(links) == 4 and len(set(links)) == 4
    for anchor in links:  # each target once, right before its section's heading
        assert markdown.count(f'<a id="{anchor}"></a>') == 1
        assert markdown.split(f'<a id="{anchor}"></a>', 1)[1].lstrip().startswith("## ")
    assert markdown.index("## Contents") < markdown.index("## cam — resnet18")
    assert '<a id="s-cam-resnet18"></a>\n\n## cam — resnet18' in markdown


def test_one_section_needs_no_contents(tmp_path: Path) -> None:
    write_grid(tmp_path)
    markdown = render_markdown(prepare_runs(collect_runs(tmp_path)))
    assert "## Contents" not in markdown and "<a id=" not in markdown


def test_section_anchors_are_unique() -> None:
    anchors = section_anchors([("a b", "c"), ("a-b", "c"), ("A_b", "c")])
    assert list(anchors.values()) == ["s-a-b-c", "s-a-b-c-2", "s-a_b-c"]


def fake_figures(drawn: list[tuple[str, str]]):  # noqa: ANN201
    """A stand-in for :func:`reports.figures.section_figures`: one small file per section, its drawing recorded."""

    def draw(section, folder: Path, out: Path, classes, *, gallery: bool = True) -> list[str]:  # noqa: ANN001
        drawn.append((section[0].task, section[0].backbone))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "accuracy_vs_ratio.png").write_bytes(b"png")
        return [f"![accuracy]({(folder / 'accuracy_vs_ratio.png').relative_to(out).as_posix()})", ""]

    return draw


def test_figures_are_reused_while_a_section_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    write_grid(runs, tasks=("cam", "deer"))
    drawn: list[tuple[str, str]] = []
    monkeypatch.setattr(document, "section_figures", fake_figures(drawn))
    first = write_report(runs, tmp_path / "out").report_path.read_text(encoding="utf-8")
    assert drawn == [("cam", "b"), ("deer", "b")]
    drawn.clear()
    assert write_report(runs, tmp_path / "out").report_path.read_text(encoding="utf-8") == first
    assert drawn == []
    metrics = runs / "deer__b__os__r1__s0" / "result.json"
    result = json.loads(metrics.read_text(encoding="utf-8"))
    result["metrics"]["test_minority_acc"] = 0.123
    metrics.write_text(json.dumps(result), encoding="utf-8")
    write_report(runs, tmp_path / "out")
    assert drawn == [("deer", "b")]  # only the changed section is drawn again
    drawn.clear()
    (tmp_path / "out" / "figures" / "cam__b" / "accuracy_vs_ratio.png").unlink()
    write_report(runs, tmp_path / "out")
    assert drawn == [("cam", "b")]  # a figure gone: drawn again
    drawn.clear()
    write_report(runs, tmp_path / "out", gallery=False)
    assert drawn == [("cam", "b"), ("deer", "b")]  # other switches: other figures
    drawn.clear()
    collection = collect_runs(runs)
    shown = [
        replace(r, metrics={**r.metrics, "test_minority_acc": 0.5}) if r.task == "cam" else r
        for r in collection.records
    ]
    write_report(runs, tmp_path / "out", gallery=False, collection=replace(collection, records=shown))
    assert drawn == [("cam", "b")]  # other values shown (e.g. recomputed at report time), same files


def test_figures_of_the_first_sections_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    write_grid(runs, tasks=("cam", "deer", "elk"))
    drawn: list[tuple[str, str]] = []
    monkeypatch.setattr(document, "section_figures", fake_figures(drawn))
    monkeypatch.setattr(document, "MAX_FIGURE_SECTIONS", 2)
    report = write_report(runs, tmp_path / "out").report_path.read_text(encoding="utf-8")
    assert drawn == [("cam", "b"), ("deer", "b")]
    note = document.FIGURES_CAPPED.format(sections=3, cap=2)
    assert report.count(note) == 1
    assert report.index(note) > report.index("## elk — b") and not (tmp_path / "out" / "figures" / "elk__b").exists()
    drawn.clear()
    monkeypatch.setattr(document, "MAX_FIGURE_SECTIONS", 6)
    result = CliRunner().invoke(
        cli.app, ["report", str(runs), "--out", str(tmp_path / "cli"), "--figure-sections", "1"]
    )
    assert result.exit_code == 0, result.output
    assert drawn == [("cam", "b")]
    report = (tmp_path / "cli" / "report.md").read_text(encoding="utf-8")
    assert report.count(document.FIGURES_CAPPED.format(sections=3, cap=1)) == 2
    negative = CliRunner().invoke(cli.app, ["report", str(runs), "--figure-sections", "-1"])
    assert negative.exit_code == 2 and negative.output == "error: --figure-sections must be 0 or more, got -1\n"
