"""Triton kernels for :mod:`kernels.merge` (TIES and DARE).

Non-finite entries follow :mod:`kernels.merge`'s rule: ``|x| < inf`` is false for NaN and ±inf, so
such an entry is never kept by TIES (it counts as 0) and makes its own output NaN; DARE never drops
it. The PyTorch reference does the same, element for element.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.blocks import BlockSpec


@triton.jit
def _hash32(x):
    # "lowbias32" integer finaliser on uint32 (wrapping multiplies)
    x = x ^ (x >> 16)
    x = x * 0x7FEB352D
    x = x ^ (x >> 15)
    x = x * 0x846CA68B
    x = x ^ (x >> 16)
    return x


@triton.jit
def _ties_kernel(stack_ptr, thr_ptr, w_ptr, base_ptr, out_ptr, chunk_block_ptr, chunk_start_ptr, chunk_end_ptr,
                 T, N, NB, scale,
                 HAS_BASE: tl.constexpr, SIGN_COUNT: tl.constexpr, MEAN: tl.constexpr,
                 ACC: tl.constexpr, BLOCK_N: tl.constexpr):
    # MEAN: 0 disjoint (divide by the count of agreeing tasks), 1 weighted (by their weights), 2 sum
    cid = tl.program_id(0)
    blk = tl.load(chunk_block_ptr + cid).to(tl.int64)
    start = tl.load(chunk_start_ptr + cid)
    end = tl.load(chunk_end_ptr + cid)
    offs = start + tl.arange(0, BLOCK_N).to(tl.int64)
    mask = offs < end
    # pass 1: elect the sign from the trimmed (weighted) sum or from the count of signs
    s = tl.zeros([BLOCK_N], dtype=ACC)
    damaged = tl.zeros([BLOCK_N], dtype=tl.int32)
    x_ptrs = stack_ptr + offs
    thr_p = thr_ptr + blk
    w_p = w_ptr
    for t in range(T):
        x = tl.load(x_ptrs, mask=mask, other=0.0).to(ACC)
        finite = tl.abs(x) < float("inf")
        damaged = damaged | tl.where(finite, 0, 1)
        x = tl.where(finite, x, 0.0)
        thr = tl.load(thr_p).to(ACC)
        w = tl.load(w_p).to(ACC)
        keep = (tl.abs(x) >= thr) & (x != 0.0)
        if SIGN_COUNT:
            s += tl.where(keep, tl.where(x > 0.0, 1.0, -1.0), 0.0).to(ACC)
        else:
            s += tl.where(keep, w * x, 0.0)
        x_ptrs += N
        thr_p += NB
        w_p += 1
    gamma = tl.where(s > 0.0, 1.0, tl.where(s < 0.0, -1.0, 0.0)).to(ACC)
    # pass 2: disjoint mean over the entries that were kept and agree with the elected sign
    num = tl.zeros([BLOCK_N], dtype=ACC)
    den = tl.zeros([BLOCK_N], dtype=ACC)
    x_ptrs = stack_ptr + offs
    thr_p = thr_ptr + blk
    w_p = w_ptr
    for t in range(T):
        x = tl.load(x_ptrs, mask=mask, other=0.0).to(ACC)
        x = tl.where(tl.abs(x) < float("inf"), x, 0.0)
        thr = tl.load(thr_p).to(ACC)
        w = tl.load(w_p).to(ACC)
        agree = (tl.abs(x) >= thr) & (x * gamma > 0.0)
        num += tl.where(agree, w * x, 0.0)
        if MEAN == 1:
            den += tl.where(agree, w, 0.0)
        else:
            den += tl.where(agree, 1.0, 0.0).to(ACC)
        x_ptrs += N
        thr_p += NB
        w_p += 1
    if MEAN == 2:
        merged = num * scale
    else:
        safe = tl.where(den != 0.0, den, 1.0)
        merged = tl.where(den != 0.0, num / safe, 0.0) * scale
    if HAS_BASE:
        merged += tl.load(base_ptr + offs, mask=mask, other=0.0).to(ACC)
    merged = tl.where(damaged != 0, float("nan"), merged)
    tl.store(out_ptr + offs, merged.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dare_kernel(stack_ptr, key_ptr, out_ptr, N, p, inv_keep, RESCALE: tl.constexpr, PASS_NONFINITE: tl.constexpr,
                 ACC: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    t = tl.program_id(1).to(tl.int64)
    offs = pid.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    mask = offs < N
    key = tl.load(key_ptr + t).to(tl.uint32)
    h = _hash32(offs.to(tl.uint32) ^ key)
    u = (h >> 8).to(tl.float32) * (1.0 / 16777216.0)
    x = tl.load(stack_ptr + t * N + offs, mask=mask, other=0.0).to(ACC)
    keep = u >= p
    if PASS_NONFINITE:
        keep = keep | (tl.abs(x) >= float("inf")) | (x != x)
    y = tl.where(keep, x, 0.0)
    if RESCALE:
        y = y * inv_keep
    tl.store(out_ptr + t * N + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dare_merge_kernel(stack_ptr, key_ptr, w_ptr, base_ptr, out_ptr, T, N, p, inv_keep,
                       HAS_BASE: tl.constexpr, RESCALE: tl.constexpr, ACC: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    mask = offs < N
    acc = tl.zeros([BLOCK_N], dtype=ACC)
    if HAS_BASE:
        acc += tl.load(base_ptr + offs, mask=mask, other=0.0).to(ACC)
    x_ptrs = stack_ptr + offs
    k_p = key_ptr
    w_p = w_ptr
    idx = offs.to(tl.uint32)
    for t in range(T):
        key = tl.load(k_p).to(tl.uint32)
        u = (_hash32(idx ^ key) >> 8).to(tl.float32) * (1.0 / 16777216.0)
        x = tl.load(x_ptrs, mask=mask, other=0.0).to(ACC)
        w = tl.load(w_p).to(ACC)
        keep = (u >= p) | (tl.abs(x) >= float("inf")) | (x != x)
        y = tl.where(keep, x, 0.0) * w
        if RESCALE:
            y = y * inv_keep
        acc += y
        x_ptrs += N
        k_p += 1
        w_p += 1
    tl.store(out_ptr + offs, acc.to(out_ptr.dtype.element_ty), mask=mask)


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


_MEANS = {"disjoint": 0, "weighted": 1, "sum": 2}


def ties(stack: torch.Tensor, thr: torch.Tensor, weights: torch.Tensor, base: torch.Tensor | None, spec: BlockSpec,
         scale: float, sign_count: bool, mean: str) -> torch.Tensor:
    """``[N]`` TIES merge of contiguous stack ``[T, N]`` with per-(task, block) thresholds ``[T, nb]``."""
    T, N = stack.shape
    out = torch.empty(N, dtype=stack.dtype, device=stack.device)
    block_n = 1024
    cblock, cstart, cend = spec.chunk_table(block_n, stack.device)
    _ties_kernel[(cblock.numel(),)](stack, thr, weights, base if base is not None else stack, out, cblock, cstart,
                                    cend, T, N, spec.n_blocks, float(scale), HAS_BASE=base is not None,
                                    SIGN_COUNT=sign_count, MEAN=_MEANS[mean], ACC=_acc(stack.dtype),
                                    BLOCK_N=block_n)
    return out


def dare(stack: torch.Tensor, keys: torch.Tensor, p: float, rescale: bool, pass_nonfinite: bool = True) -> torch.Tensor:
    """``[T, N]`` DARE drop-and-rescale of contiguous stack ``[T, N]`` with per-task keys ``[T]`` int64
    (non-finite entries are never dropped unless ``pass_nonfinite=False``)."""
    T, N = stack.shape
    out = torch.empty_like(stack)
    block_n = 1024
    _dare_kernel[(triton.cdiv(N, block_n), T)](stack, keys, out, N, float(p), 1.0 / (1.0 - p), RESCALE=rescale,
                                               PASS_NONFINITE=pass_nonfinite, ACC=_acc(stack.dtype), BLOCK_N=block_n)
    return out


def dare_merge(stack: torch.Tensor, keys: torch.Tensor, weights: torch.Tensor, base: torch.Tensor | None, p: float,
               rescale: bool) -> torch.Tensor:
    """``[N]`` = base + Σ_t w_t · DARE(τ_t), fused (no ``[T, N]`` temporary)."""
    T, N = stack.shape
    out = torch.empty(N, dtype=stack.dtype, device=stack.device)
    block_n = 1024
    _dare_merge_kernel[(triton.cdiv(N, block_n),)](stack, keys, weights, base if base is not None else stack, out, T,
                                                   N, float(p), 1.0 / (1.0 - p), HAS_BASE=base is not None,
                                                   RESCALE=rescale, ACC=_acc(stack.dtype), BLOCK_N=block_n)
    return out
