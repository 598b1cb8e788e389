"""Augmentations of flat weight vectors ``[n_params]`` or ``[batch, n_params]``.

* :class:`PermutationAugment` permutes hidden units (MLP) or channels (CNN) consistently across every
  axis that indexes them (outgoing rows, biases, incoming columns of the next layer), which leaves the
  network's function unchanged. Each row of a batch gets its own permutation.
* :class:`NoiseAugment` adds Gaussian noise, or multiplies by ``1 + noise``.
* :class:`Compose` chains transforms.

Every transform takes an optional ``torch.Generator``; without one it uses the generator seeded by
its own ``seed`` argument, or torch's global RNG when that is None as well.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from kernels.layout import ParamLayout
from zoo.errors import ArchitectureMismatchError, ZooError


def _seeded(seed: int | None) -> torch.Generator | None:
    return None if seed is None else torch.Generator().manual_seed(int(seed))


def _as_rows(flat: torch.Tensor, n_params: int, where: str) -> torch.Tensor:
    """``[n_params]`` or ``[b, n_params]`` as ``[b, n_params]``."""
    if flat.dim() not in (1, 2) or flat.shape[-1] != n_params:
        raise ArchitectureMismatchError(
            f"{where}: expected weights [n_params] or [batch, n_params] with n_params={n_params}, "
            f"got shape {list(flat.shape)}")
    return flat.reshape(-1, n_params)


def batched_permutation_index(layout: ParamLayout, perms: Sequence[torch.Tensor]) -> torch.Tensor:
    """Gather index ``[b, n_params]``: row ``i`` applies the unit permutations ``perms[g][i]``.

    ``perms[g]`` is ``[b, group_sizes[g]]`` (one permutation per row). Row ``i`` equals
    ``layout.permutation_index([p[i] for p in perms])``.
    """
    if len(perms) != len(layout.group_sizes):
        raise ValueError(f"expected {len(layout.group_sizes)} permutation batches, got {len(perms)}")
    if not perms:
        raise ValueError("the layout has no permutation groups")
    b = perms[0].shape[0]
    for g, (p, size) in enumerate(zip(perms, layout.group_sizes)):
        if tuple(p.shape) != (b, size):
            raise ValueError(f"permutations of group {g} have shape {list(p.shape)}, expected [{b}, {size}]")
    device = perms[0].device
    pieces = []
    for e in layout.entries:
        idx = torch.arange(e.numel, dtype=torch.long, device=device).reshape(1, *e.shape).expand(b, *e.shape)
        for pa in e.perm:
            p = perms[pa.group].to(torch.long)
            if pa.repeat > 1:
                p = (p[:, :, None] * pa.repeat + torch.arange(pa.repeat, device=device)).reshape(b, -1)
            dim = pa.axis + 1
            view = [b] + [1] * len(e.shape)
            view[dim] = p.shape[1]
            gather_at = p.reshape(view).expand(*idx.shape[:dim], p.shape[1], *idx.shape[dim + 1:])
            idx = torch.gather(idx, dim, gather_at)
        pieces.append(idx.reshape(b, e.numel) + e.offset)
    return torch.cat(pieces, dim=1)


class PermutationAugment:
    """Random function-preserving unit/channel permutations, applied to each row with probability ``p``.

    ``__call__(flat)`` maps ``[n_params]`` or ``[b, n_params]`` to the same shape; a permuted vector
    holds exactly the same values as the input, reordered.
    """

    def __init__(self, layout: ParamLayout, p: float = 1.0, seed: int | None = None) -> None:
        if not layout.permutable:
            raise ZooError("PermutationAugment: this layout has no permutation groups "
                           "(give the architecture's module a permutation_spec())")
        if not 0.0 <= float(p) <= 1.0:
            raise ZooError(f"PermutationAugment: p must be in [0, 1], got {p}")
        self.layout = layout
        self.p = float(p)
        self.generator = _seeded(seed)

    def __call__(self, flat: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        rows = _as_rows(flat, self.layout.n_params, "PermutationAugment")
        gen = generator if generator is not None else self.generator
        draw_device = gen.device if gen is not None else torch.device("cpu")
        b = rows.shape[0]
        apply = torch.rand(b, generator=gen, device=draw_device) < self.p
        perms = []
        for size in self.layout.group_sizes:
            p = torch.rand(b, size, generator=gen, device=draw_device, dtype=torch.float64).argsort(dim=1)
            identity = torch.arange(size, device=draw_device).expand(b, size)
            perms.append(torch.where(apply[:, None], p, identity))
        index = batched_permutation_index(self.layout, perms).to(rows.device)
        return torch.gather(rows, 1, index).reshape(flat.shape)


class NoiseAugment:
    """Gaussian weight noise on ``[n_params]`` or ``[b, n_params]`` (same shape out).

    ``mode="additive"``: ``w + s * N(0, 1)``; ``mode="multiplicative"``: ``w * (1 + sigma * N(0, 1))``.
    With ``relative=True`` (additive only, needs ``layout``) ``s = sigma * std`` where ``std`` is the
    standard deviation of the parameter tensor the value belongs to, in that row; a one-element tensor
    uses its absolute value instead. Otherwise ``s = sigma``.
    """

    def __init__(self, sigma: float, mode: str = "additive", relative: bool = False,
                 layout: ParamLayout | None = None, seed: int | None = None) -> None:
        if mode not in ("additive", "multiplicative"):
            raise ZooError(f"NoiseAugment: mode must be 'additive' or 'multiplicative', got {mode!r}")
        if not float(sigma) >= 0.0:
            raise ZooError(f"NoiseAugment: sigma must be >= 0, got {sigma}")
        if relative and layout is None:
            raise ZooError("NoiseAugment: relative=True needs layout= to know the parameter tensors")
        if relative and mode != "additive":
            raise ZooError("NoiseAugment: relative=True applies to additive noise only "
                           "(multiplicative noise is already relative to each weight)")
        self.sigma = float(sigma)
        self.mode = mode
        self.relative = bool(relative)
        self.layout = layout
        self.generator = _seeded(seed)
        if self.relative:
            sizes = torch.tensor([e.numel for e in layout], dtype=torch.long)
            self._entry = torch.repeat_interleave(torch.arange(len(layout)), sizes)
            self._sizes = sizes

    def _entry_std(self, rows: torch.Tensor) -> torch.Tensor:
        """Per-row, per-entry scale expanded to ``[b, n_params]``."""
        entry = self._entry.to(rows.device)
        sizes = self._sizes.to(rows.device, rows.dtype)
        n_entries = len(self.layout)
        sums = rows.new_zeros(rows.shape[0], n_entries).index_add_(1, entry, rows)
        centred = rows - (sums / sizes)[:, entry]
        var = rows.new_zeros(rows.shape[0], n_entries).index_add_(1, entry, centred * centred) / sizes
        std = var.sqrt()[:, entry]
        single = (self._sizes == 1).to(rows.device)[entry]
        return torch.where(single, rows.abs(), std)

    def __call__(self, flat: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not flat.is_floating_point():
            raise ZooError(f"NoiseAugment: weights must be floating point, got {flat.dtype}")
        gen = generator if generator is not None else self.generator
        draw_device = gen.device if gen is not None else flat.device
        noise = torch.randn(flat.shape, generator=gen, device=draw_device, dtype=flat.dtype).to(flat.device)
        noise = noise * self.sigma
        if self.mode == "multiplicative":
            return flat * (1 + noise)
        if self.relative:
            rows = _as_rows(flat, self.layout.n_params, "NoiseAugment")
            noise = noise * self._entry_std(rows).reshape(flat.shape)
        return flat + noise


class Compose:
    """Apply ``transforms`` in order; a generator given to the call is passed on to each of them."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise ZooError(f"Compose: {t!r} is not callable")

    def __call__(self, flat: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            flat = t(flat) if generator is None else t(flat, generator)
        return flat
