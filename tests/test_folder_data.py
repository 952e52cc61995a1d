"""``bench run`` on the user's own ImageFolder tree: --classes, --config, val/ as the test split, bad files;
and on the shared CIFAR-10 copy when it is present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bench import cli

runner = CliRunner()
TINY = ["--epochs", "1", "--img-size", "16", "--seeds", "1", "--batch-size", "8", "--ratios", "0.5", "--methods", "os"]
SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the decode cache of these runs out of the user's ~/.cache/bench."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


def _write_folder(root: Path, eval_split: str = "val") -> None:
    """Two classes of 12 train and 4 evaluation images of different colours, plus one broken file."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), (eval_split, 4)):
        for name, colour in (("water-deer", (150, 110, 60)), ("roe-deer", (120, 90, 50))):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                noise = rng.integers(0, 40, size=(20, 24, 3))
                Image.fromarray((np.array(colour) + noise).astype(np.uint8)).save(folder / f"{i:03}.png")
    (root / "train" / "roe-deer" / "broken.jpg").write_bytes(b"not an image")


def test_run_on_own_folder_with_classes(tmp_path: Path) -> None:
    _write_folder(tmp_path / "wildlife")
    out = tmp_path / "runs"
    args = ["run", "--data", str(tmp_path / "wildlife"), "--classes", "water-deer", "roe-deer", *TINY]
    result = runner.invoke(cli.app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = out / "water-deer-vs-roe-deer__resnet18__os__r0.5__s0"
    record = json.loads((run / "result.json").read_text())
    # 12 readable images a class (the broken file skipped); validation holds out min(100, 12 // 2) = 6 of each, so
    # water-deer trains on 6 and roe-deer on round(0.5 * 6) = 3
    assert record["train_counts"] == {"water-deer": 6, "roe-deer": 3}
    assert record["val_counts"] == {"water-deer": 6, "roe-deer": 6}
    assert record["test_counts"] == {"water-deer": 4, "roe-deer": 4}  # val/ alone is the evaluation split
    assert record["skipped_files"] == 1
    subset = json.loads((run / "subset.json").read_text())
    assert subset["val_source"] == "train"  # with val/ as the test split, validation is carved from train/
    assert all(name.startswith("train/roe-deer/") for name in subset["train"]["roe-deer"] + subset["val"]["roe-deer"])
    assert "warning: skipped 1 of 25 image files that could not be read" in result.output
    assert "UserWarning" not in result.output  # one line, not Python's warning format


def test_run_with_a_config_file_naming_data_and_tasks(tmp_path: Path) -> None:
    _write_folder(tmp_path / "wildlife", eval_split="test")
    config = tmp_path / "bench.toml"
    config.write_text('data = "wildlife"\nepochs = 1\n\n[tasks.fine]\nclasses = ["water-deer", "roe-deer"]\n')
    out = tmp_path / "runs"
    args = ["run", "--config", str(config), "--task", "fine", *TINY[2:], "--out", str(out)]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "fine__resnet18__os__r0.5__s0" / "result.json").read_text())
    assert record["classes"] == ["water-deer", "roe-deer"] and record["config"]["epochs"] == 1


def test_folder_without_test_split_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "data" / "train" / "a").mkdir(parents=True)
    result = runner.invoke(cli.app, ["run", "--data", str(tmp_path / "data"), "--classes", "a", "b", *TINY])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(not SHARED_CIFAR10.is_dir(), reason="uses the shared CIFAR-10 JPEG copy, absent here")
