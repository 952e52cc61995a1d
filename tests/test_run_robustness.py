"""Any subset size trains with any batch size, and a run that fails for its own reasons becomes a failed result
(type and message of the exception in result.json) while the grid goes on, locally and in a Ray worker's body.

The property test runs ``bench run`` on a tiny ImageFolder (3 classes of 8 x 8 images) made once per module.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from bench import cli
from bench import runner as runner_module
from bench.config import ConfigError, GridSpec, TrainSettings, resolve_options
from bench.data import TaskSubset, open_source
from bench.data.loader import FoldingBatchSampler, steps_per_epoch
from bench.device import resolve_device
from bench.grid import check_grid, run_grid
from bench.results import RunFolder
from bench.runner import SETTING_ERRORS

runner = CliRunner()
CLASSES = ("a", "b", "c")
TRAIN_PER_CLASS = 12
HARDWARE_CPU = {"device_type": "cpu", "precision": "fp32", "channels_last": False, "compile": False}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ with 12 images per class, test/ with 2: coloured 8 x 8 noise, each class its own brightness."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split, count in (("train", TRAIN_PER_CLASS), ("test", 2)):
        for index, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (8, 8, 3)) + 80 * index
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def invoke(data: Path, out: Path, *args: str) -> object:
    return runner.invoke(
        cli.app,
        ["run", "--data", str(data), "--seeds", "1", "--epochs", "1", "--backbone", "test_resnet",
         "--no-decode-cache", "--out", str(out), *args],
    )  # fmt: skip


def rows(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------- batching


@pytest.mark.parametrize("batch_size", [2, 3, 5, 64])
def test_folding_batches_cover_every_item_once_and_never_leave_one_alone(batch_size: int) -> None:
    for items in range(2, 70):
        batches = list(FoldingBatchSampler(range(items), batch_size))
        assert [item for batch in batches for item in batch] == list(range(items))
        assert all(2 <= len(batch) <= batch_size + 1 for batch in batches), (items, batch_size)
        assert len(batches) == steps_per_epoch(items, batch_size) == len(FoldingBatchSampler(range(items), batch_size))
    assert [len(batch) for batch in FoldingBatchSampler(range(1025), 64)] == [64] * 15 + [65]  # the 1,025
    assert [len(batch) for batch in FoldingBatchSampler(range(1), 64)] == [1]  # nothing to fold into


def test_a_subset_of_1025_images_at_batch_64_trains(tmp_path: Path) -> None:
    """The issue's case (1,025 images, 1,025 mod 64 = 1) in small: 33 images at batch 32 is one step of 33; the old
    loader's last batch of one image stopped BatchNorm ("Expected more than 1 value per channel")."""
    out = tmp_path / "runs"
    result = runner.invoke(cli.app, ["run", "--data", "digits", "--classes", "0", "1", "--majority-count", "32",
                                     "--ratios", "0.03", "--batch-size", "32", "--img-size", "16", "--methods", "ce",
                                     "--seeds", "1", "--epochs", "1", "--backbone", "test_resnet",
                                     "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = out / "0-vs-1__test_resnet__ce__r0.03__s0"
    assert json.loads((run / "result.json").read_text())["status"] == "finished"
    assert [(row["train_images"], row["steps"]) for row in rows(run)] == [(33, 1)]


def test_a_subset_of_one_image_is_a_setting_error_before_training() -> None:
    one = TaskSubset(indices=np.array([0]), majority_count=1, minority_count=0)
    with pytest.raises(ConfigError, match="holds 1 image; training needs at least 2.*--majority-count"):
        runner_module.check_trainable(one, "fine__resnet18__ce__r1__s0")
    runner_module.check_trainable(TaskSubset(indices=np.array([0, 5]), majority_count=1, minority_count=1), "x")


# ---------------------------------------------------------------------------------------------- any size


METHODS = ["ce", "os", "drs", "cb", "focal", "ldam+drs", "la+bcl", "bsce", "fscl+os", "supcon", "triplet"]
SIZE_SETTINGS = settings(
    max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


class Silent:
    """A grid observer that listens to nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@SIZE_SETTINGS
@given(
    long_tail=st.booleans(),
    majority=st.integers(1, TRAIN_PER_CLASS),
    ratio=st.sampled_from([1.0, 0.5, 0.1, 0.01]),
    batch_size=st.integers(2, 2 * TRAIN_PER_CLASS),
    img_size=st.integers(8, 16),
    method=st.sampled_from(METHODS),
)
def test_any_subset_and_batch_size_trains_or_fails_with_a_reason(
    tiny_folder: Path, long_tail: bool, majority: int, ratio: float, batch_size: int, img_size: int, method: str
) -> None:
    """What ``bench run`` does after planning, run by its functions: check the grid, then run it. A setting error
    (what the CLI prints as one line with exit code 2) may only come before training; otherwise nothing is raised
    (exit code 0) and the run ends finished, or failed with a reason: a diverged loss, never a size it cannot take
    (the CLI itself is not used here: it adds seconds of its own per call)."""
    source = open_source(str(tiny_folder))
    options = {"epochs": 1, "majority_count": majority, "batch_size": batch_size, "img_size": img_size}
    task = ("lt", CLASSES) if long_tail else ("a-vs-b", CLASSES[:2])
    train = TrainSettings.from_options(resolve_options(options))
    spec = GridSpec(source.name, source.fingerprint, (task,), ("test_resnet",), (method,), (ratio,), 1, train)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "runs"
        try:
            check_grid(spec, source)
            summary = run_grid(spec, source, out, resolve_device("cpu", "off"), workers=0, observer=Silent())
        except SETTING_ERRORS as error:
            assert "\n" not in str(error) and not (out.exists() and list(out.glob("*/metrics.jsonl"))), error
            return
        assert (summary.finished + summary.failed, summary.lost) == (1, 0)
        (run,) = [path.parent for path in out.glob("*/result.json")]
        record = json.loads((run / "result.json").read_text())
        assert record["hardware"] == HARDWARE_CPU
        if record["status"] == "failed":  # a diverged loss is a result; any other failure a size did not train
            assert record["failure"]["reason"].startswith("training loss is not finite"), record
            return
        assert record["status"] == "finished", record
        images = sum(record["train_counts"].values())  # every sampler's epoch has the subset's size
        assert [(row["train_images"], row["steps"]) for row in rows(run)] == [
            (images, steps_per_epoch(images, batch_size))
        ]


# ---------------------------------------------------------------------------------------------- failures


class Faults:
    """Stand-ins for the runner's train_one_epoch and evaluate that raise in runs of the named base losses."""

    def __init__(self, in_training: dict[str, Exception], in_evaluation: dict[str, Exception]) -> None:
        self.in_training, self.in_evaluation = in_training, in_evaluation
        self.real_train, self.real_evaluate = runner_module.train_one_epoch, runner_module.evaluate
        self.base = ""  # the base loss of the run being trained

    def train_one_epoch(self, model, loader, loss_fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN201
        self.base = loss_fn.base_name
        if self.base in self.in_training:
            raise self.in_training[self.base]
        return self.real_train(model, loader, loss_fn, *args, **kwargs)

    def evaluate(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        if self.base in self.in_evaluation:
            raise self.in_evaluation[self.base]
        return self.real_evaluate(*args, **kwargs)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(runner_module, "train_one_epoch", self.train_one_epoch)
        monkeypatch.setattr(runner_module, "evaluate", self.evaluate)


def test_an_exception_in_a_run_is_a_failed_result_and_the_grid_goes_on(
    tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cb runs raise in training, focal runs in evaluation: both are failed results with type and message; the ce
    run finishes; exit code 0; the same command does not train the failed runs again."""
    Faults({"cb": RuntimeError("CUDA error: boom")}, {"focal": ValueError("bad\nvalue")}).install(monkeypatch)
    out = tmp_path / "runs"
    args = ["--classes", "a", "b", "--majority-count", "6", "--ratios", "0.5", "--batch-size", "4",
            "--img-size", "8", "--methods", "ce,cb,focal", "--epochs", "2"]  # fmt: skip
    result = invoke(tiny_folder, out, *args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "1 run finished, 2 failed" in result.output
    records = {p.parent.name.split("__")[2]: json.loads(p.read_text()) for p in out.glob("*/result.json")}
    assert records["ce"]["status"] == "finished" and records["ce"]["hardware"] == HARDWARE_CPU
    assert records["cb"]["status"] == "failed"
    assert records["cb"]["failure"] == {"reason": "RuntimeError: CUDA error: boom", "epoch": 1}
    assert records["focal"]["failure"] == {"reason": "ValueError: bad value", "epoch": 2}  # after its 2 epochs
    for method in ("cb", "focal"):
        assert records[method]["hardware"] == HARDWARE_CPU and "metrics" not in records[method]
        assert not (out / f"a-vs-b__test_resnet__{method}__r0.5__s0" / "checkpoint.pt").exists()
    assert len(rows(out / "a-vs-b__test_resnet__focal__r0.5__s0")) == 2
    config = json.loads((out / "a-vs-b__test_resnet__cb__r0.5__s0" / "config.json").read_text())
    assert config["hardware"] == HARDWARE_CPU
    again = invoke(tiny_folder, out, *args)
    assert "3 of 3 runs already finished" in again.output, again.output


def test_a_remote_run_that_raises_comes_back_as_a_failed_result(
    tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body of a Ray task (no Ray needed): the worker sends back a failed run folder, not an exception."""
    from bench.config import RunConfig
    from bench.remote_run import WorkerOptions, train_remote

    Faults({"ce": MemoryError("out of memory")}, {}).install(monkeypatch)
    source = open_source(str(tiny_folder))
    options = resolve_options({"epochs": 1, "img_size": 8, "majority_count": 4, "batch_size": 4})
    config = RunConfig(source.name, source.fingerprint, "a-vs-b", ("a", "b"), "test_resnet", "ce", 1.0, 0,
                       TrainSettings.from_options(options))  # fmt: skip
    threads = torch.get_num_threads()
    try:
        files = train_remote(config, source, WorkerOptions("cpu", False, 0, 1.0, None))
    finally:
        torch.set_num_threads(threads)
    assert files.result["status"] == "failed"
    assert files.result["failure"] == {"reason": "MemoryError: out of memory", "epoch": 1}
    assert files.result["hardware"] == HARDWARE_CPU
    assert json.loads(files.files["config.json"])["hardware"] == HARDWARE_CPU
    assert "test_outputs.npz" not in files.files


def test_a_result_records_the_hardware_that_was_used(tmp_path: Path) -> None:
    """--amp auto is stored as asked; hardware says what it resolved to (bf16 on the CPU when asked for)."""
    out = tmp_path / "runs"
    result = runner.invoke(cli.app, ["run", "--data", "digits", "--classes", "0", "1", "--majority-count", "8",
                                     "--ratios", "0.5", "--batch-size", "8", "--img-size", "8", "--methods", "ce",
                                     "--seeds", "1", "--epochs", "1", "--backbone", "test_resnet", "--device", "cpu",
                                     "--amp", "bf16", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = RunFolder(out / "0-vs-1__test_resnet__ce__r0.5__s0")
    expected = {**HARDWARE_CPU, "precision": "bf16"}
    assert json.loads(run.result.read_text())["hardware"] == expected
    assert json.loads(run.config.read_text())["hardware"] == expected


def test_stages_are_checked_even_when_no_method_taps_them(tmp_path: Path) -> None:
    result = runner.invoke(cli.app, ["run", "--data", "digits", "--stages", "9", "--methods", "ce", "--ratios", "1",
                                     "--seeds", "1", "--epochs", "1", "--img-size", "8", "--majority-count", "4",
                                     "--backbone", "test_resnet", "--out", str(tmp_path / "runs")])  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: stage 9 out of range for test_resnet: valid 0-4 (act1, layer1, layer2, layer3, layer4)"]
