"""Training loop, evaluation, metrics, learning-rate schedule and device settings on tiny CPU models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from bench.config import ConfigError, TrainSettings, resolve_options
from bench.device import create_grad_scaler, resolve_device
from bench.engine import NonFiniteLossError, evaluate, train_one_epoch
from bench.methods import create_method_loss, parse_method
from bench.metrics import classification_metrics, feature_separation
from bench.runner import create_scheduler

SETTINGS = TrainSettings.from_options(resolve_options({"epochs": 4}))


class TinyTapped(nn.Module):
    """A stand-in for a TappedBackbone: (logits [B, 2], [pooled feature [B, 4]])."""

    def __init__(self, poison: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, 2)
        self.poison = poison

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = self.body(x)
        logits = self.head(features)
        if self.poison:
            logits = logits * float("nan")
        return logits, [features]

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)
        return self.head(features), features


def _batches(n_batches: int = 3, batch: int = 4) -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (torch.randn(batch, 3, 8, 8, generator=generator), torch.tensor([0, 1] * (batch // 2)))
        for _ in range(n_batches)
    ]


def _epoch(model: nn.Module, method: str = "fscl", amp: str = "off") -> dict[str, float]:
    setup = resolve_device("cpu", amp)
    loss_fn = create_method_loss(parse_method(method), [6, 6], SETTINGS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return train_one_epoch(model, _batches(), loss_fn, optimizer, create_grad_scaler(setup), setup)


def test_train_one_epoch_reports_each_term_per_image() -> None:
    torch.manual_seed(0)
    calls = []
    model = TinyTapped()
    setup = resolve_device("cpu", "off")
    loss_fn = create_method_loss(parse_method("fscl"), [6, 6], SETTINGS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    summary = train_one_epoch(
        model,
        _batches(),
        loss_fn,
        optimizer,
        create_grad_scaler(setup),
        setup,
        on_batch=lambda d, t: calls.append((d, t)),
    )
    assert summary["train_images"] == 12
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert summary["train_loss"] == pytest.approx(summary["train_loss_ce"] + 0.1 * summary["train_loss_fscl"], rel=1e-5)
    assert 0.0 <= summary["train_acc"] <= 1.0


def test_training_reduces_the_loss() -> None:
    torch.manual_seed(0)
    model = TinyTapped()
    first = _epoch(model, "ce")["train_loss"]
    for _ in range(20):
        last = _epoch(model, "ce")["train_loss"]
    assert last < first


def test_non_finite_loss_raises() -> None:
    with pytest.raises(NonFiniteLossError, match="not finite"):
        _epoch(TinyTapped(poison=True))


def test_cpu_bf16_autocast_path_runs() -> None:
    torch.manual_seed(0)
    summary = _epoch(TinyTapped(), "fscl", amp="bf16")
    assert math.isfinite(summary["train_loss"])


def test_device_resolution() -> None:
    setup = resolve_device("cpu", "auto")
    assert setup.amp_dtype is None and not setup.channels_last and not setup.pin_memory
    assert resolve_device("cpu", "bf16").amp_dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        resolve_device("cpu", "fp16")


def test_evaluate_restores_training_mode_and_returns_outputs_in_order() -> None:
    model = TinyTapped()
    model.train()
    batches = _batches(2)
    outputs = evaluate(model, batches, resolve_device("cpu", "off"))
    assert model.training
    assert outputs.logits.shape == (8, 2) and outputs.features.shape == (8, 4)
    assert outputs.targets.tolist() == [0, 1] * 4
    with torch.no_grad():
        expected = model.head(model.body(torch.cat([images for images, _ in batches])))
    np.testing.assert_allclose(outputs.logits, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert outputs.predictions.tolist() == expected.argmax(dim=1).tolist()


def test_feature_separation_against_hand_computation() -> None:
    # Unit vectors after normalisation: class 0 at angles 0 and 90 degrees, class 1 at 180 and 270 degrees.
    features = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0], [0.0, -5.0]])
    labels = np.array([0, 0, 1, 1])
    result = feature_separation(features, labels)
    # Class means (0.5, 0.5) and (-0.5, -0.5): |mu1 - mu0|^2 = 2; each point lies 1/sqrt(2) from its mean,
    # so each within-class variance is 1/2: Fisher = 2 / (1/2 + 1/2) = 2.
    assert result["test_feature_fisher"] == pytest.approx(2.0)
    # Cosine distances: same class 1 (orthogonal); the other class: 2 (opposite) and 1 (orthogonal), mean 1.5.
    # Silhouette per point (b - a) / max(a, b) = (1.5 - 1) / 1.5 = 1/3.
    assert result["test_feature_silhouette"] == pytest.approx(1 / 3)


def test_feature_separation_leaves_out_undefined_numbers() -> None:
    assert feature_separation(np.ones((3, 2)), np.array([0, 0, 0])) == {}
    same_per_class = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    result = feature_separation(same_per_class, np.array([0, 0, 1, 1]))
    assert "test_feature_fisher" not in result  # no within-class spread
    assert result["test_feature_silhouette"] == pytest.approx(1.0)


def test_metrics_against_hand_computation() -> None:
    targets = np.array([0, 0, 0, 1, 1])
    predictions = np.array([0, 0, 1, 1, 0])
    metrics = classification_metrics(targets, predictions)
    assert metrics["test_minority_acc"] == pytest.approx(1 / 2)
    assert metrics["test_majority_acc"] == pytest.approx(2 / 3)
    assert metrics["test_acc"] == pytest.approx(3 / 5)
    assert metrics["test_balanced_acc"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # F1 majority: precision 2/3, recall 2/3 -> 2/3; minority: precision 1/2, recall 1/2 -> 1/2.
    assert metrics["test_macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metrics["test_confusion"] == [[2, 1], [1, 1]]


def test_minority_accuracy_is_zero_when_never_predicted() -> None:
    metrics = classification_metrics(np.array([0, 1, 1]), np.array([0, 0, 0]))
    assert metrics["test_minority_acc"] == 0.0 and metrics["test_majority_acc"] == 1.0


def _lrs(settings: TrainSettings) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = create_scheduler(optimizer, settings)
    lrs = []
    for _ in range(settings.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_schedule_by_hand() -> None:
    # lr_e = 0.5 * (1 + cos(pi * e / 4)) for e = 0..3
    assert _lrs(SETTINGS) == pytest.approx([1.0, 0.853553, 0.5, 0.146447], abs=1e-5)


def test_warmup_then_cosine_by_hand() -> None:
    settings = TrainSettings.from_options(resolve_options({"epochs": 5, "warmup_epochs": 2}))
    # warm-up: factor 1/3, 2/3; then cosine over 3 epochs: 1, 0.75, 0.25
    assert _lrs(settings) == pytest.approx([1 / 3, 2 / 3, 1.0, 0.75, 0.25], abs=1e-5)


def test_compiled_training_matches_eager_and_keeps_the_stage_taps() -> None:
    """--compile: the stage hooks are traced into the compiled forward, so fscl sees the same features and an
    epoch gives the same numbers. The "eager" backend runs the same graph capture without inductor's C++ build."""
    from dataclasses import replace

    from backbones import create_backbone
    from bench.device import prepare_model

    batches = [(images.repeat(1, 1, 2, 2), labels) for images, labels in _batches()]  # 16 px for the tiny ResNet
    summaries = []
    for compiled in (False, True):
        torch.manual_seed(0)
        setup = replace(resolve_device("cpu", "off", compile=compiled), compile_backend="eager")
        model = prepare_model(create_backbone("test_resnet", num_classes=2, taps=(2, 3), img_size=16), setup)
        loss_fn = create_method_loss(parse_method("fscl"), [6, 6], SETTINGS)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        summaries.append(train_one_epoch(model, batches, loss_fn, optimizer, create_grad_scaler(setup), setup))
        assert setup.description.endswith("compiled)") == compiled
    eager, compiled_summary = summaries
    assert compiled_summary.keys() == eager.keys() and "train_loss_fscl" in eager
    for key, value in eager.items():
        assert compiled_summary[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def test_bf16_trains_under_autocast_but_evaluates_in_float32() -> None:
    """bf16 logits near a tie argmax to class 0 (the majority): evaluation runs without autocast, so its logits are
    a plain float32 forward of the model in eval mode, while the training step runs under bf16 autocast."""
    torch.manual_seed(0)
    model = TinyTapped()
    setup = resolve_device("cpu", "bf16")
    dtypes: list[torch.dtype] = []
    model.head.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    loss_fn = create_method_loss(parse_method("ce"), [6, 6], SETTINGS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_one_epoch(model, _batches(), loss_fn, optimizer, create_grad_scaler(setup), setup)
    assert dtypes == [torch.bfloat16] * 3
    dtypes.clear()
    batches = _batches(2)
    outputs = evaluate(model, batches, setup)
    assert dtypes == [torch.float32] * 2
    assert outputs.logits.dtype == np.float32 and outputs.features.dtype == np.float32
    model.eval()
    with torch.no_grad():
        expected = [model.embed(images) for images, _ in batches]
    np.testing.assert_allclose(outputs.logits, torch.cat([e[0] for e in expected]).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(outputs.features, torch.cat([e[1] for e in expected]).numpy(), rtol=1e-6, atol=1e-7)


def test_hardware_says_what_a_run_resolved_to() -> None:
    assert resolve_device("cpu", "auto").hardware == {
        "device_type": "cpu",
        "precision": "fp32",
        "channels_last": False,
        "compile": False,
    }
    assert resolve_device("cpu", "bf16", compile=True).hardware == {
        "device_type": "cpu",
        "precision": "bf16",
        "channels_last": False,
        "compile": True,
    }


def test_an_epoch_reports_its_optimizer_steps() -> None:
    summary = _epoch(TinyTapped(), "ce")
    assert (summary["steps"], summary["train_images"]) == (3, 12)
