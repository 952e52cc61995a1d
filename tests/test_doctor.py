"""``bench doctor`` on a folder the test makes: counts, bad files, train/test duplicates, sizes, ratio checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from bench import cli
from bench.data import open_source
from bench.doctor import check_ratios, examine, find_duplicates, inspect_file, inspect_split

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


def test_examine_counts_unreadable_and_duplicates(tmp_path: Path) -> None:
    source = open_source(_make_folder(tmp_path / "data"))
    report = examine(source, [("fine", ("deer", "horse"))], [1.0, 0.4, 0.1], majority_count=100, threads=2)
    train, test = report.splits
    assert train.counts == {"deer": 8, "horse": 3} and test.counts == {"deer": 2, "horse": 4}
    assert sorted(i.name for i in train.unreadable) == ["train/deer/empty.jpg", "train/deer/truncated.jpg"]
    assert sorted(report.duplicates) == [
        ("train/horse/0.png", "test/horse/copy.png", "same bytes"),
        ("train/horse/1.png", "test/horse/resaved.png", "same pixels"),
    ]
    # deer has 8 files (2 unreadable ones included: the check is on the index, as the run's subsampling is).
    assert [(c.ratio, c.majority, c.minority) for c in report.ratios] == [(1.0, 8, 3), (0.4, 8, 3), (0.1, 8, 1)]
    assert report.ratios[0].note == "only 3 horse images, so the actual ratio is 0.375"
    assert report.ratios[1].note == ""  # 3.2 rounds to 3: 0.375 lies within 10 % of 0.4
    assert report.ratios[2].note == "0.8 minority images round to 1, so the actual ratio is 0.125"
    assert report.problems == [
        "2 unreadable file(s) in train",
        "2 image(s) in both the train and the test split",
        "task fine at ratio 1: only 3 horse images, so the actual ratio is 0.375",
        "task fine at ratio 0.1: 0.8 minority images round to 1, so the actual ratio is 0.125",
    ]


def test_ratio_within_tolerance_is_not_a_problem(tmp_path: Path) -> None:
    source = open_source("digits")
    (check,) = check_ratios(source.train, [("fine", ("1", "8"))], [1.0], majority_count=10000)
    assert (check.majority, check.minority, check.note) == (136, 131, "")  # 0.963 is within 10 % of 1


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
