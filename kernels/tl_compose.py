"""Triton kernels for :mod:`kernels.compose` (imported only when the Triton backend runs)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.blocks import BlockSpec


@triton.jit
def _compose_fwd_kernel(base_ptr, stack_ptr, coef_ptr, out_ptr, chunk_block_ptr, chunk_start_ptr, chunk_end_ptr,
                        B, T, N, NB,
                        HAS_BASE: tl.constexpr, ACC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr):
    # program (chunk, b-tile): out[b, chunk] = base[chunk] + sum_t coef[b, t, block] * stack[t, chunk]
    cid = tl.program_id(0)
    btile = tl.program_id(1)
    blk = tl.load(chunk_block_ptr + cid).to(tl.int64)
    start = tl.load(chunk_start_ptr + cid)
    end = tl.load(chunk_end_ptr + cid)
    offs = start + tl.arange(0, BLOCK_N).to(tl.int64)
    mask_n = offs < end
    rb = (btile * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    mask_b = rb < B
    acc = tl.zeros([BLOCK_B, BLOCK_N], dtype=ACC)
    if HAS_BASE:
        base = tl.load(base_ptr + offs, mask=mask_n, other=0.0).to(ACC)
        acc += base[None, :]
    x_ptrs = stack_ptr + offs
    c_ptrs = coef_ptr + rb * (T * NB) + blk
    for t in range(T):
        x = tl.load(x_ptrs, mask=mask_n, other=0.0).to(ACC)
        c = tl.load(c_ptrs, mask=mask_b, other=0.0).to(ACC)
        acc += c[:, None] * x[None, :]
        x_ptrs += N
        c_ptrs += NB
    tl.store(out_ptr + rb[:, None] * N + offs[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=mask_b[:, None] & mask_n[None, :])


@triton.jit
def _compose_grad_coef_kernel(grad_ptr, stack_ptr, partial_ptr, chunk_start_ptr, chunk_end_ptr,
                              B, T, N, C,
                              ACC: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr):
    # partial[b, t, chunk] = sum_{i in chunk} grad[b, i] * stack[t, i]
    cid = tl.program_id(0)
    btile = tl.program_id(1)
    start = tl.load(chunk_start_ptr + cid)
    end = tl.load(chunk_end_ptr + cid)
    offs = start + tl.arange(0, BLOCK_N).to(tl.int64)
    mask_n = offs < end
    rb = (btile * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    mask_b = rb < B
    g = tl.load(grad_ptr + rb[:, None] * N + offs[None, :], mask=mask_b[:, None] & mask_n[None, :],
                other=0.0).to(ACC)
    x_ptrs = stack_ptr + offs
    p_ptrs = partial_ptr + rb * (T * C) + cid
    for t in range(T):
        x = tl.load(x_ptrs, mask=mask_n, other=0.0).to(ACC)
        p = tl.sum(g * x[None, :], axis=1)
        tl.store(p_ptrs, p, mask=mask_b)
        x_ptrs += N
        p_ptrs += C


def _tiles(rows: int) -> tuple[int, int]:
    block_b = min(triton.next_power_of_2(max(rows, 1)), 16)
    block_n = max(256, 4096 // block_b)
    return block_b, block_n


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def compose_forward(base: torch.Tensor | None, stack: torch.Tensor, coeffs: torch.Tensor,
                    spec: BlockSpec, out_dtype: torch.dtype) -> torch.Tensor:
    """``[B, N]`` = base ``[N]`` (or 0) + Σ_t coeffs ``[B, T, nb]`` · stack ``[T, N]`` (contiguous inputs)."""
    B, T, NB = coeffs.shape
    N = stack.shape[1]
    out = torch.empty(B, N, dtype=out_dtype, device=stack.device)
    if B == 0 or N == 0:
        return out
    block_b, block_n = _tiles(B)
    cblock, cstart, cend = spec.chunk_table(block_n, stack.device)
    grid = (cblock.numel(), triton.cdiv(B, block_b))
    _compose_fwd_kernel[grid](base if base is not None else stack, stack, coeffs, out, cblock, cstart, cend,
                              B, T, N, NB, HAS_BASE=base is not None, ACC=_acc(coeffs.dtype),
                              BLOCK_B=block_b, BLOCK_N=block_n)
    return out


def compose_grad_coeffs(grad: torch.Tensor, stack: torch.Tensor, spec: BlockSpec,
                        coef_dtype: torch.dtype) -> torch.Tensor:
    """``[B, T, nb]``: per-block dot products of grad ``[B, N]`` with stack ``[T, N]``."""
    B, N = grad.shape
    T = stack.shape[0]
    block_b, block_n = _tiles(B)
    cblock, cstart, cend = spec.chunk_table(block_n, stack.device)
    C = cblock.numel()
    partial = torch.empty(B, T, C, dtype=coef_dtype, device=stack.device)
    grid = (C, triton.cdiv(B, block_b))
    _compose_grad_coef_kernel[grid](grad, stack, partial, cstart, cend, B, T, N, C, ACC=_acc(coef_dtype),
                                    BLOCK_B=block_b, BLOCK_N=block_n)
    out = torch.zeros(B, T, spec.n_blocks, dtype=coef_dtype, device=stack.device)
    return out.index_add_(2, cblock.long(), partial)
