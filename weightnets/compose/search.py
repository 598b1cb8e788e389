"""Gradient-free search of composition coefficients with CMA-ES (the ``cma`` package, Hansen's
``CMAEvolutionStrategy``), as evolutionary model merging does for its parameter-space merge settings
(Akiba et al., Nature Machine Intelligence 2025, "Evolutionary optimization of model merging recipes",
§3.1); LoraHub (Huang et al., COLM 2024) searches LoRA composition weights gradient-free as well.

Each generation asks CMA-ES for ``popsize`` coefficient sets, composes all of them in **one**
:func:`kernels.compose` call (``coeffs [B, T, n_blocks]`` → ``[B, N]``) and scores them in one batched
:func:`kernels.population_forward` pass per task; no gradient is taken.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import cma
import numpy as np
import torch
import torch.nn.functional as F

import kernels
from weightnets.compose.coefficients import entropy
from weightnets.compose.taskset import TaskVectors
from zoo import SpecError


@dataclass
class SearchResult:
    """``coeffs [T, n_blocks]`` (the best set found), its objective value, and the number of
    objective evaluations (compositions scored)."""

    coeffs: torch.Tensor
    value: float
    evaluations: int
    generations: int


def population_objective(flat: torch.Tensor, arch: torch.nn.Module, data: Sequence[tuple[torch.Tensor, torch.Tensor]],
                         objective: Literal["ce", "entropy"] = "ce") -> np.ndarray:
    """``[B]`` objective of ``B`` weight vectors ``flat [B, N]``: the mean over tasks of the
    cross-entropy on labelled ``(x, y)`` (``"ce"``) or of the prediction entropy (``"entropy"``).
    Non-finite weights score ``inf``."""
    total = torch.zeros(flat.shape[0], dtype=torch.float64)
    for x, y in data:
        logits = kernels.population_forward(flat, arch, x).float()  # [B, n, C]
        if objective == "ce":
            per = F.cross_entropy(logits.permute(0, 2, 1), y.expand(flat.shape[0], -1), reduction="none").mean(1)
        else:
            per = torch.stack([entropy(lg) for lg in logits])
        total += per.double()
    out = (total / len(data)).numpy()
    out[~np.isfinite(out)] = np.inf
    return out


@torch.no_grad()
def cma_search(vectors: TaskVectors, arch: torch.nn.Module, data: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
               granularity: Literal["task", "layer", "tensor"] = "task", objective: Literal["ce", "entropy"] = "ce",
               init: float = 0.3, sigma0: float = 0.2, popsize: int | None = None, generations: int = 30,
               seed: int = 0) -> SearchResult:
    """Minimise ``objective`` over coefficients ``C [T, n_blocks]`` with CMA-ES.

    Args:
        vectors: base and task vectors. arch: the architecture module.
        data: one ``(x, y)`` per task (``y`` unused for ``"entropy"``), e.g. few-shot examples or the
            validation split.
        init, sigma0: the start point (every coefficient ``init``) and CMA-ES' initial step size.
        popsize: candidates per generation (CMA-ES default ``4 + 3 ln(dim)`` when None).
        generations: generations run (the search also stops on CMA-ES' own criteria).
        seed: CMA-ES' random seed (``seed + 1``; cma treats 0 as "random").

    Raises :class:`zoo.SpecError` for an unknown objective or a non-positive ``generations``.
    """
    if objective not in ("ce", "entropy"):
        raise SpecError(f"cma_search: objective must be 'ce' or 'entropy', got {objective!r}")
    if int(generations) < 1:
        raise SpecError(f"cma_search: generations must be >= 1, got {generations}")
    spec = vectors.blocks(granularity)
    T, nb = vectors.n_tasks, spec.n_blocks
    opts = {"seed": int(seed) + 1, "maxiter": int(generations), "verbose": -9}
    if popsize is not None:
        opts["popsize"] = int(popsize)
    x0 = np.full(T * nb, float(init))
    if T * nb == 1:  # cma needs at least 2 dimensions: search a duplicate that is averaged away
        x0 = np.full(2, float(init))
    es = cma.CMAEvolutionStrategy(x0, float(sigma0), opts)
    base, stack = vectors.base.float(), vectors.stack.float()
    evaluations = 0

    def to_coeffs(xs: np.ndarray) -> torch.Tensor:
        c = torch.as_tensor(np.asarray(xs), dtype=torch.float32)
        if T * nb == 1:
            c = c.mean(-1, keepdim=True)
        return c.reshape(len(xs), T, nb)

    while not es.stop():
        xs = es.ask()
        flat = kernels.compose(base, stack, to_coeffs(np.stack(xs)), spec)
        values = population_objective(flat, arch, data, objective)
        evaluations += len(xs)
        es.tell(xs, values.tolist())
    best = es.result.xbest if es.result.xbest is not None else x0
    return SearchResult(to_coeffs(np.asarray(best)[None])[0], float(es.result.fbest), evaluations,
                        int(es.result.iterations))
