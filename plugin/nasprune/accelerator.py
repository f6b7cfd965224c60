"""Where models run and at what precision: ``--device``, ``--precision``, ``--tf32``, ``--compile``.

Every path that trains or evaluates asks this module for its device (:func:`default_device`) and
its precision (:func:`default_precision`) unless its caller names them. The command line sets both
for the whole command with :func:`use_settings`, which also exports them to the environment so
that the processes a command starts (standard-NAS trials, Ray workers of ``search --workers``)
run the same way. Children inherit the device *type* only: each is given its own GPU
(``CUDA_VISIBLE_DEVICES``), where ``cuda`` is the one it sees.

Mixed precision is PyTorch's automatic mixed precision: :meth:`Precision.autocast` around the
forward passes and losses, and for ``fp16`` a gradient scaler (:meth:`Precision.grad_scaler`),
since fp16 gradients underflow without one. The weights and the optimizer stay in fp32.
"""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from typing import Iterator

import torch

from nasprune.errors import NaspruneError

#: ``--precision`` names -> the autocast dtype (None: plain fp32, no autocast).
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Environment variables through which child processes inherit the command's settings.
DEVICE_ENV = "NASPRUNE_DEVICE"
PRECISION_ENV = "NASPRUNE_PRECISION"
COMPILE_ENV = "NASPRUNE_COMPILE"

_chosen_device: torch.device | None = None
_chosen_precision: str | None = None
_chosen_compile: bool | None = None


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:1`` (or None: :func:`default_device`) as a device this machine has.

    :raises NaspruneError: for a name torch does not know, CUDA without a GPU, or a GPU index beyond
        the GPUs there are
    """
    if spec is None:
        return default_device()
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise NaspruneError(f"--device must be cpu, cuda or cuda:N, got {spec!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise NaspruneError(f"--device {spec}: this machine has no CUDA GPU (torch {torch.__version__})")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise NaspruneError(f"--device {spec}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type != "cpu" and device.type != "mps":
        raise NaspruneError(f"--device must be cpu, cuda or cuda:N, got {spec!r}")
    return device


def default_device() -> torch.device:
    """The device chosen by :func:`use_settings` (or inherited through ``NASPRUNE_DEVICE``); else
    the GPU when there is one, else the CPU."""
    if _chosen_device is not None:
        return _chosen_device
    inherited = os.environ.get(DEVICE_ENV)
    if inherited:
        return resolve_device(inherited)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_precision() -> str:
    """The precision chosen by :func:`use_settings` (or inherited through ``NASPRUNE_PRECISION``); else fp32."""
    if _chosen_precision is not None:
        return _chosen_precision
    return os.environ.get(PRECISION_ENV) or "fp32"


def compile_enabled() -> bool:
    """Whether ``--compile`` asked for :func:`maybe_compile` (or a parent process did)."""
    if _chosen_compile is not None:
        return _chosen_compile
    return os.environ.get(COMPILE_ENV) == "1"


@dataclass(frozen=True)
class Precision:
    """A ``--precision`` on one device type: the autocast context and the gradient scaler of a run."""

    name: str = "fp32"
    device_type: str = "cpu"

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise NaspruneError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.name!r}")

    @classmethod
    def on(cls, name: str | None, device: torch.device | str) -> "Precision":
        """``name`` (None: :func:`default_precision`) on ``device``, checked to be supported there.

        :raises NaspruneError: an unknown name, or a precision the device or this torch build lacks
        """
        precision = cls(name or default_precision(), torch.device(device).type)
        precision.check_supported()
        return precision

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype autocast computes matrix products in; None for fp32."""
        return PRECISIONS[self.name]

    @property
    def scales_gradients(self) -> bool:
        """fp16 gradients underflow to zero unless the loss is scaled up first; bf16 has fp32's range."""
        return self.name == "fp16"

    def check_supported(self) -> None:
        """Refuse with one clear message a precision this device or torch build cannot autocast to."""
        if self.dtype is None:
            return
        if self.device_type == "cuda" and self.dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise NaspruneError(f"--precision bf16: {torch.cuda.get_device_name()} has no bf16 support; use fp16 or fp32")
        try:
            with torch.autocast(self.device_type, dtype=self.dtype):
                pass
        except (RuntimeError, ValueError, AssertionError) as err:
            raise NaspruneError(
                f"--precision {self.name} is not supported on {self.device_type} by torch {torch.__version__} "
                f"({err}); use fp32" + (" or bf16" if self.name == "fp16" else "")
            ) from None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context to run forward passes and losses in (backward passes belong outside it)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler for fp16; disabled (a pass-through) for the other precisions."""
        return torch.amp.GradScaler(self.device_type, enabled=self.scales_gradients)


def set_tf32(enabled: bool) -> None:
    """Let fp32 matrix products on Ampere and newer GPUs use TF32 tensor cores (10-bit mantissa
    inputs, fp32 accumulation): several times faster, and well within what fine-tuning tolerates.
    No effect on the CPU."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        # torch >= 2.9: the legacy switches (allow_tf32, set_float32_matmul_precision) raise once
        # mixed with this one, so only this one is set.
        matmul.fp32_precision = "tf32" if enabled else "ieee"
    else:
        matmul.allow_tf32 = enabled


