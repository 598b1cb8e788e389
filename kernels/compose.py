"""``compose``: out[b] = base + Σ_t C[b, t, block(i)] · τ_t[i], fused, with autograd.

This is task arithmetic (one block, ``C`` of shape ``[T]``), aTLAS (one block per parameter tensor,
``[T, n_blocks]``) and layer-wise AdaMerging (one block per layer) over a stack of flat task vectors
``[T, N]``. Neither path materialises a ``[T, N]`` or ``[B, T, N]`` temporary: the PyTorch reference
walks the vector in windows and does one small ``[B, T] @ [T, window]`` product per block piece on
views of the stack, straight into the output;
the Triton kernel reads each task-vector element once per tile of up to 16 outputs and accumulates in
registers (float32, or float64 for float64 inputs).

Gradients: ∂L/∂C[b, t, k] = Σ_{i ∈ block k} g[b, i] τ_t[i] (per-block dot products), ∂L/∂base = Σ_b g[b],
∂L/∂τ_t[i] = Σ_b C[b, t, block(i)] g[b, i] (computed only when the stack requires grad).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from kernels._dispatch import Backend, resolve_backend
from kernels._validate import acc_dtype, check_same_device, check_same_dtype, check_tensor
from kernels.blocks import BlockSpec, as_block_spec, spec_from_sizes
from kernels.layout import ParamLayout

__all__ = ["compose", "compose_reference", "compose_grad_coeffs_reference", "broadcast_coeffs"]


def _window(rows: int) -> int:
    """Window length (elements) for the chunked reference: about 2**20 accumulator values in flight."""
    return max(1 << 14, (1 << 20) // max(rows, 1))


# ---------------------------------------------------------------------------- PyTorch reference
def compose_reference(base: torch.Tensor | None, stack: torch.Tensor, coeffs: torch.Tensor,
                      spec: BlockSpec) -> torch.Tensor:
    """Reference compose. base ``[N]`` or ``None``, stack ``[T, N]``, coeffs ``[B, T, n_blocks]`` →
    ``[B, N]`` in the stack's dtype, accumulated in ``acc_dtype`` (float32, float64 for float64).

    Walks ``[0, N)`` in windows; inside a window every block piece is one ``addmm_``
    (``[B, T] @ [T, piece]``, a view of the stack, straight into the output), or, for windows cut into
    more than 32 pieces, one ``addcmul_`` per task with the coefficients repeated per element. Peak
    extra memory is O(B · window) (none for float32/float64 except the output), never O(T · N).
    """
    B, T, _ = coeffs.shape
    N = stack.shape[1]
    acc_dt = acc_dtype(stack.dtype)
    c = coeffs.to(acc_dt)
    out = torch.empty(B, N, dtype=stack.dtype, device=stack.device)
    direct = acc_dt == stack.dtype
    for s, e, k0, k1, sizes in spec.segments(_window(B)):
        acc = out[:, s:e] if direct else torch.empty(B, e - s, dtype=acc_dt, device=stack.device)
        if base is None:
            acc.zero_()
        else:
            acc.copy_(base[s:e].expand(B, e - s))
        x = stack[:, s:e] if direct else stack[:, s:e].to(acc_dt)
        if k1 - k0 <= 32:
            pos = 0
            for k, size in zip(range(k0, k1), sizes):
                acc[:, pos:pos + size].addmm_(c[:, :, k], x[:, pos:pos + size])
                pos += size
        else:
            reps = torch.tensor(sizes, device=stack.device)
            for t in range(T):
                acc.addcmul_(torch.repeat_interleave(c[:, t, k0:k1], reps, dim=1), x[t])
        if not direct:
            out[:, s:e].copy_(acc)
    return out


def compose_grad_coeffs_reference(grad: torch.Tensor, stack: torch.Tensor, spec: BlockSpec) -> torch.Tensor:
    """Reference coefficient gradient: grad ``[B, N]``, stack ``[T, N]`` → ``[B, T, n_blocks]`` with
    ``out[b, t, k] = Σ_{i ∈ block k} grad[b, i] · stack[t, i]`` (accumulated in ``acc_dtype``)."""
    B, N = grad.shape
    T = stack.shape[0]
    acc_dt = acc_dtype(stack.dtype)
    out = torch.zeros(B, T, spec.n_blocks, dtype=acc_dt, device=stack.device)
    for s, e, k0, k1, sizes in spec.segments(_window(max(B, T))):
        g = grad[:, s:e].to(acc_dt)
        x = stack[:, s:e].to(acc_dt)
        if k1 - k0 <= 8:
            pos = 0
            for k, size in zip(range(k0, k1), sizes):
                out[:, :, k] += g[:, pos:pos + size] @ x[:, pos:pos + size].T
                pos += size
        else:
            ids = torch.repeat_interleave(torch.arange(k0, k1, device=stack.device),
                                          torch.tensor(sizes, device=stack.device))
            for t in range(T):
                out[:, t].index_add_(1, ids, g * x[t])
    return out


# ---------------------------------------------------------------------------- custom ops
def _run_forward(base, stack, coeffs, sizes, backend):
    spec = spec_from_sizes(tuple(sizes))
    if backend == "triton":
        from kernels import tl_compose

        return tl_compose.compose_forward(None if base is None else base.contiguous(), stack.contiguous(),
                                          coeffs.contiguous(), spec, stack.dtype)
    return compose_reference(base, stack, coeffs, spec)


@torch.library.custom_op("weightzoo_kernels::compose", mutates_args=())
def _compose_op(base: Optional[torch.Tensor], stack: torch.Tensor, coeffs: torch.Tensor, sizes: list[int],
                backend: str) -> torch.Tensor:
    return _run_forward(base, stack, coeffs, sizes, backend)


@_compose_op.register_fake
def _(base, stack, coeffs, sizes, backend):
    return stack.new_empty(coeffs.shape[0], stack.shape[1])


@torch.library.custom_op("weightzoo_kernels::compose_grad_coeffs", mutates_args=())
def _compose_grad_coeffs_op(grad: torch.Tensor, stack: torch.Tensor, sizes: list[int], backend: str) -> torch.Tensor:
    spec = spec_from_sizes(tuple(sizes))
    if backend == "triton":
        from kernels import tl_compose

        return tl_compose.compose_grad_coeffs(grad.contiguous(), stack.contiguous(), spec, acc_dtype(stack.dtype))
    return compose_grad_coeffs_reference(grad, stack, spec)


@_compose_grad_coeffs_op.register_fake
def _(grad, stack, sizes, backend):
    return grad.new_empty(grad.shape[0], stack.shape[0], len(sizes), dtype=acc_dtype(stack.dtype))


def _setup_context(ctx, inputs, output):
    base, stack, coeffs, sizes, backend = inputs
    ctx.save_for_backward(stack, coeffs)
    ctx.sizes = sizes
    ctx.backend = backend
    ctx.base_dtype = None if base is None else base.dtype


def _backward(ctx, grad):
    stack, coeffs = ctx.saved_tensors
    grad = grad.contiguous()
    g_base = g_stack = g_coeffs = None
    if ctx.needs_input_grad[0]:
        g_base = grad.sum(0, dtype=acc_dtype(grad.dtype)).to(ctx.base_dtype)
    if ctx.needs_input_grad[1]:
        g_stack = _compose_op(None, grad, coeffs.transpose(0, 1).contiguous(), ctx.sizes, ctx.backend)
    if ctx.needs_input_grad[2]:
        g_coeffs = _compose_grad_coeffs_op(grad, stack, ctx.sizes, ctx.backend).to(coeffs.dtype)
    return g_base, g_stack, g_coeffs, None, None


_compose_op.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------------------- public API
def broadcast_coeffs(coeffs: torch.Tensor, n_tasks: int, n_blocks: int) -> torch.Tensor:
    """Broadcast coefficients ``[T]``, ``[T, 1|nb]`` or ``[B, T, 1|nb]`` to a ``[B, T, nb]`` view (B=1 for
    the first two). Raises ``ValueError`` naming the shapes when they do not fit."""
    if coeffs.dim() == 1:
        view = coeffs.reshape(1, -1, 1)
    elif coeffs.dim() == 2:
        view = coeffs.unsqueeze(0)
    elif coeffs.dim() == 3:
        view = coeffs
    else:
        raise ValueError(f"coeffs must be [T], [T, n_blocks] or [B, T, n_blocks], got shape {list(coeffs.shape)}")
    if view.shape[1] != n_tasks or view.shape[2] not in (1, n_blocks):
        raise ValueError(f"coeffs of shape {list(coeffs.shape)} do not fit {n_tasks} task vectors and "
                         f"{n_blocks} blocks (expected [T], [T, n_blocks] or [B, T, n_blocks] with T={n_tasks}, "
                         f"n_blocks={n_blocks})")
    return view.expand(view.shape[0], n_tasks, n_blocks)


def compose(base: torch.Tensor | None, stack: torch.Tensor, coeffs: torch.Tensor,
            blocks: BlockSpec | ParamLayout | Sequence[int] | None = None, *,
            backend: Backend = "auto") -> torch.Tensor:
    """Blockwise linear combination of task vectors added to a base: aTLAS / task arithmetic.

    Args:
        base: ``[N]`` base weights (the pretrained model), or ``None`` for zero.
        stack: ``[T, N]`` task vectors τ_t (same dtype and device as ``base``).
        coeffs: ``[T]`` (one scale per task), ``[T, n_blocks]`` (per block) or ``[B, T, n_blocks]``
            (B compositions at once); a trailing dimension of 1 broadcasts over blocks. Any floating
            dtype; it is cast to the accumulation dtype (float32, or float64 for float64 stacks).
        blocks: block spec tiling ``[N]``: a :class:`BlockSpec`, a ``ParamLayout`` (one block per
            parameter tensor), a list of block sizes, or ``None`` (one block).
        backend: ``"auto"`` (Triton on CUDA, else PyTorch), ``"torch"`` or ``"triton"``.

    Returns:
        ``[N]`` for 1-D/2-D ``coeffs``, else ``[B, N]``, in the stack's dtype:
        ``out[b, i] = base[i] + Σ_t coeffs[b, t, block(i)] · stack[t, i]``.

    Differentiable in ``base``, ``stack`` and ``coeffs`` (first order).
    """
    check_tensor(stack, "stack", ndim=2)
    check_tensor(coeffs, "coeffs", ndim=(1, 2, 3))
    if base is not None:
        check_tensor(base, "base", ndim=1)
        if base.shape[0] != stack.shape[1]:
            raise ValueError(f"base has {base.shape[0]} elements but the stack's task vectors have {stack.shape[1]}")
    check_same_dtype(base=base, stack=stack)
    check_same_device(base=base, stack=stack, coeffs=coeffs)
    spec = as_block_spec(blocks, stack.shape[1])
    T = stack.shape[0]
    c = broadcast_coeffs(coeffs, T, spec.n_blocks).to(acc_dtype(stack.dtype)).contiguous()
    chosen = resolve_backend(backend, base, stack, coeffs, op="compose")
    out = _compose_op(base, stack, c, list(spec.sizes), chosen)
    return out[0] if coeffs.dim() < 3 else out
