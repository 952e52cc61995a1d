"""The small CIFAR job of issue 18: what keeps bench's fixed cost down (no weights built to check a grid, the fused
Adam step) and the two scripts that time it against a plain loop (reports/speed/plain_loop.py, small_job.py)."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from backbones import factory
from bench.config import PAPER_DEFAULTS, TrainSettings
from bench.grid import check_grid
from bench.plan import plan_run
from bench.runner import create_optimizer

SPEED = Path(__file__).resolve().parents[1] / "reports" / "speed"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"speed_{name}", SPEED / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_grid_builds_no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    create_model = factory.timm.create_model

    def recording(*args: Any, **kwargs: Any) -> nn.Module:
        model = create_model(*args, **kwargs)
        built.append(next(model.parameters()).device.type)
        return model

    monkeypatch.setattr(factory.timm, "create_model", recording)
    options = {"backbones": "resnet18,test_resnet", "stages": "3,4", "methods": "ce"}
    plan = plan_run(data="digits", config_path=None, task_names=("fine",), classes=None, options=options)
    check_grid(plan.spec, plan.source)
    assert built == ["meta", "meta"]


def _settings() -> TrainSettings:
    return TrainSettings.from_options({**PAPER_DEFAULTS, "lr": 0.01, "weight_decay": 0.001})


def test_runs_step_with_the_fused_adam_that_resumes_a_plain_one() -> None:
    """The fused kernel on the CPU, the run's lr and weight decay; a plain Adam's state (a checkpoint from before)
    loads into it and the next step is the plain one's up to float rounding."""
    torch.manual_seed(0)
    plain_model, fused_model = nn.Linear(4, 3), nn.Linear(4, 3)
    fused_model.load_state_dict(plain_model.state_dict())
    plain = torch.optim.Adam(plain_model.parameters(), lr=0.01, weight_decay=0.001)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))

    def step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    step(plain_model, plain)
    fused_model.load_state_dict(plain_model.state_dict())
    fused = create_optimizer(list(fused_model.parameters()), _settings(), torch.device("cpu"))
    assert fused.defaults["fused"] is True
    assert (fused.defaults["lr"], fused.defaults["weight_decay"]) == (0.01, 0.001)
    fused.load_state_dict(copy.deepcopy(plain.state_dict()))  # as from a checkpoint file
    step(plain_model, plain)
    step(fused_model, fused)
    assert [float(fused.state[p]["step"]) for p in fused_model.parameters()] == [2.0, 2.0]  # resumed, not restarted
    for a, b in zip(plain_model.parameters(), fused_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)  # an update is ~lr = 0.01
    assert not create_optimizer([nn.Parameter(torch.zeros(2))], _settings(), torch.device("mps")).defaults["fused"]


def _image_folder(root: Path, per_class: int) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, shade in (("deer", 40), ("horse", 200), ("frog", 120)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(rng.normal(shade, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_plain_loop_trains_and_evaluates_the_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _image_folder(tmp_path / "data", per_class=7)
    plain_loop = _script("plain_loop")
    args = ["--data", str(data), "--majority-count", "5", "--val-count", "2", "--epochs", "2", "--img-size", "16",
            "--batch-size", "4", "--workers", "0"]  # fmt: skip
    assert plain_loop.main(args) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (record["train_images"], record["val_images"], record["test_images"]) == (10, 4, 14)  # frog never read
    assert set(record["phases"]) == {"import", "index", "build", "epochs", "evaluate"}
    assert len(record["epoch_seconds"]) == 2 and 0 <= record["test_balanced_acc"] <= 1


def test_plain_loop_holds_validation_images_out_of_training() -> None:
    targets = [0] * 10 + [1] * 10
    train, val = _script("plain_loop").split_indices(targets, 2, count=6, val_count=3, seed=0)
    assert len(train) == 12 and len(val) == 6 and not set(train) & set(val)
    assert sorted(targets[i] for i in val) == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("name", ["plain_loop", "small_job"])
def test_scripts_refuse_a_missing_data_folder(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _script(name).main(["--data", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{tmp_path / 'nowhere'}" in error


def test_small_job_splits_bench_s_wall_time_from_its_run_folder(tmp_path: Path) -> None:
    folder = tmp_path / "deer-vs-horse__resnet18__ce__r1__s0"
    folder.mkdir()
    (folder / "result.json").write_text(json.dumps({"wall_seconds": 30.0}))
    rows = [{"epoch": 1, "seconds": 12.5}, {"epoch": 2, "seconds": 12.0}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "leaderboard.md").write_text("")
    phases = _script("small_job").bench_phases(tmp_path, wall=41.0)
    assert phases == {"outside": 11.0, "epochs": 24.5, "run other": 5.5}
