"""Augmentations on flat weight vectors ``[n_params]`` or ``[batch, n_params]``.

:class:`PermutationAugment` permutes hidden units (MLP) or channels (CNN) consistently across every
axis they index, which provably leaves the network's function unchanged; :class:`NoiseAugment` adds
(or multiplies by) Gaussian noise.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from zoo.errors import ZooError
from zoo.layout import ParamLayout


def _generator(seed: int | None) -> torch.Generator | None:
    return torch.Generator().manual_seed(int(seed)) if seed is not None else None


class PermutationAugment:
    """Random function-preserving permutations, applied with probability ``p`` (per row)."""

    def __init__(self, layout: ParamLayout, p: float = 1.0, seed: int | None = None) -> None:
        if not layout.permutable:
            raise ZooError("PermutationAugment: this architecture declares no permutation groups "
                           "(add a permutation_spec() to its module)")
        if not 0.0 <= p <= 1.0:
            raise ZooError(f"PermutationAugment: p must be in [0, 1], got {p}")
        self.layout, self.p, self.generator = layout, float(p), _generator(seed)

    def __call__(self, flat: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        gen = generator or self.generator
        rows = flat.reshape(-1, flat.shape[-1])
        if rows.shape[-1] != self.layout.n_params:
            raise ZooError(f"PermutationAugment: vector has {rows.shape[-1]} entries, layout has {self.layout.n_params}")
        out = rows.clone()
        for i in range(rows.shape[0]):
            if self.p < 1.0 and torch.rand((), generator=gen).item() >= self.p:
                continue
            out[i] = rows[i, self.layout.permutation_index(self.layout.random_permutations(gen))]
        return out.reshape(flat.shape)


class NoiseAugment:
    """``w + sigma * N(0, 1)`` (``mode="additive"``) or ``w * (1 + sigma * N(0, 1))``
    (``"multiplicative"``); with ``relative=True`` sigma is scaled by each parameter tensor's std."""

    def __init__(self, sigma: float, mode: str = "additive", relative: bool = False,
                 layout: ParamLayout | None = None, seed: int | None = None) -> None:
        if mode not in ("additive", "multiplicative"):
            raise ZooError(f"NoiseAugment: mode must be 'additive' or 'multiplicative', got {mode!r}")
        if sigma < 0:
            raise ZooError(f"NoiseAugment: sigma must be >= 0, got {sigma}")
        if relative and layout is None:
            raise ZooError("NoiseAugment: relative=True needs the layout")
        self.sigma, self.mode, self.relative, self.layout = float(sigma), mode, relative, layout
        self.generator = _generator(seed)

    def __call__(self, flat: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        gen = generator or self.generator
        noise = torch.randn(flat.shape, generator=gen, dtype=flat.dtype) * self.sigma
        if self.relative:
            scale = torch.empty_like(flat)
            for e in self.layout:
                block = flat[..., e.offset:e.offset + e.numel]
                scale[..., e.offset:e.offset + e.numel] = block.std(dim=-1, keepdim=True) if e.numel > 1 else 1.0
            noise = noise * scale
        return flat + noise if self.mode == "additive" else flat * (1 + noise)


class Compose:
    """Apply several transforms in order."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, flat: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for t in self.transforms:
            flat = t(flat, generator) if generator is not None else t(flat)
        return flat
