"""Device and precision: every GPU fast path (channels-last, autocast, GradScaler, cuDNN autotune, pinned
memory, non-blocking copies) lives here, switchable, so the training loop stays device-independent.

On CUDA the defaults are channels-last and bfloat16 autocast on GPUs that compute bfloat16 in hardware (compute
capability 8.0 and later), fp32 on older ones; ``--amp fp16`` adds a GradScaler. On the CPU training is fp32 unless
``--amp bf16`` is asked for (which runs the same autocast code path). ``--compile`` wraps the training forward in
``torch.compile`` on any device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bench.config import ConfigError

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_PRECISIONS = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class DeviceSetup:
    """Where and how a run computes."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None = full precision
    channels_last: bool
    pin_memory: bool
    compile: bool = False  # torch.compile the training forward
    compile_backend: str = "inductor"

    @property
    def use_grad_scaler(self) -> bool:
        return self.amp_dtype == torch.float16

    @property
    def precision(self) -> str:
        """The training forward's precision: fp32, bf16 or fp16 (autocast)."""
        return _PRECISIONS[self.amp_dtype]

    @property
    def hardware(self) -> dict[str, str | bool]:
        """What a run computed with, as result.json and config.json record it under ``hardware`` (``--amp auto``
        resolved): device_type cpu | cuda | mps, precision fp32 | bf16 | fp16, channels_last, compile."""
        return {
            "device_type": self.device.type,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compile,
        }

    @property
    def description(self) -> str:
        precision = "fp32" if self.amp_dtype is None else f"{self.precision} autocast"
        layout = ", channels-last" if self.channels_last else ""
        compiled = ", compiled" if self.compile else ""
        return f"{self.device} ({precision}{layout}{compiled})"


def native_bf16(target: torch.device) -> bool:
    """Whether the CUDA GPU ``target`` computes bfloat16 in hardware (compute capability 8.0 and later: Ampere,
    Hopper, Blackwell); older GPUs (Volta, Turing) have no bfloat16 arithmetic in hardware, so bf16 autocast there
    gains nothing and may run slower than fp32."""
    major, _ = torch.cuda.get_device_capability(target)
    return major >= 8


def resolve_device(device: str = "auto", amp: str = "auto", *, compile: bool = False) -> DeviceSetup:
    """``device``: auto | cpu | cuda[:N] | mps; ``amp``: auto (bf16 on a CUDA GPU with native bf16, off elsewhere)
    | off | bf16 | fp16; ``compile``: torch.compile the model's forward."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if target.type == "cuda" and target.index is not None and target.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(f"--device {device}: this machine has {count} CUDA GPU(s), numbered 0 to {count - 1}")
    if target.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for but MPS is not available; use --device cpu")
    if amp == "auto":
        amp = "bf16" if target.type == "cuda" and native_bf16(target) else "off"
    if amp == "fp16" and target.type != "cuda":
        raise ConfigError("--amp fp16 needs a CUDA device; use --amp bf16 or --amp off on the CPU")
    cuda = target.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    return DeviceSetup(
        device=target, amp_dtype=_AMP_DTYPES.get(amp), channels_last=cuda, pin_memory=cuda, compile=compile
    )


def autocast(setup: DeviceSetup) -> contextlib.AbstractContextManager:
    """Mixed-precision context for the forward pass (a no-op in full precision)."""
    if setup.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=setup.device.type, dtype=setup.amp_dtype)


def create_grad_scaler(setup: DeviceSetup) -> torch.amp.GradScaler:
    """A GradScaler that is active only for fp16 autocast on CUDA."""
    return torch.amp.GradScaler(setup.device.type, enabled=setup.use_grad_scaler)


def prepare_model(model: nn.Module, setup: DeviceSetup) -> nn.Module:
    """Move the model to the device, channels-last where that is faster, and compile its forward if asked.

    ``nn.Module.compile`` compiles ``model(x)`` in place, so the module keeps its type and attributes (taps,
    ``embed``); the stage hooks are traced into the compiled graph because they are registered before it.
    """
    model = model.to(setup.device)
    if setup.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if setup.compile:
        model.compile(backend=setup.compile_backend)
    return model


def to_device(images: Tensor, labels: Tensor, setup: DeviceSetup) -> tuple[Tensor, Tensor]:
    """Copy a batch to the device (non-blocking from pinned memory) in the model's memory format."""
    non_blocking = setup.pin_memory
    images = images.to(setup.device, non_blocking=non_blocking)
    if setup.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(setup.device, non_blocking=non_blocking)


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """``model.eval()`` and no autograd for the block, restoring the previous training flag after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)
