"""``bench doctor`` on a folder the test makes: counts, bad files, train/test duplicates and near-duplicates, sizes,
ratio checks."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench import cli
from bench.data import open_source
from bench.doctor import (
    ImageInfo,
    SplitReport,
    examine,
    find_duplicates,
    find_near_duplicates,
    inspect_file,
    inspect_split,
    render,
)
from bench.near_duplicates import NEAR_THRESHOLD, dhash

runner = CliRunner()


def _image(seed: int, size: tuple[int, int] = (24, 20)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _make_folder(root: Path) -> Path:
    """train: deer 6 (one empty, one truncated), horse 3; test: deer 2, horse 2 with one copy of a train file and
    one PNG with the same pixels as a train PNG but other bytes."""
    seed = 0
    for split, counts in (("train", {"deer": 6, "horse": 3}), ("test", {"deer": 2, "horse": 2})):
        for name, count in counts.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                seed += 1
                _image(seed, (24 + i, 20)).save(folder / f"{i}.png", compress_level=1)
    (root / "train" / "deer" / "empty.jpg").write_bytes(b"")
    whole = root / "train" / "deer" / "whole.jpg"
    _image(7, (64, 48)).save(whole, quality=90)
    (root / "train" / "deer" / "truncated.jpg").write_bytes(whole.read_bytes()[:200])
    whole.unlink()
    shutil.copy(root / "train" / "horse" / "0.png", root / "test" / "horse" / "copy.png")
    with Image.open(root / "train" / "horse" / "1.png") as image:
        image.save(root / "test" / "horse" / "resaved.png", compress_level=9)
    return root


def test_inspect_file_reads_sizes_modes_and_errors(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "data")
    info = inspect_file(root / "train" / "horse" / "1.png", "train/horse/1.png")
    assert (info.width, info.height, info.mode, info.error) == (25, 20, "RGB", "")
    assert inspect_file(root / "train" / "deer" / "empty.jpg", "e").error == "empty file"
    assert inspect_file(root / "train" / "deer" / "truncated.jpg", "t").error.startswith("OSError")
    grey = tmp_path / "grey.png"
    Image.new("L", (5, 4), 128).save(grey)
    assert inspect_file(grey, "g").mode == "L"


def test_examine_counts_readable_images_unreadable_files_and_duplicates(tmp_path: Path) -> None:
    source = open_source(_make_folder(tmp_path / "data"))
    report = examine(source, [("fine", ("deer", "horse"))], [1.0, 0.5, 0.1], majority_count=100, threads=2)
    train, test = report.splits
    assert train.counts == {"deer": 6, "horse": 3} and test.counts == {"deer": 2, "horse": 4}
    assert train.files == {"deer": 8, "horse": 3}  # the 2 unreadable files are indexed but never trained on
    assert sorted(i.name for i in train.unreadable) == ["train/deer/empty.jpg", "train/deer/truncated.jpg"]
    assert sorted(report.duplicates) == [
        ("train/horse/0.png", "test/horse/copy.png", "same bytes"),
        ("train/horse/1.png", "test/horse/resaved.png", "same pixels"),
    ]
    # the predicted subsets come from the 6 readable deer images, as the run's do
    (check,) = report.tasks
    assert check.feasibility is not None
    assert [(o.ratio, o.counts) for o in check.feasibility.outcomes] == [(1.0, (6, 3)), (0.5, (6, 3)), (0.1, (6, 1))]
    assert report.problems == [
        "2 unreadable files in train",
        "2 images in both the train and the test split",
        "task fine: minority horse has only 3 images; ratio 1 needs 6 (actual ratio 0.5)",
        "task fine: ratio 0.1 asks 0.6 minority images of 6; it gets 1 (actual ratio 0.167)",
        "task fine: ratios 1 and 0.5 give the same training subset (6 vs 3)",
    ]
    lines = render(report)
    assert "  train: 9 readable images (deer 6 of 8 files, horse 3)" in lines
    assert "  fine at 0.1: 6 / 1  <- ratio 0.1 asks 0.6 minority images of 6; it gets 1 (actual ratio 0.167)" in lines


def test_doctor_predicts_the_subsets_the_run_trains(tmp_path: Path) -> None:
    from bench.runner import create_subset
    from bench.task import prepare_task

    source = open_source(_make_folder(tmp_path / "data"))
    ratios = [1.0, 0.5, 0.2, 0.1]
    (check,) = examine(source, [("fine", ("deer", "horse"))], ratios, majority_count=100, threads=2).tasks
    with pytest.warns(UserWarning, match="skipped 2 of 11 image files"):
        task = prepare_task(source, ("deer", "horse"), 8)
    trained = [create_subset(task, majority_count=100, ratio=r, seed=3).class_counts for r in ratios]
    assert trained == [(6, 3), (6, 3), (6, 1), (6, 1)]  # 6 readable deer images of 8 files
    assert check.feasibility is not None and [o.counts for o in check.feasibility.outcomes] == trained
    # with 2 validation images a class: deer 6 - 2 = 4, horse 3 - min(2, 3 // 2) = 2 left to train on
    (held,) = examine(source, [("fine", ("deer", "horse"))], ratios, majority_count=100, threads=2, val_count=2).tasks
    trained = [create_subset(task, majority_count=100, ratio=r, seed=3, val_count=2).class_counts for r in ratios]
    assert trained == [(4, 2), (4, 2), (4, 1), (4, 1)]  # 0.2 x 4 = 0.8 rounds to 1
    assert held.feasibility is not None and [o.counts for o in held.feasibility.outcomes] == trained


def test_doctor_reads_an_own_validation_split_only_when_runs_validate(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "data")
    (root / "val" / "deer").mkdir(parents=True)
    _image(90).save(root / "val" / "deer" / "0.png")
    source = open_source(root)
    task = [("fine", ("deer", "horse"))]
    report = examine(source, task, [1.0], majority_count=100, threads=2, val_count=5)
    assert [split.name for split in report.splits] == ["train", "test", "val"]
    assert report.splits[2].counts == {"deer": 1, "horse": 0}
    (check,) = report.tasks
    assert check.feasibility is None and "no readable image in val/horse" in check.blocked
    without = examine(source, task, [1.0], majority_count=100, threads=2, val_count=0)
    assert [split.name for split in without.splits] == ["train", "test"]
    (check,) = without.tasks  # with its own val/ nothing is carved from train: 6 vs 3 as without validation
    assert check.feasibility is not None and check.feasibility.outcomes[0].counts == (6, 3)
    (root / "val" / "horse").mkdir()
    _image(91).save(root / "val" / "horse" / "0.png")
    (check,) = examine(open_source(root), task, [1.0], majority_count=100, threads=2, val_count=5).tasks
    assert check.feasibility is not None and check.feasibility.outcomes[0].counts == (6, 3)  # nothing carved


def test_in_memory_split_and_pixel_duplicates() -> None:
    source = open_source("digits")
    train = inspect_split(source.train, "train")
    test = inspect_split(source.test, "test")
    assert len(train.images) == len(source.train) and not train.unreadable
    duplicates = find_duplicates(train, test)
    expected = {img.tobytes() for img in source.train.images} & {img.tobytes() for img in source.test.images}
    assert len({t for _, t, _ in duplicates}) == sum(img.tobytes() in expected for img in source.test.images)


def test_cli_exit_codes(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "data")
    result = runner.invoke(cli.app, ["doctor", "--data", str(root), "--classes", "deer", "horse", "--ratios", "1"])
    assert result.exit_code == 1, result.output
    assert "unreadable: train/deer/empty.jpg: empty file" in result.output
    assert "in both splits (same bytes): train/horse/0.png = test/horse/copy.png" in result.output
    assert "problems: 3" in result.output
    assert "  train: 9 readable images (deer 6 of 8 files, horse 3)" in result.output.splitlines()
    clean = tmp_path / "clean"
    for position, (split, name) in enumerate((s, n) for s in ("train", "test") for n in ("deer", "horse")):
        (clean / split / name).mkdir(parents=True)
        for i in range(2):
            _image(100 + 2 * position + i).save(clean / split / name / f"{i}.png")
    result = runner.invoke(cli.app, ["doctor", "--data", str(clean), "--classes", "deer", "horse", "--ratios", "1"])
    assert result.exit_code == 0, result.output
    assert "problems: none found" in result.output
    bad = runner.invoke(cli.app, ["doctor", "--data", str(clean), "--task", "nope"])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1 and "unknown task 'nope'" in bad.output


def test_unusable_class_folders_are_problems_not_errors(tmp_path: Path) -> None:
    root = _make_folder(tmp_path / "data")
    (root / "train" / "badger").mkdir()
    (root / "train" / "fox").mkdir()
    _image(50).save(root / "train" / "fox" / "0.png")
    whole = runner.invoke(cli.app, ["doctor", "--data", str(root), "--ratios", "1"])  # no task: every class folder
    assert whole.exit_code == 1, whole.output
    lines = whole.output.splitlines()
    assert "  left out: badger, fox (class folders no task can use; see problems)" in lines
    assert f"  - class fox cannot be used: {root}/test/fox does not exist; add images of fox to both splits or " \
           f"remove {root}/train/fox" in lines  # fmt: skip
    assert f"  - class badger cannot be used: {root}/train/badger has no images" in whole.output
    args = ["doctor", "--data", str(root), "--classes", "deer", "horse", "--ratios", "1", "--val-count", "0"]
    result = runner.invoke(cli.app, args)  # a task's doctor looks only at the task's class folders
    assert result.exit_code == 1, result.output
    assert "badger" not in result.output and "fox" not in result.output
    assert "  fine at 1" not in result.output and "  deer-vs-horse at 1: 6 / 3" in result.output
    held = runner.invoke(cli.app, args[:-2])  # the default --val-count holds half of a small class out: 6 -> 3, 3 -> 2
    assert "  deer-vs-horse at 1: 3 / 2" in held.output and "(1 more for validation)" in held.output
    used = runner.invoke(cli.app, ["doctor", "--data", str(root), "--classes", "deer", "badger", "--ratios", "1"])
    assert used.exit_code == 1, used.output
    assert (
        "  - task deer-vs-badger: uses badger, whose class folders cannot be used; bench run refuses it" in used.output
    )
    typo = runner.invoke(cli.app, ["doctor", "--data", str(root), "--classes", "deer", "badgr", "--ratios", "1"])
    assert typo.exit_code == 2 and typo.output.count("\n") == 1 and "did you mean" in typo.output


def test_doctor_notes_ratios_the_data_cannot_give() -> None:
    """digits 1 vs 8 has 136 / 131 training images: at --majority-count 60, 0.01 and 0.001 both give 60 vs 1."""
    result = runner.invoke(cli.app, ["doctor", "--classes", "1", "8", "--ratios", "1,0.1,0.01,0.001",
                                     "--majority-count", "60"])  # fmt: skip
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert "  1-vs-8 at 0.1: 60 / 6" in lines
    assert "  - task 1-vs-8: ratio 0.001 asks 0.06 minority images of 60; it gets 1 (actual ratio 0.0167)" in lines
    assert "  - task 1-vs-8: ratios 0.01 and 0.001 give the same training subset (60 vs 1)" in lines


def _scene(seed: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """A smooth grey-ish scene (a few bright and dark blobs) with slight pixel noise: uint8 [H, W, 3]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]].astype(float)
    grey = np.full(x.shape, 128.0)
    for _ in range(6):
        cx, cy, r, a = rng.uniform(0, size[0]), rng.uniform(0, size[1]), rng.uniform(5, 20), rng.uniform(-120, 120)
        grey += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    pixels = np.repeat(np.clip(grey, 0, 250)[..., None], 3, axis=2) + rng.integers(0, 3, (*x.shape, 3))
    return pixels.astype(np.uint8)


