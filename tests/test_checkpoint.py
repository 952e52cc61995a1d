"""A run stopped after a checkpoint resumes there and ends exactly as the uninterrupted run does.

Runs train timm's tiny ``test_resnet`` at 16 px on the bundled digits; the stop is a KeyboardInterrupt raised
when the third epoch starts, as Ctrl-C would, after the checkpoint of epoch 2 was written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench import cli
from bench import runner as runner_module
from bench.checkpoint import Checkpoints, TrainingState
from bench.config import PAPER_DEFAULTS, RunConfig, TrainSettings
from bench.results import CHECKPOINT_FILE

runner = CliRunner()
GRID = ["run", "--task", "fine", "--ratios", "0.5", "--seeds", "1", "--epochs", "4", "--img-size", "16",
        "--majority-count", "24", "--batch-size", "8", "--backbone", "test_resnet",
        "--checkpoint-minutes", "0"]  # fmt: skip


def run(out: Path, *extra: str) -> str:
    result = runner.invoke(cli.app, [*GRID, *extra, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return result.output


def stop_at_epoch(monkeypatch: pytest.MonkeyPatch, stop: int) -> None:
    """Make the next run raise KeyboardInterrupt as it starts epoch ``stop``."""
    real, calls = runner_module.train_one_epoch, []

    def counting(*args: object, **kwargs: object) -> dict[str, float]:
        calls.append(1)
        if len(calls) == stop:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner_module, "train_one_epoch", counting)


def without_timings(folder: Path) -> tuple[list[dict[str, float]], dict[str, object]]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    result = json.loads((folder / "result.json").read_text())
    for row in rows:
        row.pop("seconds")
    return rows, {key: result[key] for key in ("metrics", "train_counts", "epochs", "status")}


@pytest.mark.parametrize(
    ("method", "extra", "log"),
    [
        ("ce", [], "as left"),
        ("fscl+os", ["--warmup-epochs", "1"], "deleted"),  # taps, an oversampler and the warm-up schedule
        ("ldam+drs", ["--drw-epoch", "3"], "a row too many"),  # re-weighting, re-sampling from after the resume point
        ("la+bcl", [], "as left"),  # a loss with its own parameters that reads the classifier
    ],
)
def test_a_stopped_run_resumes_at_its_checkpoint_and_ends_as_if_never_stopped(
    method: str, extra: list[str], log: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The epoch log is rebuilt from the checkpoint: lost (a Ray worker's fresh folder) or with an epoch logged
    after the checkpoint was saved, the resumed run's metrics.jsonl equals the uninterrupted run's."""
    run(tmp_path / "straight", "--methods", method, *extra)
    with monkeypatch.context() as patch:
        stop_at_epoch(patch, 3)
        stopped = runner.invoke(cli.app, [*GRID, "--methods", method, *extra, "--out", str(tmp_path / "resumed")])
    assert stopped.exit_code == 130, stopped.output
    (folder,) = (tmp_path / "resumed").iterdir()
    assert (folder / CHECKPOINT_FILE).exists() and not (folder / "result.json").exists()
    if log == "deleted":
        (folder / "metrics.jsonl").unlink()
    elif log == "a row too many":
        with (folder / "metrics.jsonl").open("a") as stream:
            stream.write('{"epoch": 3, "lr": 0.001, "loss": 1.0, "seconds": 1.0}\n')
    resumed_epochs = []
    with monkeypatch.context() as patch:  # count the epochs the second attempt trains
        real = runner_module.train_one_epoch
        patch.setattr(runner_module, "train_one_epoch", lambda *a, **k: resumed_epochs.append(1) or real(*a, **k))
        output = run(tmp_path / "resumed", "--methods", method, *extra)
    assert len(resumed_epochs) == 2  # epochs 3 and 4 only
    assert f"resuming {folder.name} after epoch 2 (its checkpoint)" in output
    straight = tmp_path / "straight" / folder.name
    assert without_timings(folder) == without_timings(straight)
    with np.load(folder / "test_outputs.npz") as a, np.load(straight / "test_outputs.npz") as b:
        assert all(np.array_equal(a[key], b[key]) for key in ("logits", "features", "labels"))
    result = json.loads((folder / "result.json").read_text())
    assert result["resumed_after_epochs"] == [2] and not (folder / CHECKPOINT_FILE).exists()
    assert "resumed_after_epochs" not in json.loads((straight / "result.json").read_text())


def test_no_checkpoint_is_written_when_minutes_have_not_passed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stop_at_epoch(monkeypatch, 3)
    stopped = runner.invoke(cli.app, [*GRID, "--checkpoint-minutes", "10", "--out", str(tmp_path)])
    assert stopped.exit_code == 130
    (folder,) = tmp_path.iterdir()
    assert not (folder / CHECKPOINT_FILE).exists() and len((folder / "metrics.jsonl").read_text().splitlines()) == 2


ROWS = ['{"epoch": 1}\n', '{"epoch": 2}\n']


def config_of(epochs: int) -> RunConfig:
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "epochs": epochs})
    return RunConfig("digits", "f", "fine", ("a", "b"), "test_resnet", "ce", 0.5, 0, settings)


def small_state() -> TrainingState:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = runner_module.create_scheduler(optimizer, config_of(4).settings)
    return TrainingState(model, optimizer, scheduler, None, torch.nn.Identity())


