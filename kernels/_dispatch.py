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
from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch

from kernels.errors import UnknownNameError
from kernels.registry import Registry

Backend = Literal["auto", "torch", "triton"]


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


@dataclass(frozen=True)
class KernelBackend:
    """A way to run the ops: ``problem(device)`` says why it cannot run tensors on ``device`` (None: it can),
    ``preferred_on`` the device types ``"auto"`` picks it for."""

    problem: Callable[[torch.device], Optional[str]]
    preferred_on: tuple[str, ...] = ()


def _triton_problem(device: torch.device) -> Optional[str]:
    if not triton_available():
        return "backend='triton' requested but triton cannot be imported"
    if device.type != "cuda" and not interpreter_enabled():
        return (f"backend='triton' on {device.type} tensors needs a CUDA device or Triton's interpreter "
                "(set TRITON_INTERPRET=1 before triton is imported)")
    return None


_KERNEL_BACKENDS: Registry[KernelBackend] = Registry("kernel backend")
register_kernel_backend = _KERNEL_BACKENDS.register
get_kernel_backend = _KERNEL_BACKENDS.get
kernel_backend_names = _KERNEL_BACKENDS.names
register_kernel_backend("torch")(KernelBackend(lambda device: None))
register_kernel_backend("triton")(KernelBackend(_triton_problem, preferred_on=("cuda",)))


def resolve_backend(backend: str, *tensors: torch.Tensor | None, op: str = "op") -> str:
    """Return the backend that runs ``op`` for ``backend`` and the device of ``tensors``: the named one, or
    for ``"auto"`` the first registered backend preferred on that device that can run, else ``"torch"``.

    Raises ``kernels.UnknownNameError`` (a ``KeyError``) for an unknown backend name, ``ValueError`` for
    tensors on several devices, and ``RuntimeError`` when the named backend cannot run here (no Triton,
    or CPU tensors without the interpreter).
    """
    device = common_device(*tensors, what=f"{op}: tensors")
    if backend == "auto":
        for name in kernel_backend_names():
            entry = get_kernel_backend(name)
            if device.type in entry.preferred_on and entry.problem(device) is None:
                return name
        return "torch"
    try:
        entry = get_kernel_backend(backend)
    except UnknownNameError:
        raise UnknownNameError(f"{op}: unknown backend {backend!r}; choose from "
                               f"{['auto', *kernel_backend_names()]}") from None
    problem = entry.problem(device)
    if problem is not None:
        raise RuntimeError(f"{op}: {problem}")
    return backend