def test_shared_cifar10_presets_from_its_bench_toml(tmp_path: Path) -> None:
    """Uses ../shared/data/cifar10 (real photographs): its bench.toml names fine = deer vs horse."""
    out = tmp_path / "runs"
    result = runner.invoke(
        cli.app,
        ["run", "--data", str(SHARED_CIFAR10), "--task", "fine", "--majority-count", "40", "--img-size", "32",
         "--epochs", "1", "--seeds", "1", "--ratios", "0.1", "--methods", "ce", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((out / "fine__resnet18__ce__r0.1__s0" / "result.json").read_text())
    assert record["classes"] == ["deer", "horse"]
    assert record["train_counts"] == {"deer": 40, "horse": 4}
    assert record["test_counts"] == {"deer": 1000, "horse": 1000}


# ------------------------------------------------ class folders that no task can use (issue 15, point 8)


def _tree(root: Path, splits: dict[str, dict[str, int]]) -> Path:
    """root/<split>/<class>/<i>.png, tiny images; a count of 0 makes an empty class folder."""
    for split, classes in splits.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (6, 5), (i * 20 % 256, 40, 80)).save(root / split / name / f"{i}.png")
    return root


def _stray_folders(root: Path) -> Path:
    """deer and horse in both splits, plus train/badger without images, fox only in train and owl only in test."""
    _tree(root, {"train": {"deer": 6, "horse": 4, "badger": 0, "fox": 2}, "test": {"deer": 2, "horse": 2, "owl": 1}})
    (root / "train" / "badger" / "notes.txt").write_text("not an image file")
    return root


def test_unusable_class_folders_are_left_out_of_the_data_set(tmp_path: Path) -> None:
    from bench.data import open_source

    source = open_source(_stray_folders(tmp_path / "wild"))
    assert source.classes == ("deer", "horse")
    assert list(source.unusable) == ["badger", "fox", "owl"]
    train, test = tmp_path / "wild" / "train", tmp_path / "wild" / "test"
    assert source.unusable["badger"].startswith(f"{train}/badger has no images (.bmp")
    assert f"{test}/badger does not exist" in source.unusable["badger"]
    assert (
        source.unusable["fox"] == f"{test}/fox does not exist; add images of fox to both splits or remove {train}/fox"
    )
    assert source.unusable["owl"].endswith(f"or remove {test}/owl")
    assert [len(source.train.indices_of(c)) for c in source.classes] == [6, 4]
    # the stray folders leave the data's identity alone: runs made before they appeared stay valid
    clean = open_source(_tree(tmp_path / "clean", {"train": {"deer": 6, "horse": 4}, "test": {"deer": 2, "horse": 2}}))
    assert clean.fingerprint == source.fingerprint


def test_run_refuses_only_a_task_that_uses_an_unusable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import dry_run
    from bench.speed import StepFigures

    monkeypatch.setattr(dry_run, "measure_steps", lambda *a, **k: StepFigures(16, 8, 0.1, 0.1, 0.1, 1.0, 1.0))
    root = _stray_folders(tmp_path / "wild")
    (root / "bench.toml").write_text(
        '[tasks.fine]\nclasses = ["deer", "horse"]\n[tasks.coarse]\nclasses = ["deer", "fox"]\n'
    )
    grid = ["--backbone", "test_resnet", "--dry-run", "--out", str(tmp_path / "runs"), *TINY]
    refusals = {"badger": ["--classes", "deer", "badger"], "fox": ["--task", "coarse"]}
    for name, task in refusals.items():
        refused = runner.invoke(cli.app, ["run", "--data", str(root), *task, *grid])
        assert refused.exit_code == 2, refused.output
        assert refused.output.count("\n") == 1
        assert refused.output.startswith(f"error: class '{name}' cannot be used: {root}/")
        assert refused.output.strip().endswith(f"or remove {root}/train/{name}")
    for task in (["--classes", "deer", "horse"], ["--task", "fine"]):
        fine = runner.invoke(cli.app, ["run", "--data", str(root), *task, *grid])
        assert fine.exit_code == 0, fine.output
        assert "dry run: 1 run in the grid" in fine.output


def test_tasks_marks_unusable_class_folders(tmp_path: Path) -> None:
    root = _stray_folders(tmp_path / "wild")
    _tree(root, {"train": {"boar": 3}, "test": {"boar": 1}})
    (root / "bench.toml").write_text('[tasks.coarse]\nclasses = ["deer", "fox"]\n')
    result = runner.invoke(cli.app, ["tasks", "--data", str(root)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"data set {root}: 3 classes (3 class folders left out: badger, fox, owl)"
    assert "  task coarse: majority deer, minority fox  [unusable: fox; bench run refuses it]" in lines
    assert (
        "  task lt: all 3 classes long-tailed, head to tail: boar, deer, horse; it uses the 3 usable classes and "
        "leaves out badger, fox and owl"
    ) in lines
    assert "  train: boar 3, deer 6, horse 4" in lines
    assert f"  unusable class fox: {root}/test/fox does not exist; add images of fox to both splits or remove " \
           f"{root}/train/fox" in lines  # fmt: skip


def test_task_lt_trains_the_usable_classes(tmp_path: Path) -> None:
    from bench.plan import plan_run

    root = _stray_folders(tmp_path / "wild")
    _tree(root, {"train": {"boar": 3}, "test": {"boar": 1}})
    plan = plan_run(data=str(root), config_path=None, task_names=("lt",), classes=None, options={})
    assert plan.spec.tasks == (("lt", ("boar", "deer", "horse")),)


def test_a_folder_with_no_usable_class_is_described_not_an_error(tmp_path: Path) -> None:
    root = _tree(tmp_path / "bare", {"train": {"a": 0}, "test": {"b": 1}})
    tasks = runner.invoke(cli.app, ["tasks", "--data", str(root)])
    assert tasks.exit_code == 0, tasks.output
    assert f"data set {root}: 0 classes (2 class folders left out: a, b)" in tasks.output
    assert "  train: no usable class" in tasks.output.splitlines()
    doctor = runner.invoke(cli.app, ["doctor", "--data", str(root)])
    assert doctor.exit_code == 1 and "problems: 2" in doctor.output
