"""TIES merging and DARE, fused over a stack of task vectors ``[T, N]``.

Exact semantics (see ``docs/KERNELS.md`` for how mergekit and PEFT differ):

TIES (Yadav et al. 2023), per task ``t`` and block ``k`` of ``n_k`` elements:

1. *Trim*: ``m = ceil(density · n_k)`` (``density·n_k`` rounded to 6 decimals first); the threshold
   ``θ[t, k]`` is the ``m``-th largest ``|τ_t|`` in the block (``+inf`` when ``m = 0``). Entry ``i`` is kept
   iff ``|τ_t[i]| ≥ θ[t, block(i)]`` and ``τ_t[i] ≠ 0`` (exact ties at the threshold are all kept).
2. *Elect*: ``S[i] = Σ_t w_t · kept_t[i] · τ_t[i]`` (``sign="sum"``) or ``Σ_t kept_t[i] · sign(τ_t[i])``
   (``sign="count"``); ``γ[i] = sign(S[i])`` (``0`` when ``S[i] = 0``).
3. *Disjoint merge*: ``A_t[i] = kept_t[i] ∧ sign(τ_t[i]) = γ[i]``;
   ``mean="disjoint"``: ``τ_m[i] = Σ_t A_t w_t τ_t / max(1, Σ_t A_t)`` (the paper when ``w = 1``);
   ``mean="weighted"``: ``τ_m[i] = Σ_t A_t w_t τ_t / Σ_t A_t w_t`` and 0 where that sum is 0 (mergekit);
   ``mean="sum"``: ``τ_m[i] = Σ_t A_t w_t τ_t`` (no division: the TIES repository's "dis-sum",
   mergekit with ``normalize: false``, e.g. its ``dare_ties``).
4. ``out = base + scale · τ_m`` (``base`` optional).

DARE (Yu et al. 2024): ``DARE(τ_t)[i] = τ_t[i] · [u(seed, t, i) ≥ p] / (1 − p)`` (no division when
``rescale=False``), with ``u`` a counter-based hash uniform in ``[0, 1)`` (24 bits):
``key_t = h((h(seed mod 2³²) + 0x9E3779B9 · (t + 1)) mod 2³²)``, ``u = (h(i XOR key_t) >> 8) / 2²⁴`` where ``h`` is
the "lowbias32" finaliser. The mask depends only on ``(seed, t, i)``, so the PyTorch and Triton paths,
CPU and GPU, and any chunking agree bit for bit.

Non-finite entries (NaN, ±inf) of ``stack`` or ``base``: **the damage stays at its position**, on both
backends alike. An output element is non-finite exactly when an input element it depends on is, and
every other output element equals the result for the same inputs with the non-finite entries of
``stack`` replaced by 0. For TIES that means: a non-finite ``τ_t[i]`` counts as 0 in the trim
thresholds, the sign election and the disjoint merge of every other position, and ``out[i]`` is NaN.
DARE never drops a non-finite entry (it passes through, rescaled), so ``dare(...)[t, i]`` and
``dare_merge(...)[i]`` are non-finite there. Non-finite ``weights`` are refused (``ValueError``): a
weight touches every position.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import torch

from kernels._dispatch import Backend, resolve_backend
from kernels._validate import acc_dtype, check_same_device, check_same_dtype, check_tensor
from kernels.blocks import BlockSpec, as_block_spec, spec_from_sizes
from kernels.layout import ParamLayout

__all__ = ["ties_merge", "ties_thresholds", "ties_reference", "dare", "dare_merge", "dare_reference",
           "dare_merge_reference", "dare_keys"]

_M32 = 0xFFFFFFFF
_WINDOW = 1 << 16


# ---------------------------------------------------------------------------- shared pieces
def _keep_count(density: float, n: int) -> int:
    return min(n, int(math.ceil(round(density * n, 6))))


def _finite_magnitude(x: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """``|x|`` in ``acc`` with non-finite entries counted as 0 (they never take a keep slot)."""
    mag = x.abs().to(acc)
    return torch.where(torch.isfinite(mag), mag, torch.zeros((), dtype=acc, device=mag.device))


def ties_thresholds(stack: torch.Tensor, density: float, spec: BlockSpec) -> torch.Tensor:
    """``[T, n_blocks]`` trim thresholds θ (accumulation dtype): the ``ceil(density·n_k)``-th largest
    magnitude of each task vector in each block, non-finite entries counted as 0; ``+inf`` where
    nothing is kept. Extra memory is one block's magnitudes at a time (``[T, n_k]`` when
    ``T·n_k ≤ 2**24``, else ``[n_k]``)."""
    T = stack.shape[0]
    acc = acc_dtype(stack.dtype)
    thr = torch.empty(T, spec.n_blocks, dtype=acc, device=stack.device)
    for k, (off, size) in enumerate(zip(spec.offsets, spec.sizes)):
        m = _keep_count(density, size)
        if m == 0:
            thr[:, k] = math.inf
            continue
        if T * size <= (1 << 24):
            mag = _finite_magnitude(stack[:, off:off + size], acc)
            thr[:, k] = torch.kthvalue(mag, size - m + 1, dim=1).values
        else:
            for t in range(T):
                thr[t, k] = torch.kthvalue(_finite_magnitude(stack[t, off:off + size], acc), size - m + 1).values
    return thr


def _hash32_py(x: int) -> int:
    x &= _M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    x ^= x >> 16
    return x


def dare_keys(seed: int, n_tasks: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[T]`` int64 per-task RNG keys (values below 2³²) derived from ``seed``."""
    h0 = _hash32_py(int(seed) & _M32)
    return torch.tensor([_hash32_py(h0 + 0x9E3779B9 * (t + 1)) for t in range(n_tasks)], dtype=torch.int64,
                        device=device)


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    # (x * c) mod 2**32 for int64 x < 2**32 without signed overflow: split c into 16-bit halves
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _M32