def test_a_checkpoint_of_other_settings_or_a_damaged_one_is_discarded_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_FILE
    Checkpoints(path, config_of(4), workers=0, minutes=0).save(small_state(), 2, 1.5, ROWS)
    other = Checkpoints(path, config_of(5), workers=0, minutes=0)
    with pytest.warns(UserWarning, match="not a usable checkpoint .*other settings"):
        assert other.resume(small_state(), torch.device("cpu")) is None
    assert other.discarded and not path.exists()
    path.write_bytes(b"half a file")
    with pytest.warns(UserWarning, match="not a usable checkpoint"):
        assert Checkpoints(path, config_of(4), workers=0, minutes=0).resume(small_state(), torch.device("cpu")) is None


def test_a_checkpoint_whose_epoch_rows_do_not_match_its_epoch_is_discarded(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_FILE
    Checkpoints(path, config_of(4), workers=0, minutes=0).save(small_state(), 2, 1.5, ROWS[:1])
    with pytest.warns(UserWarning, match="follows epoch 2 but holds 1 epoch rows"):
        assert Checkpoints(path, config_of(4), workers=0, minutes=0).resume(small_state(), torch.device("cpu")) is None


def test_resuming_with_other_loader_workers_warns_that_augmentations_differ(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_FILE
    saved_state = small_state()
    Checkpoints(path, config_of(4), workers=0, minutes=0).save(saved_state, 2, 1.5, ROWS)
    same = Checkpoints(path, config_of(4), workers=1, minutes=0)  # the main process counts as worker 0
    loaded_state = small_state()
    resumed = same.resume(loaded_state, torch.device("cpu"))
    assert resumed is not None and (resumed.epoch, resumed.seconds, resumed.resumed_after) == (2, 1.5, (2,))
    assert resumed.rows == tuple(ROWS)
    assert torch.equal(loaded_state.model.weight, saved_state.model.weight)
    with pytest.warns(UserWarning, match="resumes with 3 loader workers after 0: its augmentations from epoch 3"):
        assert Checkpoints(path, config_of(4), workers=3, minutes=0).resume(small_state(), torch.device("cpu"))


def test_checkpoint_minutes_are_checked() -> None:
    result = runner.invoke(cli.app, [*GRID, "--checkpoint-minutes", "-1"])
    assert result.exit_code == 2 and "--checkpoint-minutes must be 0 or more minutes (inf: never)" in result.output


def test_torch_random_state_is_restored(tmp_path: Path) -> None:
    """Backbones with dropout or drop-path draw from torch's generator while training."""
    path = tmp_path / CHECKPOINT_FILE
    torch.manual_seed(5)
    Checkpoints(path, config_of(4), workers=0, minutes=0).save(small_state(), 2, 1.5, ROWS)
    expected = torch.rand(3)
    torch.manual_seed(99)
    assert Checkpoints(path, config_of(4), workers=0, minutes=0).resume(small_state(), torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)


def test_the_gradient_scaler_of_fp16_training_is_restored(tmp_path: Path) -> None:
    """fp16 autocast runs (CUDA) carry a GradScaler whose scale has adapted; a CPU scaler has the same state."""
    path = tmp_path / CHECKPOINT_FILE
    saved = small_state()
    saved = TrainingState(saved.model, saved.optimizer, saved.scheduler, torch.amp.GradScaler("cpu", init_scale=8.0),
                          saved.loss)  # fmt: skip
    saved.scaler.scale(torch.ones(1))  # the scale tensor exists from the first scaled loss on
    saved.scaler.update(2.0)
    Checkpoints(path, config_of(4), workers=0, minutes=0).save(saved, 2, 1.5, ROWS)
    fresh = small_state()
    fresh = TrainingState(fresh.model, fresh.optimizer, fresh.scheduler, torch.amp.GradScaler("cpu"), fresh.loss)
    assert Checkpoints(path, config_of(4), workers=0, minutes=0).resume(fresh, torch.device("cpu"))
    assert fresh.scaler.get_scale() == 2.0 and fresh.scaler.state_dict() == saved.scaler.state_dict()


def test_a_checkpoint_dir_that_cannot_be_made_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "checkpoints"
    result = runner.invoke(cli.app, [*GRID, "--checkpoint-dir", str(target), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (
        f"error: cannot create checkpoint folder {target}: Not a directory; choose another --checkpoint-dir"
    )


def test_a_checkpoint_is_compared_by_what_keys_the_run(tmp_path: Path) -> None:
    """A checkpoint written before ``sweep`` was recorded, or under another path of the same data, resumes (results
    are compared the same way); one of other data does not."""
    from bench.checkpoint import saved_epoch

    path = tmp_path / CHECKPOINT_FILE
    Checkpoints(path, config_of(4), workers=0, minutes=0).save(small_state(), 2, 1.5, ROWS)
    saved = torch.load(path, weights_only=True)
    del saved["config"]["sweep"]
    saved["config"]["dataset"] = "/elsewhere/the-same-data"
    torch.save(saved, path)
    assert saved_epoch(path, config_of(4)) == 2
    resumed = Checkpoints(path, config_of(4), workers=0, minutes=0).resume(small_state(), torch.device("cpu"))
    assert resumed is not None and resumed.epoch == 2
    saved["config"]["data_fingerprint"] = "other data"
    torch.save(saved, path)
    assert saved_epoch(path, config_of(4)) == 0
    with pytest.warns(UserWarning, match="other settings"):
        assert Checkpoints(path, config_of(4), workers=0, minutes=0).resume(small_state(), torch.device("cpu")) is None
