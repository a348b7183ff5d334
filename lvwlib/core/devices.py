"""Where tensors live and in which precision the forward passes run.

One small object, :class:`Runtime`, carries the resolved device and the
autocast mode from the config (``RunConfig.device``, ``RunConfig.amp``) into
every training loop, push, Grad-CAM and evaluation. Cached features and maps
stay on the CPU; only the batches move to the device (:func:`to_device`).

On the CPU with ``amp: none`` nothing changes: the same operations run in the
same order, so the results are bit for bit those of a run without a runtime.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

AMP_MODES = ("none", "bf16", "fp16")


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch understands it.

    Raises a clear error when CUDA is asked for on a machine without it.
    """
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use device: auto or cpu")
    return device


@dataclass(frozen=True)
class Runtime:
    """Resolved device and mixed-precision mode of a run.

    Args:
        device: where models and batches live.
        amp: ``none`` (float32), ``bf16`` or ``fp16`` autocast of forward passes;
            used on CUDA only (on the CPU it would change results and gain little).
    """

    device: torch.device = torch.device("cpu")
    amp: str = "none"

    def __post_init__(self) -> None:
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")

    @property
    def amp_active(self) -> bool:
        return self.amp != "none" and self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for a forward pass (a no-op without amp or off CUDA)."""
        if not self.amp_active:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 needs loss scaling against gradient underflow; bf16 and float32 do not."""
        if self.amp_active and self.amp == "fp16":
            return torch.amp.GradScaler(self.device.type)
        return None


CPU = Runtime()


def runtime_from(device: str = "auto", amp: str = "none") -> Runtime:
    """A :class:`Runtime` from the config strings (``RunConfig.device``, ``RunConfig.amp``)."""
    return Runtime(resolve_device(device), amp)


def model_runtime(module: torch.nn.Module, runtime: Runtime | None = None) -> Runtime:
    """``runtime`` if given, else float32 on the device ``module``'s parameters live on."""
    if runtime is not None:
        return runtime
    first = next(iter(module.parameters()), None)
    return Runtime(first.device) if first is not None else CPU


def to_device(tensor: torch.Tensor | None, runtime: Runtime) -> torch.Tensor | None:
    """Move a batch tensor to the run's device (float16 caches become float32 first)."""
    if tensor is None:
        return None
    if tensor.is_floating_point():
        tensor = tensor.float()
    return tensor.to(runtime.device, non_blocking=True)


def backward_step(
    loss: torch.Tensor, optimiser: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> None:
    """zero_grad, backward and step, through the fp16 gradient scaler when there is one."""
    optimiser.zero_grad()
    if scaler is None:
        loss.backward()
        optimiser.step()
        return
    scaler.scale(loss).backward()
    scaler.step(optimiser)
    scaler.update()


@contextlib.contextmanager
def evaluation(model: torch.nn.Module, runtime: Runtime) -> Iterator[torch.nn.Module]:
    """No-grad, eval-mode forward passes under the run's autocast."""
    model.eval()
    with torch.no_grad(), runtime.autocast():
        yield model