def _hash32_torch(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def dare_uniform(key: int | torch.Tensor, start: int, end: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[end - start]`` float32 uniforms ``u(key, i)`` for elements ``start .. end-1``."""
    idx = torch.arange(start, end, dtype=torch.int64, device=device)
    h = _hash32_torch(idx ^ key)
    return (h >> 8).to(torch.float32) * (1.0 / 16777216.0)


# ---------------------------------------------------------------------------- references
def ties_reference(stack: torch.Tensor, thr: torch.Tensor, weights: torch.Tensor, base: torch.Tensor | None,
                   spec: BlockSpec, scale: float, sign: str, mean: str) -> torch.Tensor:
    """Reference TIES merge: stack ``[T, N]``, thresholds ``[T, nb]``, weights ``[T]`` → ``[N]``.
    Walks the vector in windows (``[T, window]`` temporaries only). Non-finite entries count as 0 and
    make their position NaN (module docstring)."""
    T, N = stack.shape
    acc = acc_dtype(stack.dtype)
    w = weights.to(acc)[:, None]
    out = torch.empty(N, dtype=stack.dtype, device=stack.device)
    zero = torch.zeros((), dtype=acc, device=stack.device)
    for s, e, k0, k1, sizes in spec.segments(_WINDOW):
        raw = stack[:, s:e].to(acc)
        finite = torch.isfinite(raw)
        x = torch.where(finite, raw, zero)
        th = torch.repeat_interleave(thr[:, k0:k1], torch.tensor(sizes, device=stack.device), dim=1)
        keep = (x.abs() >= th) & (x != 0)
        if sign == "count":
            S = (keep * torch.sign(x)).sum(0)
        else:
            S = (keep * w * x).sum(0)
        gamma = torch.sign(S)
        agree = keep & (x * gamma > 0)
        num = (agree * w * x).sum(0)
        if mean == "sum":
            merged = num
        else:
            den = (agree * w).sum(0) if mean == "weighted" else agree.to(acc).sum(0)
            merged = torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), zero)
        merged = merged * scale
        if base is not None:
            merged = merged + base[s:e].to(acc)
        merged = torch.where(finite.all(0), merged, torch.full((), math.nan, dtype=acc, device=stack.device))
        out[s:e] = merged.to(stack.dtype)
    return out


def _dare_keep(u: torch.Tensor, x: torch.Tensor, p: float, pass_nonfinite: bool) -> torch.Tensor:
    keep = u >= p
    return keep | ~torch.isfinite(x) if pass_nonfinite else keep


def dare_reference(stack: torch.Tensor, keys: torch.Tensor, p: float, rescale: bool,
                   pass_nonfinite: bool = True) -> torch.Tensor:
    """Reference DARE: stack ``[T, N]`` → ``[T, N]`` (windowed; masks from :func:`dare_uniform`).
    Non-finite entries are never dropped unless ``pass_nonfinite=False`` (the backward pass, which
    applies the plain mask to the incoming gradient)."""
    T, N = stack.shape
    acc = acc_dtype(stack.dtype)
    out = torch.empty_like(stack)
    key_list = [int(k) for k in keys.tolist()]
    for s in range(0, N, _WINDOW):
        e = min(s + _WINDOW, N)
        for t in range(T):
            u = dare_uniform(key_list[t], s, e, stack.device)
            x = stack[t, s:e].to(acc)
            y = torch.where(_dare_keep(u, x, p, pass_nonfinite), x, torch.zeros((), dtype=acc, device=stack.device))
            out[t, s:e] = (y * (1.0 / (1.0 - p)) if rescale else y).to(stack.dtype)
    return out


def dare_merge_reference(stack: torch.Tensor, keys: torch.Tensor, weights: torch.Tensor, base: torch.Tensor | None,
                         p: float, rescale: bool) -> torch.Tensor:
    """Reference fused DARE merge: ``[N] = base + Σ_t w_t · DARE(τ_t)`` (windowed, no ``[T, N]``;
    non-finite entries are never dropped)."""
    T, N = stack.shape
    acc = acc_dtype(stack.dtype)
    w = weights.to(acc)
    out = torch.empty(N, dtype=stack.dtype, device=stack.device)
    key_list = [int(k) for k in keys.tolist()]
    for s in range(0, N, _WINDOW):
        e = min(s + _WINDOW, N)
        a = base[s:e].to(acc) if base is not None else torch.zeros(e - s, dtype=acc, device=stack.device)
        for t in range(T):
            u = dare_uniform(key_list[t], s, e, stack.device)
            x = stack[t, s:e].to(acc)
            y = torch.where(_dare_keep(u, x, p, True), x, torch.zeros((), dtype=acc, device=stack.device)) * w[t]
            a = a + (y * (1.0 / (1.0 - p)) if rescale else y)
        out[s:e] = a.to(stack.dtype)
    return out


# ---------------------------------------------------------------------------- custom ops
@torch.library.custom_op("weightzoo_kernels::ties_merge", mutates_args=())
def _ties_op(stack: torch.Tensor, thr: torch.Tensor, weights: torch.Tensor, base: Optional[torch.Tensor],
             sizes: list[int], scale: float, sign: str, mean: str, backend: str) -> torch.Tensor:
    spec = spec_from_sizes(tuple(sizes))
    if backend == "triton":
        from kernels import tl_merge

        return tl_merge.ties(stack.contiguous(), thr.contiguous(), weights.contiguous(),
                             None if base is None else base.contiguous(), spec, scale, sign == "count",
                             mean)
    return ties_reference(stack, thr, weights, base, spec, scale, sign, mean)


@_ties_op.register_fake
def _(stack, thr, weights, base, sizes, scale, sign, mean, backend):
    return stack.new_empty(stack.shape[1])


@torch.library.custom_op("weightzoo_kernels::dare", mutates_args=())
def _dare_op(stack: torch.Tensor, keys: torch.Tensor, p: float, rescale: bool, pass_nonfinite: bool,
             backend: str) -> torch.Tensor:
    if backend == "triton":
        from kernels import tl_merge

        return tl_merge.dare(stack.contiguous(), keys.contiguous(), p, rescale, pass_nonfinite)
    return dare_reference(stack, keys, p, rescale, pass_nonfinite)


@_dare_op.register_fake
def _(stack, keys, p, rescale, pass_nonfinite, backend):
    return torch.empty_like(stack)


def _dare_setup(ctx, inputs, output):
    _, keys, p, rescale, _, backend = inputs
    ctx.save_for_backward(keys)
    ctx.args = (p, rescale, backend)


def _dare_backward(ctx, grad):
    # the derivative of a kept entry is 1/(1-p) (or 1), of a dropped one 0: the plain mask, whatever
    # the incoming gradient holds
    (keys,) = ctx.saved_tensors
    p, rescale, backend = ctx.args
    return _dare_op(grad.contiguous(), keys, p, rescale, False, backend), None, None, None, None, None


_dare_op.register_autograd(_dare_backward, setup_context=_dare_setup)


@torch.library.custom_op("weightzoo_kernels::dare_merge", mutates_args=())
def _dare_merge_op(stack: torch.Tensor, keys: torch.Tensor, weights: torch.Tensor, base: Optional[torch.Tensor],
                   p: float, rescale: bool, backend: str) -> torch.Tensor:
    if backend == "triton":
        from kernels import tl_merge

        return tl_merge.dare_merge(stack.contiguous(), keys.contiguous(), weights.contiguous(),
                                   None if base is None else base.contiguous(), p, rescale)
    return dare_merge_reference(stack, keys, weights, base, p, rescale)


@_dare_merge_op.register_fake
def _(stack, keys, weights, base, p, rescale, backend):
    return stack.new_empty(stack.shape[1])


# ---------------------------------------------------------------------------- public API
def _check_stack(stack: torch.Tensor, base: torch.Tensor | None, weights: torch.Tensor | None, op: str) -> torch.Tensor:
    check_tensor(stack, "stack", ndim=2)
    if base is not None:
        check_tensor(base, "base", ndim=1)
        if base.shape[0] != stack.shape[1]:
            raise ValueError(f"{op}: base has {base.shape[0]} elements but the task vectors have {stack.shape[1]}")
        check_same_dtype(base=base, stack=stack)
    if weights is None:
        weights = torch.ones(stack.shape[0], device=stack.device)
    check_tensor(weights, "weights", ndim=1)
    if weights.shape[0] != stack.shape[0]:
        raise ValueError(f"{op}: weights have shape {list(weights.shape)}, expected [{stack.shape[0]}] (one per task)")
    bad = torch.nonzero(~torch.isfinite(weights)).flatten().tolist()
    if bad:
        raise ValueError(f"{op}: weights of tasks {bad} are not finite ({weights[bad].tolist()}); a weight "
                         "touches every position, so non-finite weights are refused")
    check_same_device(stack=stack, base=base, weights=weights)
    return weights.to(acc_dtype(stack.dtype))


def ties_merge(stack: torch.Tensor, density: float, blocks: BlockSpec | ParamLayout | Sequence[int] | None = None, *,
               weights: torch.Tensor | None = None, base: torch.Tensor | None = None, scale: float = 1.0,
               sign: Literal["sum", "count"] = "sum", mean: Literal["disjoint", "weighted", "sum"] = "disjoint",
               backend: Backend = "auto") -> torch.Tensor:
    """TIES merge of task vectors ``stack [T, N]`` → ``[N]`` (``base + scale · τ_m`` when ``base`` is given).

    Args:
        density: fraction of each block's entries kept per task (``0 ≤ density ≤ 1``), e.g. 0.2.
        blocks: block spec for the top-k trimming (``None``: the whole vector is one block; a
            ``ParamLayout`` gives one block per parameter tensor, as mergekit and PEFT trim per tensor).
        weights: ``[T]`` per-task weights (default 1).
        sign: ``"sum"`` elects the sign of the weighted trimmed sum (paper, PEFT ``"total"``, mergekit
            ``"sum"``); ``"count"`` the majority of signs (PEFT ``"frequency"``, mergekit ``"count"``).
        mean: ``"disjoint"`` divides by the number of agreeing tasks (paper, PEFT); ``"weighted"`` by the
            sum of their weights (mergekit with ``normalize``); ``"sum"`` does not divide (the TIES
            repository's "dis-sum", mergekit with ``normalize: false``).
    Non-finite entries of ``stack``/``base`` make only their own position NaN (they count as 0
    everywhere else); non-finite ``weights`` raise ``ValueError``.
    Not differentiable. Exact rules in the module docstring.
    """
    weights = _check_stack(stack, base, weights, "ties_merge")
    if not 0.0 <= float(density) <= 1.0:
        raise ValueError(f"ties_merge: density must be in [0, 1], got {density}")
    if sign not in ("sum", "count"):
        raise ValueError(f"ties_merge: sign must be 'sum' or 'count', got {sign!r}")
    if mean not in ("disjoint", "weighted", "sum"):
        raise ValueError(f"ties_merge: mean must be 'disjoint', 'weighted' or 'sum', got {mean!r}")
    spec = as_block_spec(blocks, stack.shape[1])
    chosen = resolve_backend(backend, stack, base, weights, op="ties_merge")
    with torch.no_grad():
        thr = ties_thresholds(stack, float(density), spec)
        return _ties_op(stack, thr, weights, base, list(spec.sizes), float(scale), sign, mean, chosen)


def _check_p(p: float, op: str) -> float:
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"{op}: drop probability p must be in [0, 1), got {p}")
    return float(p)


def dare(stack: torch.Tensor, p: float, seed: int, *, rescale: bool = True, backend: Backend = "auto") -> torch.Tensor:
    """DARE: drop each entry of ``stack [T, N]`` with probability ``p`` and rescale the rest by
    ``1 / (1 − p)``; returns ``[T, N]``. Deterministic in ``(seed, t, i)``; differentiable in ``stack``
    (the gradient is masked and rescaled the same way). Non-finite entries are never dropped, so they
    stay non-finite at their own position."""
    _check_stack(stack, None, None, "dare")
    p = _check_p(p, "dare")
    chosen = resolve_backend(backend, stack, op="dare")
    return _dare_op(stack, dare_keys(seed, stack.shape[0], stack.device), p, bool(rescale), True, chosen)


def dare_merge(stack: torch.Tensor, p: float, seed: int, *, weights: torch.Tensor | None = None,
               base: torch.Tensor | None = None, rescale: bool = True, backend: Backend = "auto") -> torch.Tensor:
    """Fused DARE + task arithmetic: ``[N] = base + Σ_t weights[t] · DARE(stack[t])`` (PEFT's
    ``dare_linear``, mergekit's ``dare_linear`` without normalisation) without a ``[T, N]`` temporary.
    Uses the same masks as :func:`dare` for the same ``seed`` (non-finite entries are never dropped:
    ``out[i]`` is non-finite exactly where an input at ``i`` is). Not differentiable."""
    weights = _check_stack(stack, base, weights, "dare_merge")
    p = _check_p(p, "dare_merge")
    chosen = resolve_backend(backend, stack, base, weights, op="dare_merge")
    keys = dare_keys(seed, stack.shape[0], stack.device)
    with torch.no_grad():
        return _dare_merge_op(stack, keys, weights, base, p, bool(rescale), chosen)
