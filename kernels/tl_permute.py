"""Triton kernel for :mod:`kernels.permute`: per-model gathers computed from unit permutations."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _permute_entry_kernel(flat_ptr, perm_ptr, out_ptr, n_params, n_units, off, numel, D1, R, g0, g1, rep1,
                          HAS0: tl.constexpr, HAS1: tl.constexpr, BLOCK: tl.constexpr):
    # entry viewed as [D0, D1, R]; out[p, off + (a, b, c)] = flat[p, off + (perm0[a], perm1[b // rep1] * rep1 + b % rep1, c)]
    p = tl.program_id(0).to(tl.int64)
    j = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    mask = j < numel
    a = j // (D1 * R)
    b = (j // R) % D1
    c = j % R
    prow = perm_ptr + p * n_units
    if HAS0:
        a = tl.load(prow + g0 + a, mask=mask, other=0)
    if HAS1:
        unit = tl.load(prow + g1 + b // rep1, mask=mask, other=0)
        b = unit * rep1 + b % rep1
    src = (a * D1 + b) * R + c
    x = tl.load(flat_ptr + p * n_params + off + src, mask=mask, other=0.0)
    tl.store(out_ptr + p * n_params + off + j, x, mask=mask)


def permute(flat: torch.Tensor, perms: torch.Tensor, table: list[list[int]]) -> torch.Tensor:
    """flat ``[P, n_params]``, concatenated perms ``[P, U]`` int64; ``table`` rows
    ``[offset, numel, D1, R, g0, g1, rep1]`` (``g = -1``: axis not permuted) → ``[P, n_params]``."""
    P, n_params = flat.shape
    out = torch.empty_like(flat)
    block = 1024
    for off, numel, d1, r, g0, g1, rep1 in table:
        grid = (P, triton.cdiv(numel, block))
        _permute_entry_kernel[grid](flat, perms, out, n_params, perms.shape[1], off, numel, d1, r, max(g0, 0),
                                    max(g1, 0), rep1, HAS0=g0 >= 0, HAS1=g1 >= 0, BLOCK=block)
    return out
