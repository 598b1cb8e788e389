"""Backend selection shared by every op: ``"auto"`` | ``"torch"`` | ``"triton"``.

* ``"torch"``: the pure-PyTorch reference (works everywhere).
* ``"triton"``: the Triton kernel. Needs Triton importable and either CUDA tensors or Triton's CPU
  interpreter (``TRITON_INTERPRET=1`` set before Triton is first imported), which is how the tests run
  the kernels on a machine without a GPU.
* ``"auto"``: Triton when the tensors live on a CUDA device and Triton is importable, else PyTorch.

Triton is imported lazily, so ``import kernels`` works where Triton is not installed.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Literal

import torch

Backend = Literal["auto", "torch", "triton"]
BACKENDS = ("auto", "torch", "triton")


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    """True when ``import triton`` succeeds (checked once; a failed import is remembered)."""
    if importlib.util.find_spec("triton") is None:
        return False
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # a broken install counts as absent
        return False
    return True


def interpreter_enabled() -> bool:
    """True when Triton's CPU interpreter is selected (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def common_device(*tensors: torch.Tensor | None, what: str = "inputs") -> torch.device:
    """The single device of ``tensors`` (``None`` entries are skipped); raise if they differ."""
    devices = {t.device for t in tensors if t is not None}
    if len(devices) > 1:
        raise ValueError(f"{what} are on different devices: {sorted(str(d) for d in devices)}")
    if not devices:
        return torch.device("cpu")
    return devices.pop()


def resolve_backend(backend: str, *tensors: torch.Tensor | None, op: str = "op") -> str:
    """Return ``"torch"`` or ``"triton"`` for ``backend`` and the device of ``tensors``.

    Raises ``ValueError`` for an unknown backend name or tensors on several devices, and
    ``RuntimeError`` when ``backend="triton"`` cannot run (no Triton, or CPU tensors without the
    interpreter).
    """
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    device = common_device(*tensors, what=f"{op}: tensors")
    if backend == "torch":
        return "torch"
    on_cuda = device.type == "cuda"
    if backend == "auto":
        return "triton" if on_cuda and triton_available() else "torch"
    if not triton_available():
        raise RuntimeError(f"{op}: backend='triton' requested but triton cannot be imported")
    if not on_cuda and not interpreter_enabled():
        raise RuntimeError(
            f"{op}: backend='triton' on {device.type} tensors needs a CUDA device or Triton's interpreter "
            "(set TRITON_INTERPRET=1 before triton is imported)"
        )
    return "triton"
