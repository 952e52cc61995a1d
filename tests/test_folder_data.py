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
    assert record["train_counts"] == {"water-deer": 12, "roe-deer": 6}
    assert record["test_counts"] == {"water-deer": 4, "roe-deer": 4}  # val/ is the evaluation split
    assert record["skipped_files"] == 1
    subset = json.loads((run / "subset.json").read_text())
    assert all(name.startswith("roe-deer/") for name in subset["roe-deer"])
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
