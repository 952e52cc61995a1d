"""The CUDA paths: a grid on the GPU records the precision it trained in, the fp16 GradScaler steps, the model and
the batch reaching it are channels-last, host batches are pinned, cuDNN autotunes, ``--compile`` and Ray GPU shares
run, and ``bench speed`` measures on the GPU.

Tests marked ``cuda`` skip without a CUDA GPU; ``python reports/speed/gpu_check.py OUT_DIR`` runs them on one
(``-m "cuda and not compile"`` leaves out the torch.compile test where inductor has no C compiler). The unmarked
tests check the same logic on the CPU: what the device module chooses for a GPU of a given compute capability, the
grid's layout plumbing on a CPU set up like a GPU, and the check script on a machine without CUDA.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

import bench.engine
import bench.runner
import bench.session
from backbones import create_backbone
from bench import cli
from bench.config import PAPER_DEFAULTS, ConfigError, TrainSettings
from bench.device import DeviceSetup, create_grad_scaler, prepare_model, resolve_device
from bench.engine import train_one_epoch
from bench.methods import create_method_loss, parse_method
from bench.runner import create_optimizer

REPO = Path(__file__).resolve().parents[1]
CHECK_SCRIPT = REPO / "reports" / "speed" / "gpu_check.py"
NO_CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA GPU visible (torch.cuda.is_available() is False); run python reports/speed/gpu_check.py OUT_DIR "
    "on a GPU machine",
)
GRID = ["--task", "fine", "--ratios", "1", "--methods", "ce,fscl", "--seeds", "1", "--epochs", "1",
        "--majority-count", "40", "--batch-size", "16"]  # fmt: skip
runner = CliRunner()


def on_cuda(test: Callable[..., None]) -> Callable[..., None]:
    """Mark ``test`` as a CUDA test that skips, with the reason, where no GPU is visible."""
    return pytest.mark.cuda(NO_CUDA(test))


@dataclass
class Probe:
    """What a grid's training saw: each batch before and after its copy to the device, the model's conv weights."""

    host_pinned: list[bool] = field(default_factory=list)  # the loader's batch, before the copy
    batch_devices: list[str] = field(default_factory=list)  # the batch as it reaches the model
    batch_channels_last: list[bool] = field(default_factory=list)
    logit_dtypes: list[torch.dtype] = field(default_factory=list)  # the training forward's output (autocast)
    conv_weights_channels_last: list[bool] = field(default_factory=list)
    loader_pin_memory: list[bool] = field(default_factory=list)


def _channels_last(tensor: Tensor) -> bool:
    return tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last)


def _spy_on_the_run(monkeypatch: pytest.MonkeyPatch) -> Probe:
    """Record, while a grid trains in this process, what reaches the model and what the loaders were asked for."""
    probe = Probe()
    real_to_device, real_prepare = bench.engine.to_device, bench.runner.prepare_model
    real_loader = bench.runner.create_loader

    def to_device(images: Tensor, labels: Tensor, setup: DeviceSetup) -> tuple[Tensor, Tensor]:
        probe.host_pinned.append(images.is_pinned())
        return real_to_device(images, labels, setup)

    def reach_model(module: nn.Module, args: tuple[Any, ...]) -> None:
        probe.batch_devices.append(args[0].device.type)
        probe.batch_channels_last.append(_channels_last(args[0]))

    def prepare_model(model: nn.Module, setup: DeviceSetup) -> nn.Module:
        model = real_prepare(model, setup)
        probe.conv_weights_channels_last.extend(
            _channels_last(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d)
        )  # fmt: skip
        model.register_forward_pre_hook(reach_model)
        model.register_forward_hook(lambda module, args, output: probe.logit_dtypes.append(output[0].dtype))
        return model

    def create_loader(*args: Any, pin_memory: bool = False, **kwargs: Any) -> torch.utils.data.DataLoader:
        probe.loader_pin_memory.append(pin_memory)
        return real_loader(*args, pin_memory=pin_memory, **kwargs)

    monkeypatch.setattr(bench.engine, "to_device", to_device)
    monkeypatch.setattr(bench.runner, "prepare_model", prepare_model)
    monkeypatch.setattr(bench.runner, "create_loader", create_loader)
    return probe


def _results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(out.glob("*/result.json"))]


def _run_grid(out: Path, *options: str) -> list[dict[str, Any]]:
    result = runner.invoke(cli.app, ["run", *GRID, *options, "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = _results(out)
    assert [r["status"] for r in results] == ["finished", "finished"], results
    for record in results:
        assert math.isfinite(record["metrics"]["test_balanced_acc"])
    return results


def _expected_cuda_precision() -> str:
    """bf16 autocast on GPUs with bfloat16 in hardware (compute capability 8.0+), fp32 on older ones."""
    return "bf16" if torch.cuda.get_device_capability()[0] >= 8 else "fp32"


# --- on a GPU -----------------------------------------------------------------------------------------------------


@on_cuda
def test_a_grid_on_cuda_records_its_precision_and_trains_channels_last_from_pinned_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    probe = _spy_on_the_run(monkeypatch)
    results = _run_grid(tmp_path / "runs", "--device", "cuda", "--img-size", "32", "--workers", "2")
    precision = _expected_cuda_precision()
    for record in results:
        assert record["hardware"] == {
            "device_type": "cuda", "precision": precision, "channels_last": True, "compile": False
        }  # fmt: skip
        assert record["device"].startswith("cuda")
    assert torch.backends.cudnn.benchmark
    assert probe.loader_pin_memory and all(probe.loader_pin_memory)
    assert probe.host_pinned and all(probe.host_pinned), "a loader batch reached the copy unpinned"
    assert set(probe.batch_devices) == {"cuda"}
    assert probe.batch_channels_last and all(probe.batch_channels_last), "a batch reached the model not channels-last"
    assert probe.conv_weights_channels_last and all(probe.conv_weights_channels_last)
    autocast_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    assert set(probe.logit_dtypes) == {autocast_dtype}


BATCHES = 24  # enough halvings from 2**24 to the scales fp16 training usually runs at (2**16 and below)


def _adam_steps(optimizer: torch.optim.Optimizer) -> int:
    """Optimizer steps Adam has taken (a step the GradScaler skips for an inf gradient does not count, in the fused
    kernel too)."""
    states = list(optimizer.state.values())
    return int(states[0]["step"]) if states else 0


@on_cuda
def test_fp16_autocast_steps_through_its_grad_scaler() -> None:
    """``--amp fp16`` trains in float16 behind an active GradScaler. Started at a scale whose gradients overflow
    float16 (its logits' gradients alone exceed 65504), the scaler skips those steps and halves the scale until steps
    go through: no inf skip forever."""
    setup = resolve_device("cuda", "fp16")
    assert setup.precision == "fp16" and setup.use_grad_scaler
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "img_size": 32, "batch_size": 8})
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 32, 32, generator=generator), torch.arange(8) % 2) for _ in range(BATCHES)]

    def train(scaler: torch.amp.GradScaler) -> tuple[dict[str, float], torch.optim.Optimizer, nn.Module, Tensor]:
        torch.manual_seed(0)
        model = prepare_model(create_backbone("resnet18", num_classes=2, taps=(), img_size=32), setup)
        before = torch.cat([p.detach().flatten().float().clone() for p in model.parameters()])
        dtypes: list[torch.dtype] = []
        model.register_forward_hook(lambda module, args, output: dtypes.append(output[0].dtype))
        loss_fn = create_method_loss(parse_method("ce"), [64, 64], settings).to(setup.device)
        optimizer = create_optimizer(list(model.parameters()), settings, setup.device)  # as bench run: fused Adam
        summary = train_one_epoch(model, batches, loss_fn, optimizer, scaler, setup)
        assert set(dtypes) == {torch.float16}
        return summary, optimizer, model, before

    scaler = create_grad_scaler(setup)
    assert scaler.is_enabled()
    summary, optimizer, model, _ = train(scaler)
    assert summary["steps"] == BATCHES and math.isfinite(summary["train_loss"])
    assert _adam_steps(optimizer) >= 1 and math.isfinite(scaler.get_scale())

    overflowing = torch.amp.GradScaler("cuda", init_scale=2.0**24)
    summary, optimizer, model, before = train(overflowing)
    taken = _adam_steps(optimizer)
    assert 1 <= taken < BATCHES, f"{taken} of {BATCHES} steps taken: the first ones, at scale 2**24, should overflow"
    assert overflowing.get_scale() == 2.0**24 * 0.5 ** (BATCHES - taken)  # halved once per skipped step, never grown
    after = torch.cat([p.detach().flatten().float() for p in model.parameters()])
    assert torch.isfinite(after).all() and not torch.equal(after, before)


@on_cuda
@pytest.mark.compile
def test_compile_runs_a_training_step_on_cuda() -> None:
    """``--compile`` with inductor (Triton kernels; needs a C compiler on the machine) trains and is compiled."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    setup = resolve_device("cuda", compile=True)
    settings = TrainSettings.from_options({**PAPER_DEFAULTS, "img_size": 32, "batch_size": 8})
    torch.manual_seed(0)
    model = prepare_model(create_backbone("test_resnet", num_classes=2, taps=(2, 3), img_size=32), setup)
    loss_fn = create_method_loss(parse_method("fscl"), [8, 8], settings).to(setup.device)
    optimizer = create_optimizer(list(model.parameters()), settings, setup.device)
    batches = [(torch.randn(8, 3, 32, 32), torch.arange(8) % 2) for _ in range(2)]
    summary = train_one_epoch(model, batches, loss_fn, optimizer, create_grad_scaler(setup), setup)
    assert summary["steps"] == 2 and math.isfinite(summary["train_loss"]) and "train_loss_fscl" in summary
    assert counters["stats"]["unique_graphs"] >= 1, "the forward was not compiled"
    assert setup.hardware["compile"] is True


@on_cuda
def test_a_ray_grid_shares_the_gpu_between_runs(tmp_path: Path) -> None:
    """``--executor ray --gpus-per-run 0.5``: two runs fit on one GPU and both train on it."""
    pytest.importorskip("ray")
    results = _run_grid(
        tmp_path / "runs", "--executor", "ray", "--gpus-per-run", "0.5", "--cpus-per-run", "1", "--device", "cuda",
        "--img-size", "32", "--workers", "0",
    )  # fmt: skip
    for record in results:
        assert record["hardware"]["device_type"] == "cuda"
        assert record["hardware"]["precision"] == _expected_cuda_precision()


@on_cuda
@pytest.mark.parametrize("amp", ["auto", "fp16"])
def test_speed_measures_on_cuda(amp: str, tmp_path: Path) -> None:
    out = tmp_path / "speed.json"
    args = ["speed", "--device", "cuda", "--amp", amp, "--backbone", "test_resnet", "--img-size", "32",
            "--batch-size", "8", "--steps", "3", "--workers", "0", "--json", str(out)]  # fmt: skip
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["device"].startswith("cuda")
    assert ("fp16 autocast" in record["device"]) == (amp == "fp16")
    step = record["steps"][0]
    assert step["steps"] == 3 and all(step[kind] > 0 for kind in ("minimal", "harness_ce", "harness_fscl"))


# --- the same logic on the CPU ------------------------------------------------------------------------------------


def _fake_gpu(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], count: int = 1) -> None:
    """Make torch report ``count`` CUDA GPUs of ``capability`` (resolve_device only asks, it allocates nothing)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)


@pytest.mark.parametrize(
    ("capability", "amp", "precision"),
    [((9, 0), "auto", "bf16"), ((8, 0), "auto", "bf16"), ((7, 5), "auto", "fp32"), ((7, 0), "bf16", "bf16"),
     ((9, 0), "fp16", "fp16"), ((9, 0), "off", "fp32")],
)  # fmt: skip
def test_a_cuda_setup_by_compute_capability(
    capability: tuple[int, int], amp: str, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a GPU: channels-last, pinned memory and cuDNN autotune; ``--amp auto`` is bf16 where the GPU has it in
    hardware and fp32 on older GPUs (a written ``--amp bf16`` is honoured there); fp16 comes with a GradScaler."""
    _fake_gpu(monkeypatch, capability)
    setup = resolve_device("cuda", amp)
    assert (setup.device.type, setup.channels_last, setup.pin_memory) == ("cuda", True, True)
    assert setup.use_grad_scaler == (precision == "fp16")
    assert torch.backends.cudnn.benchmark
    assert setup.hardware == {"device_type": "cuda", "precision": precision, "channels_last": True, "compile": False}
    assert resolve_device("auto", amp).device.type == "cuda"


