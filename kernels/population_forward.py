"""``population_forward``: logits of P models given their flat weight vectors, on one shared batch.

MLPs (a module or a layout of ``layers.{i}.weight/bias``) run as one batched linear
layer per depth that reads each model's weight matrix straight out of ``flat [P, n_params]`` at the
layer's offset (stride arithmetic, no unflattened copy), fused with bias and activation (Triton), or
as broadcast ``matmul``/``baddbmm`` on views of ``flat`` (PyTorch). Other architectures (the zoo's 1-D
and 2-D CNNs, anything ``torch.func.functional_call`` can run) use ``torch.func.vmap`` over
``functional_call`` with views of ``flat`` as parameters, on both backends.

Computation is in float32 (float64 for float64 weights); logits are returned in the weights' dtype.
"""

from __future__ import annotations

import re

import torch
import torch.nn as nn

from kernels._dispatch import Backend, resolve_backend
from kernels._validate import acc_dtype, check_same_device, check_tensor
from kernels.activations import ACTIVATIONS
from kernels.errors import LayoutMismatchError
from kernels.layout import ParamLayout

__all__ = ["population_forward", "mlp_population_reference", "mlp_structure"]

_NAME = re.compile(r"layers\.(\d+)\.(weight|bias)$")


def mlp_structure(layout: ParamLayout) -> tuple[list[int], list[int]] | None:
    """``(dims, offsets)`` when ``layout`` is an MLP (``layers.{i}.weight [out, in]``, ``layers.{i}.bias``
    alternating, chained dims), else ``None``. ``offsets`` holds weight and bias offsets per layer."""
    entries = list(layout)
    if not entries or len(entries) % 2:
        return None
    dims: list[int] = []
    offsets: list[int] = []
    for i in range(0, len(entries), 2):
        w, b = entries[i], entries[i + 1]
        mw, mb = _NAME.match(w.name), _NAME.match(b.name)
        if not (mw and mb and mw.group(2) == "weight" and mb.group(2) == "bias" and int(mw.group(1)) == i // 2
                and int(mb.group(1)) == i // 2 and len(w.shape) == 2 and b.shape == (w.shape[0],)):
            return None
        if dims and dims[-1] != w.shape[1]:
            return None
        if not dims:
            dims.append(w.shape[1])
        dims.append(w.shape[0])
        offsets += [w.offset, b.offset]
    return dims, offsets


def mlp_population_reference(flat: torch.Tensor, x: torch.Tensor, dims: list[int], offsets: list[int],
                             act: str) -> torch.Tensor:
    """Reference MLP population forward: flat ``[P, n_params]``, x ``[B, dims[0]]`` → ``[P, B, dims[-1]]``
    (accumulation dtype). Weights are strided views of ``flat`` (no copy for float32/float64)."""
    P = flat.shape[0]
    acc = acc_dtype(flat.dtype)
    f = ACTIVATIONS[act]
    h = x.to(acc)
    n_layers = len(dims) - 1
    for layer in range(n_layers):
        IN, OUT = dims[layer], dims[layer + 1]
        wo, bo = offsets[2 * layer], offsets[2 * layer + 1]
        w = flat[:, wo:wo + OUT * IN].view(P, OUT, IN).to(acc)
        b = flat[:, bo:bo + OUT].to(acc)
        if layer == 0:
            h = torch.matmul(h, w.transpose(1, 2)) + b[:, None, :]
        else:
            h = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))
        if layer < n_layers - 1:
            h = f(h)
    return h


@torch.library.custom_op("weightzoo_kernels::mlp_population_forward", mutates_args=())
def _mlp_op(flat: torch.Tensor, x: torch.Tensor, dims: list[int], offsets: list[int], act: str,
            backend: str) -> torch.Tensor:
    if backend == "triton":
        from kernels import tl_population

        return tl_population.mlp_forward(flat.contiguous(), x.contiguous(), dims, offsets, act)
    return mlp_population_reference(flat, x, dims, offsets, act)


