"""Triton kernel for :mod:`kernels.population_forward`: a population of linear layers read in place
from flat weight vectors, fused with bias and activation."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

ACT_CODES = {"identity": 0, "relu": 1, "tanh": 2, "sigmoid": 3, "gelu": 4, "leaky_relu": 5, "silu": 6}


@triton.jit
def _pop_linear_kernel(h_ptr, flat_ptr, out_ptr, B, IN, OUT, n_params, w_off, b_off, h_model_stride,
                       ACT: tl.constexpr, ACC: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    # out[p, b, o] = act(sum_i h[p, b, i] * W_p[o, i] + bias_p[o]); W_p[o, i] = flat[p, w_off + o * IN + i]
    p = tl.program_id(0).to(tl.int64)
    rm = tl.program_id(1) * BM + tl.arange(0, BM)
    rn = tl.program_id(2) * BN + tl.arange(0, BN)
    rk = tl.arange(0, BK)
    mask_m = rm < B
    mask_n = rn < OUT
    h_base = h_ptr + p * h_model_stride
    w_base = flat_ptr + p * n_params + w_off
    acc = tl.zeros([BM, BN], dtype=ACC)
    for k0 in range(0, IN, BK):
        kk = k0 + rk
        mask_k = kk < IN
        a = tl.load(h_base + rm[:, None] * IN + kk[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        w = tl.load(w_base + rn[None, :] * IN + kk[:, None], mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc += tl.dot(a.to(ACC), w.to(ACC), input_precision="ieee", out_dtype=ACC)
    bias = tl.load(flat_ptr + p * n_params + b_off + rn, mask=mask_n, other=0.0).to(ACC)
    y = acc + bias[None, :]
    if ACT == 1:
        y = tl.maximum(y, 0.0)
    elif ACT == 2:
        y = 2.0 / (1.0 + tl.exp(-2.0 * y)) - 1.0
    elif ACT == 3:
        y = 1.0 / (1.0 + tl.exp(-y))
    elif ACT == 4:
        y = 0.5 * y * (1.0 + tl.math.erf(y * 0.7071067811865476))
    elif ACT == 5:
        y = tl.where(y > 0.0, y, 0.01 * y)
    elif ACT == 6:
        y = y / (1.0 + tl.exp(-y))
    tl.store(out_ptr + p * B * OUT + rm[:, None] * OUT + rn[None, :], y.to(out_ptr.dtype.element_ty),
             mask=mask_m[:, None] & mask_n[None, :])


def mlp_forward(flat: torch.Tensor, x: torch.Tensor, dims: list[int], offsets: list[int], act: str) -> torch.Tensor:
    """Logits ``[P, B, dims[-1]]`` (accumulation dtype) of P MLPs; flat ``[P, n_params]`` contiguous,
    x ``[B, dims[0]]`` shared by every model; ``offsets[2l], offsets[2l+1]``: weight and bias offsets."""
    P, n_params = flat.shape
    B = x.shape[0]
    acc_t = torch.float64 if flat.dtype == torch.float64 else torch.float32
    acc = tl.float64 if acc_t == torch.float64 else tl.float32
    h = x.to(acc_t).contiguous()
    h_stride = 0
    n_layers = len(dims) - 1
    for layer in range(n_layers):
        IN, OUT = dims[layer], dims[layer + 1]
        out = torch.empty(P, B, OUT, dtype=acc_t, device=flat.device)
        code = ACT_CODES[act] if layer < n_layers - 1 else 0
        BM = 16 if B <= 16 else 32
        BN = 16 if OUT <= 16 else 32
        grid = (P, triton.cdiv(B, BM), triton.cdiv(OUT, BN))
        _pop_linear_kernel[grid](h, flat, out, B, IN, OUT, n_params, offsets[2 * layer], offsets[2 * layer + 1],
                                 h_stride, ACT=code, ACC=acc, BM=BM, BN=BN, BK=32)
        h = out
        h_stride = B * OUT
    return h
