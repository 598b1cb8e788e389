"""Triton kernel for :mod:`kernels.layer_stats`: per-model moments and extremes of one flat slice."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _moments_kernel(flat_ptr, out_ptr, n_params, off, size, n_entries, entry, n_stats,
                    ACC: tl.constexpr, BLOCK: tl.constexpr):
    # one program per model: mean (pass 1), centred variance (pass 2), min and max of flat[p, off:off+size]
    p = tl.program_id(0).to(tl.int64)
    base = flat_ptr + p * n_params + off
    r = tl.arange(0, BLOCK)
    s = tl.zeros([BLOCK], dtype=ACC)
    lo = tl.full([BLOCK], float("inf"), ACC)
    hi = tl.full([BLOCK], float("-inf"), ACC)
    for start in range(0, size, BLOCK):
        m = start + r < size
        x = tl.load(base + start + r, mask=m, other=0.0).to(ACC)
        s += x
        lo = tl.minimum(lo, tl.where(m, x, float("inf")))
        hi = tl.maximum(hi, tl.where(m, x, float("-inf")))
    mean = tl.sum(s, axis=0) / size
    v = tl.zeros([BLOCK], dtype=ACC)
    for start in range(0, size, BLOCK):
        m = start + r < size
        x = tl.load(base + start + r, mask=m, other=0.0).to(ACC)
        d = tl.where(m, x - mean, 0.0)
        v += d * d
    var = tl.sum(v, axis=0) / size
    o = out_ptr + (p * n_entries + entry) * n_stats
    tl.store(o + 0, mean)
    tl.store(o + 1, var)
    tl.store(o + 2, tl.min(lo, axis=0))
    tl.store(o + 6, tl.max(hi, axis=0))


def moments(flat: torch.Tensor, out: torch.Tensor, offsets: list[int], sizes: list[int]) -> None:
    """Fill ``out[:, e, (0, 1, 2, 6)]`` (mean, var, min, max) of every entry; flat ``[P, n_params]``."""
    P, n_params = flat.shape
    acc = tl.float64 if out.dtype == torch.float64 else tl.float32
    for e, (off, size) in enumerate(zip(offsets, sizes)):
        block = min(4096, triton.next_power_of_2(size))
        _moments_kernel[(P,)](flat, out, n_params, off, size, len(sizes), e, out.shape[2], ACC=acc, BLOCK=block)