@_mlp_op.register_fake
def _(flat, x, dims, offsets, act, backend):
    return flat.new_empty(flat.shape[0], x.shape[0], dims[-1], dtype=acc_dtype(flat.dtype))


def _mlp_setup(ctx, inputs, output):
    flat, x, dims, offsets, act, _ = inputs
    ctx.save_for_backward(flat, x)
    ctx.args = (dims, offsets, act)


def _mlp_backward(ctx, grad):
    # vector-Jacobian product of the PyTorch reference (both backends compute the same function)
    flat, x = ctx.saved_tensors
    dims, offsets, act = ctx.args
    with torch.enable_grad():
        f = flat.detach().requires_grad_(ctx.needs_input_grad[0])
        xx = x.detach().requires_grad_(ctx.needs_input_grad[1])
        out = mlp_population_reference(f, xx, dims, offsets, act)
        wrt = [t for t in (f, xx) if t.requires_grad]
        grads = iter(torch.autograd.grad(out, wrt, grad))
    g_flat = next(grads) if ctx.needs_input_grad[0] else None
    g_x = next(grads) if ctx.needs_input_grad[1] else None
    return g_flat, g_x, None, None, None, None


_mlp_op.register_autograd(_mlp_backward, setup_context=_mlp_setup)


def population_forward(flat: torch.Tensor, arch: nn.Module | ParamLayout, x: torch.Tensor, *,
                       activation: str | None = None, backend: Backend = "auto") -> torch.Tensor:
    """Evaluate P models of one architecture on a shared batch.

    Args:
        flat: ``[P, n_params]`` flat weight vectors in the zoo's layout.
        arch: the architecture as an ``nn.Module`` (its own parameters are ignored) or, for MLPs, its
            ``ParamLayout``.
        x: ``[B, *input_shape]`` input batch shared by all models (flattened to ``[B, in]`` for MLPs).
        activation: hidden activation for an MLP given as a layout (default: the module's ``act_name``,
            else ``"relu"``).
        backend: ``"auto"`` | ``"torch"`` | ``"triton"``; Triton covers MLPs, other architectures use the
            PyTorch path whatever the backend.

    Returns:
        ``[P, B, n_classes]`` logits in ``flat``'s dtype. Differentiable in ``flat`` and ``x``.
    """
    check_tensor(flat, "flat", ndim=2)
    check_tensor(x, "x", float_dtype=True)
    if x.dim() < 1:
        raise ValueError("x must have a batch dimension, got a scalar")
    check_same_device(flat=flat, x=x)
    layout = arch if isinstance(arch, ParamLayout) else ParamLayout.of_module(arch)
    if flat.shape[1] != layout.n_params:
        raise LayoutMismatchError(f"flat has {flat.shape[1]} parameters per model but the architecture has "
                                        f"{layout.n_params}")
    chosen = resolve_backend(backend, flat, x, op="population_forward")
    structure = mlp_structure(layout)
    if structure is not None:
        dims, offsets = structure
        act = activation or getattr(arch, "act_name", None) or "relu"
        if act not in ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; choose from {sorted(ACTIVATIONS)}")
        h = x.reshape(x.shape[0], -1)
        if h.shape[1] != dims[0]:
            raise ValueError(f"x has {h.shape[1]} features per example but the MLP expects {dims[0]}")
        return _mlp_op(flat, h, dims, offsets, act, chosen).to(flat.dtype)
    if isinstance(arch, ParamLayout):
        raise ValueError("population_forward: a ParamLayout describes only MLPs; pass the nn.Module for other "
                         "architectures")
    return _functional_population(flat, arch, layout, x)


def _functional_population(flat: torch.Tensor, module: nn.Module, layout: ParamLayout, x: torch.Tensor) -> torch.Tensor:
    acc = acc_dtype(flat.dtype)
    params = {k: v.to(acc) for k, v in layout.unflatten(flat).items()}
    buffers = {k: v.to(acc) if v.is_floating_point() else v for k, v in module.named_buffers()}

    def one(p: dict, inp: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(module, (p, buffers), (inp,))

    return torch.func.vmap(one, in_dims=(0, None))(params, x.to(acc)).to(flat.dtype)
