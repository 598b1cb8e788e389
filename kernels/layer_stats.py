"""``layer_stats``: StatNN features (Unterthiner et al. 2020) per model and per parameter tensor.

For every model ``p`` and every entry ``e`` of the layout (weights and biases separately, in layout
order) the output holds 7 statistics of the values ``v = flat[p, offset_e : offset_e + n_e]``, in the
order of :data:`STAT_NAMES`:

``mean``, ``var`` (population variance, ``Σ (v − mean)² / n``, numpy's default ``ddof=0``),
``q0`` (min), ``q25``, ``q50`` (median), ``q75``, ``q100`` (max).

Quantiles use linear interpolation between order statistics (numpy's default ``"linear"`` method,
``torch.quantile``'s default): position ``q · (n − 1)`` in the sorted values. StatNN concatenates these
features over layers into one vector: ``layer_stats(...).flatten(1)``.

Statistics are computed and returned in float32 (float64 for float64 weights). The Triton kernel
computes mean, variance, min and max (one program per model and entry, two passes); the interior
quantiles come from ``torch.sort`` on both backends.
"""

from __future__ import annotations

import torch

from kernels._dispatch import Backend, resolve_backend
from kernels._validate import acc_dtype, check_tensor
from kernels.blocks import BlockSpec
from kernels.errors import LayoutMismatchError
from kernels.layout import ParamLayout

__all__ = ["layer_stats", "layer_stats_reference", "STAT_NAMES"]

STAT_NAMES: tuple[str, ...] = ("mean", "var", "q0", "q25", "q50", "q75", "q100")
_QUANTILES = (0.25, 0.5, 0.75)


def _quantiles(v: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """``[P, len(qs)]`` linear-interpolation quantiles of the rows of ``v [P, n]``."""
    n = v.shape[1]
    srt = torch.sort(v, dim=1).values
    cols = []
    for q in qs:
        pos = q * (n - 1)
        lo = int(pos // 1)
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        cols.append(srt[:, lo] + (srt[:, hi] - srt[:, lo]) * frac)
    return torch.stack(cols, dim=1)


def layer_stats_reference(flat: torch.Tensor, offsets: list[int], sizes: list[int]) -> torch.Tensor:
    """Reference: flat ``[P, n_params]`` → ``[P, n_entries, 7]`` in :data:`STAT_NAMES` order."""
    acc = acc_dtype(flat.dtype)
    out = torch.empty(flat.shape[0], len(sizes), len(STAT_NAMES), dtype=acc, device=flat.device)
    for e, (off, size) in enumerate(zip(offsets, sizes)):
        v = flat[:, off:off + size].to(acc)
        out[:, e, 0] = v.mean(1)
        out[:, e, 1] = v.var(1, unbiased=False)
        out[:, e, 2:6] = _quantiles(v, (0.0,) + _QUANTILES)
        out[:, e, 6] = v.amax(1)
    return out


@torch.library.custom_op("weightzoo_kernels::layer_stats", mutates_args=())
def _stats_op(flat: torch.Tensor, offsets: list[int], sizes: list[int], backend: str) -> torch.Tensor:
    if backend != "triton":
        return layer_stats_reference(flat, offsets, sizes)
    from kernels import tl_stats

    acc = acc_dtype(flat.dtype)
    flat = flat.contiguous()
    out = torch.empty(flat.shape[0], len(sizes), len(STAT_NAMES), dtype=acc, device=flat.device)
    tl_stats.moments(flat, out, offsets, sizes)
    for e, (off, size) in enumerate(zip(offsets, sizes)):
        out[:, e, 3:6] = _quantiles(flat[:, off:off + size].to(acc), _QUANTILES)
    return out


@_stats_op.register_fake
def _(flat, offsets, sizes, backend):
    return flat.new_empty(flat.shape[0], len(sizes), len(STAT_NAMES), dtype=acc_dtype(flat.dtype))


def layer_stats(flat: torch.Tensor, layout: ParamLayout | BlockSpec, *, backend: Backend = "auto") -> torch.Tensor:
    """StatNN statistics of every parameter tensor (or block) of every model.

    Args:
        flat: ``[P, n_params]`` (or ``[n_params]``, treated as P=1) flat weight vectors.
        layout: the ``ParamLayout`` (one entry per weight / bias tensor) or any :class:`BlockSpec`.
        backend: ``"auto"`` | ``"torch"`` | ``"triton"``.

    Returns:
        ``[P, n_entries, 7]`` float32 (float64 for float64 input), statistics in :data:`STAT_NAMES` order
        (mean, var, q0, q25, q50, q75, q100). Not differentiable.
    """
    check_tensor(flat, "flat", ndim=(1, 2))
    squeeze = flat.dim() == 1
    flat2 = flat.unsqueeze(0) if squeeze else flat
    if isinstance(layout, ParamLayout):
        offsets, sizes, n = [e.offset for e in layout], [e.numel for e in layout], layout.n_params
    elif isinstance(layout, BlockSpec):
        offsets, sizes, n = list(layout.offsets), list(layout.sizes), layout.numel
    else:
        raise TypeError(f"layout must be a ParamLayout or BlockSpec, got {type(layout).__name__}")
    if flat2.shape[1] != n:
        raise LayoutMismatchError(f"flat has {flat2.shape[1]} parameters per model but the layout covers {n}")
    chosen = resolve_backend(backend, flat2, op="layer_stats")
    with torch.no_grad():
        out = _stats_op(flat2, offsets, sizes, chosen)
    return out[0] if squeeze else out