def _make_scenes(root: Path) -> Path:
    """train: deer 0-3, horse 0-3 (8 distinct scenes); test: 2 distinct scenes a class, plus deer/noisy.png (train
    deer 0 with pixel noise), deer/shifted.png (train horse 1 moved 1 px: another class), horse/brighter.png (train
    horse 2, 12 levels brighter) and horse/copy.png (train horse 3's bytes: identical, not near)."""
    seed = 200
    for split, count in (("train", 4), ("test", 2)):
        for name in ("deer", "horse"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                seed += 1
                Image.fromarray(_scene(seed)).save(root / split / name / f"{i}.png")
    noisy = _scene(201).astype(int) + np.random.default_rng(0).integers(-4, 5, (48, 64, 3))
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(root / "test" / "deer" / "noisy.png")
    Image.fromarray(np.roll(_scene(206), 1, axis=1)).save(root / "test" / "deer" / "shifted.png")
    Image.fromarray(_scene(207) + 12).save(root / "test" / "horse" / "brighter.png")
    shutil.copy(root / "train" / "horse" / "3.png", root / "test" / "horse" / "copy.png")
    return root


def test_near_duplicates_across_the_split(tmp_path: Path) -> None:
    root = _make_scenes(tmp_path / "data")
    report = examine(open_source(root), [("fine", ("deer", "horse"))], [1.0], majority_count=100, threads=2)
    assert report.duplicates == [("train/horse/3.png", "test/horse/copy.png", "same bytes")]
    found = [(n.train, n.test, n.pairs) for n in report.near_duplicates]
    assert found == [
        ("train/deer/0.png", "test/deer/noisy.png", 1),
        ("train/horse/1.png", "test/deer/shifted.png", 1),
        ("train/horse/2.png", "test/horse/brighter.png", 1),
    ]  # copy.png is reported once, as identical
    assert all(0 <= n.distance <= NEAR_THRESHOLD for n in report.near_duplicates)
    assert "3 test images near-duplicates of train images (difference hash within 6 of 64 bits, not identical)" in (
        report.problems
    )
    lines = render(report)
    assert "  test/deer: 2 of 4 images near a train image (2 pairs; 1 nearest to another class's image)" in lines
    assert "  test/horse: 1 of 4 images near a train image (1 pair)" in lines
    assert any(line.startswith("  near (distance ") and line.endswith("train/deer/0.png ~ test/deer/noisy.png")
               for line in lines)  # fmt: skip
    assert any("split by location or sequence" in line for line in lines)
    # none of the distinct scenes is near another; a tighter threshold drops the farther pairs
    train, test = report.splits
    assert find_near_duplicates(train, test, threshold=0, identical=["test/horse/copy.png"]) == [
        n for n in report.near_duplicates if n.distance == 0
    ]


def test_cli_near_duplicates_exit_1_and_threshold(tmp_path: Path) -> None:
    root = _make_scenes(tmp_path / "data")
    (root / "test" / "horse" / "copy.png").unlink()
    args = ["doctor", "--data", str(root), "--classes", "deer", "horse", "--ratios", "1"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 1, result.output
    assert "problems: 1" in result.output and "  - 3 test images near-duplicates of train images" in result.output
    for name in ("noisy", "shifted", "brighter"):
        (root / "test" / ("horse" if name == "brighter" else "deer") / f"{name}.png").unlink()
    clean = runner.invoke(cli.app, args)
    assert clean.exit_code == 0, clean.output
    assert "near-duplicates (difference hash within 6 of 64 bits, not identical): none" in clean.output
    assert "problems: none found" in clean.output
    assert "within 9 of 64 bits" in runner.invoke(cli.app, [*args, "--near-threshold", "9"]).output
    default = inspect.signature(cli.doctor).parameters["near_threshold"].default
    assert default == NEAR_THRESHOLD


def test_dhash_of_a_file_matches_its_pixels(tmp_path: Path) -> None:
    pixels = _scene(1)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert inspect_file(tmp_path / "a.png", "a").near_hash == dhash(pixels)
    Image.new("RGB", (8, 8)).save(tmp_path / "small.png")
    assert inspect_file(tmp_path / "small.png", "s").near_hash is None
    digits = examine(open_source("digits"), [], [], majority_count=10)  # 8 x 8 images: too small to hash
    assert digits.near_duplicates == [] and digits.unhashed == 1797
    assert "  1797 images under 9 x 8 px not hashed" in render(digits)


def test_nearest_train_image_wins_and_ties_go_to_the_same_class() -> None:
    def split(name: str, hashes: list[tuple[str, int]]) -> SplitReport:
        images = [ImageInfo(f"{name}/{c}/{i}.png", near_hash=h) for i, (c, h) in enumerate(hashes)]
        return SplitReport(name, files={}, images=images)

    train = split("train", [("horse", 0b1), ("deer", 0b11), ("horse", 0b1100), ("deer", 0b0101), ("deer", 7 << 40)])
    test = split("test", [("deer", 0), ("deer", 0b0100), ("horse", 7 << 61)])
    found = [(n.train, n.test, n.distance, n.pairs) for n in find_near_duplicates(train, test, threshold=2)]
    assert found == [
        ("train/horse/0.png", "test/deer/0.png", 1, 4),  # the nearest, though another class
        ("train/deer/3.png", "test/deer/1.png", 1, 3),  # horse 2 and deer 3 are 1 bit away: deer wins
    ]
