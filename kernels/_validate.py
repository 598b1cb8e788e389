"""Input checks run before any kernel launch; each error names the argument and what was expected."""

from __future__ import annotations

from typing import Iterable

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(x: object, name: str, *, ndim: int | Iterable[int] | None = None,
                 float_dtype: bool = True) -> torch.Tensor:
    """Check ``x`` is a tensor with one of the allowed ranks and (optionally) a floating dtype."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            raise ValueError(f"{name} must have {' or '.join(str(a) for a in allowed)} dimensions, "
                             f"got shape {list(x.shape)}")
    if float_dtype and x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor (float16/bfloat16/float32/float64), got {x.dtype}")
    return x


def check_same_dtype(**tensors: torch.Tensor | None) -> torch.dtype:
    """All given tensors share one dtype; return it."""
    seen = {k: v.dtype for k, v in tensors.items() if v is not None}
    if len(set(seen.values())) > 1:
        raise TypeError("dtype mismatch: " + ", ".join(f"{k}={v}" for k, v in seen.items()))
    return next(iter(seen.values()))


def check_same_device(**tensors: torch.Tensor | None) -> torch.device:
    """All given tensors live on one device; return it."""
    seen = {k: v.device for k, v in tensors.items() if v is not None}
    if len(set(seen.values())) > 1:
        raise ValueError("device mismatch: " + ", ".join(f"{k}={v}" for k, v in seen.items()))
    return next(iter(seen.values()))


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 stays float64, everything else accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