def test_a_cuda_index_past_the_machines_gpus_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_gpu(monkeypatch, (9, 0), count=2)
    assert resolve_device("cuda:1").device == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"--device cuda:2: this machine has 2 CUDA GPU\(s\), numbered 0 to 1"):
        resolve_device("cuda:2")


def test_without_a_gpu_cuda_is_a_one_line_error_and_cudnn_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    with pytest.raises(ConfigError, match="no CUDA GPU is visible"):
        resolve_device("cuda")
    assert resolve_device("auto").device.type == "cpu" and not torch.backends.cudnn.benchmark


@pytest.mark.filterwarnings("ignore:.*pin_memory.*:UserWarning")  # torch pins nothing without an accelerator
def test_a_grid_on_a_cpu_set_up_like_a_gpu_trains_channels_last_and_asks_for_pinned_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plumbing the CUDA grid test checks, on the CPU: the run's setup reaches the loaders (pin_memory), the
    model (channels-last weights), the batch as the model sees it, and the recorded hardware."""
    real_resolve = bench.session.resolve_device

    def like_a_gpu(device: str, amp: str, *, compile: bool = False) -> DeviceSetup:
        return replace(real_resolve(device, amp, compile=compile), channels_last=True, pin_memory=True)

    monkeypatch.setattr(bench.session, "resolve_device", like_a_gpu)
    probe = _spy_on_the_run(monkeypatch)
    results = _run_grid(
        tmp_path / "runs", "--device", "cpu", "--amp", "bf16", "--img-size", "16", "--workers", "0",
        "--backbone", "test_resnet",
    )  # fmt: skip
    hardware = {"device_type": "cpu", "precision": "bf16", "channels_last": True, "compile": False}
    assert [record["hardware"] for record in results] == [hardware, hardware]
    assert probe.loader_pin_memory and all(probe.loader_pin_memory)
    assert set(probe.batch_devices) == {"cpu"}
    assert probe.batch_channels_last and all(probe.batch_channels_last)
    assert probe.conv_weights_channels_last and all(probe.conv_weights_channels_last)
    assert set(probe.logit_dtypes) == {torch.bfloat16}


def _check(out: Path | None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), *([str(out)] if out else [])], capture_output=True, text=True,
        env={**os.environ, **env}, cwd=REPO, timeout=120,
    )  # fmt: skip


def test_the_gpu_check_on_a_machine_without_cuda_names_the_machine_and_exits_0(tmp_path: Path) -> None:
    done = _check(tmp_path / "out", CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 0, done.stderr
    machine = (tmp_path / "out" / "machine.txt").read_text()
    assert f"torch: {torch.__version__}" in machine and "CUDA available: False" in machine
    summary = json.loads((tmp_path / "out" / "gpu-check.json").read_text())
    assert summary["cuda"] is False and summary["steps"] == []
    assert "no CUDA GPU" in done.stdout


def test_the_gpu_check_without_its_output_folder_is_a_one_line_error() -> None:
    done = _check(None)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "OUT_DIR" in done.stderr
