"""``permute``: apply per-model hidden-unit / channel permutations to flat weight vectors.

``perms[g]`` is ``[P, group_sizes[g]]`` (or ``[group_sizes[g]]``, shared by all models): new unit ``i``
of group ``g`` in model ``p`` is old unit ``perms[g][p, i]``, the convention of
``ParamLayout.permutation_index``; ``permute(flat, layout, perms)[p]`` equals
``flat[p][layout.permutation_index([perm[p] for perm in perms])]``. Permuting every axis of a group the
same way leaves each network's function unchanged (augmentation, weight matching).

Every parameter tensor is viewed as ``[D0, D1, R]`` (``D1 = shape[1]`` or 1, ``R`` the product of the
remaining dims); permutable axes must be 0 or 1, an axis-1 permutation may have ``repeat > 1``
(a flattened conv output feeding a linear layer), which covers every architecture in ``zoo``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from kernels._dispatch import Backend, resolve_backend
from kernels._validate import check_tensor
from kernels.errors import LayoutMismatchError
from kernels.layout import ParamLayout

__all__ = ["permute", "permute_reference", "permutation_table", "invert_permutations"]


def permutation_table(layout: ParamLayout) -> list[list[int]]:
    """Per entry ``[offset, numel, D1, R, g0, g1, repeat1]`` where ``g0``/``g1`` are the unit offsets of
    the groups permuting axis 0 / 1 in the concatenated permutation tensor (``-1``: none)."""
    starts = [0]
    for size in layout.group_sizes:
        starts.append(starts[-1] + int(size))
    table = []
    for e in layout:
        d1 = e.shape[1] if len(e.shape) > 1 else 1
        r = int(math.prod(e.shape[2:])) if len(e.shape) > 2 else 1
        g0 = g1 = -1
        rep1 = 1
        for pa in e.perm:
            if pa.axis == 0:
                if pa.repeat != 1 or e.shape[0] != layout.group_sizes[pa.group]:
                    raise ValueError(f"permute: {e.name} axis 0 does not match group {pa.group}")
                g0 = starts[pa.group]
            elif pa.axis == 1:
                if d1 != layout.group_sizes[pa.group] * pa.repeat:
                    raise ValueError(f"permute: {e.name} axis 1 has {d1} entries, group {pa.group} covers "
                                     f"{layout.group_sizes[pa.group]} x {pa.repeat}")
                g1, rep1 = starts[pa.group], pa.repeat
            else:
                raise ValueError(f"permute: {e.name} permutes axis {pa.axis}; only axes 0 and 1 are supported")
        table.append([e.offset, e.numel, d1, r, g0, g1, rep1])
    return table


def permute_reference(flat: torch.Tensor, perms: torch.Tensor, table: list[list[int]]) -> torch.Tensor:
    """Reference: per entry, ``torch.gather`` along axes 0 and 1 of the ``[P, D0, D1, R]`` view."""
    P = flat.shape[0]
    pieces = []
    for off, numel, d1, r, g0, g1, rep1 in table:
        d0 = numel // (d1 * r)
        w = flat[:, off:off + numel].reshape(P, d0, d1, r)
        if g0 >= 0:
            idx = perms[:, g0:g0 + d0]
            w = torch.gather(w, 1, idx[:, :, None, None].expand(P, d0, d1, r))
        if g1 >= 0:
            units = perms[:, g1:g1 + d1 // rep1]
            idx = (units[:, :, None] * rep1 + torch.arange(rep1, device=flat.device)).reshape(P, d1)
            w = torch.gather(w, 2, idx[:, None, :, None].expand(P, d0, d1, r))
        pieces.append(w.reshape(P, numel))
    return torch.cat(pieces, dim=1)


def invert_permutations(perms: torch.Tensor, group_sizes: Sequence[int]) -> torch.Tensor:
    """Inverse of concatenated per-group permutations ``[P, U]`` (each group inverted separately)."""
    out = torch.empty_like(perms)
    start = 0
    for size in group_sizes:
        out[:, start:start + size] = torch.argsort(perms[:, start:start + size], dim=1)
        start += size
    return out


@torch.library.custom_op("weightzoo_kernels::permute", mutates_args=())
def _permute_op(flat: torch.Tensor, perms: torch.Tensor, table: list[int], group_sizes: list[int],
                backend: str) -> torch.Tensor:
    rows = [table[i:i + 7] for i in range(0, len(table), 7)]
    if backend == "triton":
        from kernels import tl_permute

        return tl_permute.permute(flat.contiguous(), perms.contiguous(), rows)
    return permute_reference(flat, perms, rows)


@_permute_op.register_fake
def _(flat, perms, table, group_sizes, backend):
    return torch.empty_like(flat)


def _permute_setup(ctx, inputs, output):
    _, perms, table, group_sizes, backend = inputs
    ctx.save_for_backward(perms)
    ctx.args = (table, group_sizes, backend)


def _permute_backward(ctx, grad):
    (perms,) = ctx.saved_tensors
    table, group_sizes, backend = ctx.args
    inverse = invert_permutations(perms, group_sizes)
    return _permute_op(grad.contiguous(), inverse, table, group_sizes, backend), None, None, None, None


_permute_op.register_autograd(_permute_backward, setup_context=_permute_setup)


def permute(flat: torch.Tensor, layout: ParamLayout, perms: Sequence[torch.Tensor], *,
            check: bool = True, backend: Backend = "auto") -> torch.Tensor:
    """Permute the hidden units / channels of P models.

    Args:
        flat: ``[P, n_params]`` flat weight vectors (any dtype).
        layout: the architecture's ``ParamLayout`` (with permutation groups).
        perms: one integer tensor per group, ``[P, group_sizes[g]]`` or ``[group_sizes[g]]``.
        check: verify every row is a permutation of ``range(group_sizes[g])`` (one sort per group).
        backend: ``"auto"`` | ``"torch"`` | ``"triton"``.

    Returns:
        ``[P, n_params]`` permuted weights. Differentiable in ``flat`` (the gradient is the inverse
        permutation of the incoming gradient).
    """
    check_tensor(flat, "flat", ndim=2, float_dtype=False)
    if flat.shape[1] != layout.n_params:
        raise LayoutMismatchError(f"flat has {flat.shape[1]} parameters per model but the layout has "
                                        f"{layout.n_params}")
    if len(perms) != len(layout.group_sizes):
        raise ValueError(f"permute: expected {len(layout.group_sizes)} permutations (one per group), got {len(perms)}")
    P = flat.shape[0]
    rows = []
    for g, (perm, size) in enumerate(zip(perms, layout.group_sizes)):
        check_tensor(perm, f"perms[{g}]", ndim=(1, 2), float_dtype=False)
        if perm.dtype.is_floating_point or perm.dtype == torch.bool or perm.is_complex():
            raise TypeError(f"perms[{g}] must be an integer tensor, got {perm.dtype}")
        if perm.device != flat.device:
            raise ValueError(f"perms[{g}] is on {perm.device} but flat is on {flat.device}")
        p2 = perm.unsqueeze(0).expand(P, -1) if perm.dim() == 1 else perm
        if tuple(p2.shape) != (P, size):
            raise ValueError(f"perms[{g}] has shape {list(perm.shape)}, expected [{P}, {size}] or [{size}]")
        if check and size > 0:
            ok = torch.equal(torch.sort(p2.to(torch.int64), dim=1).values,
                             torch.arange(size, device=flat.device).expand(P, size))
            if not ok:
                raise ValueError(f"perms[{g}]: every row must be a permutation of range({size})")
        rows.append(p2.to(torch.int64))
    table = permutation_table(layout)
    cat = torch.cat(rows, dim=1) if rows else torch.zeros(P, 0, dtype=torch.int64, device=flat.device)
    chosen = resolve_backend(backend, flat, cat, op="permute")
    return _permute_op(flat, cat, [v for row in table for v in row], [int(s) for s in layout.group_sizes], chosen)