def _tf32_state() -> object:
    matmul = torch.backends.cuda.matmul
    return matmul.fp32_precision if hasattr(matmul, "fp32_precision") else matmul.allow_tf32


def _restore_tf32(state: object) -> None:
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        matmul.fp32_precision = state
    else:
        matmul.allow_tf32 = state


@contextlib.contextmanager
def use_settings(device: str | torch.device | None = None, precision: str | None = None,
                 tf32: bool | None = None, compile: bool | None = None) -> Iterator[torch.device]:
    """Run the block with ``device``, ``precision`` and ``compile`` as the process defaults and
    TF32 as ``tf32`` says (None: each unchanged); everything is put back afterwards. Yields the device.

    :raises NaspruneError: for a device this machine lacks or an unsupported precision
    """
    global _chosen_device, _chosen_precision, _chosen_compile
    resolved = resolve_device(device)
    if precision is not None:
        Precision.on(precision, resolved)  # refuse before any model is loaded
    names = (DEVICE_ENV, PRECISION_ENV, COMPILE_ENV)
    saved_globals = (_chosen_device, _chosen_precision, _chosen_compile)
    saved_env = {name: os.environ.get(name) for name in names}
    saved_tf32 = _tf32_state()
    try:
        if device is not None:
            _chosen_device = resolved
            os.environ[DEVICE_ENV] = resolved.type  # a child's own GPU is its "cuda"
        if precision is not None:
            _chosen_precision = precision
            os.environ[PRECISION_ENV] = precision
        if compile is not None:
            _chosen_compile = compile
            os.environ[COMPILE_ENV] = "1" if compile else "0"
        if tf32 is not None:
            set_tf32(tf32)
        yield resolved
    finally:
        _chosen_device, _chosen_precision, _chosen_compile = saved_globals
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if tf32 is not None:
            _restore_tf32(saved_tf32)


def maybe_compile(model: torch.nn.Module, enabled: bool | None = None) -> torch.nn.Module:
    """``torch.compile(model)`` when ``enabled`` (None: :func:`compile_enabled`), else ``model``.

    Worth it for a model of fixed weights run many times (an exported or reference model, the full
    model's latency). Not for the super-network: every sub-network has other weight shapes, and
    each new shape would compile again; nor for a model run only a few times, as compiling takes
    longer than it saves. The compiled module shares the model's parameters.
    """
    if enabled is None:
        enabled = compile_enabled()
    return torch.compile(model) if enabled else model


def describe_device(device: torch.device | str) -> dict[str, str]:
    """``device`` and, for a GPU, its model name: what results record of where they were measured."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {"device": str(device), "device_name": name}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (timing); nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
