"""Fused batched weight-space operations, each with a PyTorch reference and a Triton kernel.

See ``docs/KERNELS.md``. Every op takes ``backend="auto" | "torch" | "triton"``; ``"auto"`` uses Triton
for CUDA tensors when Triton is importable and PyTorch otherwise. Importing this package never imports
Triton.

* :func:`compose` — ``base + Σ_t C[b, t, block] · τ_t`` (task arithmetic, aTLAS, AdaMerging), with autograd.
* :func:`ties_merge`, :func:`dare`, :func:`dare_merge` — TIES and DARE merging.
* :func:`population_forward` — logits of P models from flat weights on a shared batch.
* :func:`layer_stats` — StatNN statistics per model and parameter tensor.
* :func:`permute` — per-model unit / channel permutations of flat weights.

The shared vocabulary of flat weights lives here too: :class:`ParamLayout` (where each parameter sits
in a flat vector, and its permutable axes), :class:`BlockSpec`, the activations by name, and the
errors (:class:`LayoutMismatchError`, a ``ValueError``). This package imports torch, numpy and, for
the kernels themselves, Triton; never ``zoo``.
"""

from kernels._dispatch import Backend, interpreter_enabled, resolve_backend, triton_available
from kernels.activations import ACTIVATIONS, activation_names, get_activation
from kernels.blocks import BlockSpec
from kernels.compose import compose, compose_reference
from kernels.errors import KernelError, LayoutMismatchError
from kernels.layer_stats import STAT_NAMES, layer_stats
from kernels.layout import ParamEntry, ParamLayout, PermAxis
from kernels.merge import dare, dare_merge, ties_merge
from kernels.permute import permute
from kernels.population_forward import population_forward

__all__ = [
    "ACTIVATIONS",
    "Backend",
    "BlockSpec",
    "KernelError",
    "LayoutMismatchError",
    "ParamEntry",
    "ParamLayout",
    "PermAxis",
    "activation_names",
    "get_activation",
    "STAT_NAMES",
    "compose",
    "compose_reference",
    "dare",
    "dare_merge",
    "interpreter_enabled",
    "layer_stats",
    "permute",
    "population_forward",
    "resolve_backend",
    "ties_merge",
    "triton_available",
]
