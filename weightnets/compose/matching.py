"""Weight matching (Ainsworth et al., ICLR 2023, "Git Re-Basin", §3.2, Algorithm 1) and the loss and
error barriers on the linear path between two models.

Two models of one architecture are aligned by permuting the hidden units (MLP) or channels (CNN) of
model ``b`` so that its weights are as close as possible to model ``a``'s: for every permutation group
``g`` (the layout's permutable units, :class:`kernels.ParamLayout`), with the other groups fixed,

    P_g = argmax_P  Σ_{tensors W with an axis in g}  ⟨ W_a(g), P · W_b(g) ⟩ ,

where ``W(g)`` is the tensor with group ``g``'s axis moved first and flattened (axes of other groups of
``b`` already permuted). Each step is a linear assignment problem (``scipy.optimize.linear_sum_assignment``);
groups are visited in a seeded random order until a full sweep changes no permutation (coordinate
descent; the objective never decreases). The permutations are applied with :func:`kernels.permute`,
which leaves the network's function unchanged. Works for every architecture whose layout declares
permutation groups: the zoo's MLP, 1-D CNN and 2-D CNN (and the Small CNN Zoo's CNN); a flattened conv
output feeding a linear layer (axis ``repeat > 1``) is handled by grouping each channel's inputs.

The barrier of a path ``θ(α) = (1 − α) θ_a + α θ_b`` is ``max_α [L(θ(α)) − ((1 − α) L(θ_a) + α L(θ_b))]``
(Frankle et al. 2020; Entezari et al. 2022), for the loss (cross-entropy) and for the error (1 − accuracy),
evaluated at ``n_points`` evenly spaced α in one batched pass (:func:`weightnets.evaluate.evaluate_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

import kernels
from weightnets.evaluate import evaluate_weights
from zoo import ArchitectureMismatchError, ParamLayout


def _unit_major(w: torch.Tensor, axis: int, repeat: int, units: int) -> torch.Tensor:
    """``[units, rest]``: tensor ``w`` with the group's axis first (``repeat`` consecutive entries per unit
    folded into the rest)."""
    # with the axis first, unit u owns rows u*repeat .. u*repeat+repeat-1, so one reshape groups them
    return w.movedim(axis, 0).reshape(units, -1)


def _check(layout: ParamLayout, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.dim() != 1 or b.dim() != 1 or a.shape != b.shape or a.shape[0] != layout.n_params:
        raise ArchitectureMismatchError(f"weight matching: models of shapes {list(a.shape)} and {list(b.shape)} do not "
                                        f"fit one architecture of {layout.n_params} parameters")
    if not layout.permutable:
        raise ArchitectureMismatchError("weight matching: the architecture's layout declares no permutation groups "
                                        f"(tensors {layout.names})")


def weight_matching(layout: ParamLayout, a: torch.Tensor, b: torch.Tensor, *, max_sweeps: int = 100,
                    seed: int = 0) -> list[torch.Tensor]:
    """Permutations ``[group_sizes[g]]`` (int64, one per group) such that
    ``kernels.permute(b[None], layout, perms)[0]`` is aligned with ``a`` (module docstring).

    Args:
        layout: the architecture's layout (with permutation groups).
        a, b: flat weights ``[n_params]`` of two models of that architecture.
        max_sweeps: at most this many sweeps over all groups.
        seed: order in which the groups are visited.

    Raises :class:`zoo.ArchitectureMismatchError` when the vectors do not fit the layout or it has no
    permutation groups.
    """
    _check(layout, a, b)
    a64, b64 = a.double(), b.double()
    ta = layout.unflatten(a64)
    sizes = [int(s) for s in layout.group_sizes]
    perms = [torch.arange(s) for s in sizes]
    touching: list[list] = [[] for _ in sizes]
    for e in layout:
        for pa in e.perm:
            touching[pa.group].append((e, pa))
    gen = np.random.default_rng(seed)
    for _ in range(int(max_sweeps)):
        changed = False
        for g in gen.permutation(len(sizes)):
            # b with every *other* group permuted as currently chosen, group g left as is
            trial = [p if k != g else torch.arange(sizes[k]) for k, p in enumerate(perms)]
            tb = layout.unflatten(kernels.permute(b64[None], layout, trial, check=False)[0])
            cost = torch.zeros(sizes[g], sizes[g], dtype=torch.float64)
            for e, pa in touching[g]:
                wa = _unit_major(ta[e.name], pa.axis, pa.repeat, sizes[g])
                wb = _unit_major(tb[e.name], pa.axis, pa.repeat, sizes[g])
                cost += wa @ wb.T
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            new = torch.as_tensor(cols, dtype=torch.int64)
            old_value = float(cost[torch.arange(sizes[g]), perms[g]].sum())
            new_value = float(cost[torch.arange(sizes[g]), new].sum())
            if not torch.equal(new, perms[g]) and new_value > old_value + 1e-12 * max(1.0, abs(old_value)):
                perms[g] = new
                changed = True
        if not changed:
            break
    return perms


def align(layout: ParamLayout, b: torch.Tensor, perms: list[torch.Tensor]) -> torch.Tensor:
    """``b [n_params]`` (or ``[P, n_params]``) with its units permuted by ``perms`` (:func:`kernels.permute`)."""
    flat = b[None] if b.dim() == 1 else b
    out = kernels.permute(flat, layout, perms)
    return out[0] if b.dim() == 1 else out


@dataclass
class LinearPath:
    """Loss and accuracy along ``(1 − α) θ_a + α θ_b`` at ``alphas [n]`` and the barriers."""

    alphas: np.ndarray
    loss: np.ndarray
    acc: np.ndarray

    @property
    def loss_barrier(self) -> float:
        """``max_α [L(α) − ((1 − α) L(0) + α L(1))]`` (nats)."""
        line = (1 - self.alphas) * self.loss[0] + self.alphas * self.loss[-1]
        return float(np.max(self.loss - line))

    @property
    def error_barrier(self) -> float:
        """The same for the error ``1 − accuracy`` (a fraction)."""
        err = 1 - self.acc
        line = (1 - self.alphas) * err[0] + self.alphas * err[-1]
        return float(np.max(err - line))


def linear_path(a: torch.Tensor, b: torch.Tensor, arch: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                n_points: int = 11) -> LinearPath:
    """Evaluate ``n_points`` models on the segment from ``a`` to ``b`` (inclusive) in one batched pass."""
    alphas = np.linspace(0.0, 1.0, int(n_points))
    al = torch.as_tensor(alphas, dtype=torch.float32)[:, None]
    models = (1 - al) * a.float()[None] + al * b.float()[None]
    ev = evaluate_weights(models, arch, x, y)
    return LinearPath(alphas, ev.loss, ev.acc)


@dataclass
class MatchingReport:
    """Barriers before/after matching and the accuracy of the midpoint (plain vs aligned average)."""

    loss_barrier_before: float
    loss_barrier_after: float
    error_barrier_before: float
    error_barrier_after: float
    average_acc_before: float
    average_acc_after: float
    endpoint_acc: tuple[float, float]

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def match_and_compare(layout: ParamLayout, a: torch.Tensor, b: torch.Tensor, arch: torch.nn.Module,
                      x: torch.Tensor, y: torch.Tensor, *, n_points: int = 11, seed: int = 0) -> MatchingReport:
    """Weight-match ``b`` to ``a`` and compare the linear path (barriers) and the averaged model
    ``(θ_a + θ_b) / 2`` before and after matching, on ``(x, y)``."""
    perms = weight_matching(layout, a, b, seed=seed)
    b_aligned = align(layout, b, perms)
    before = linear_path(a, b, arch, x, y, n_points)
    after = linear_path(a, b_aligned, arch, x, y, n_points)
    mid = len(before.alphas) // 2
    return MatchingReport(before.loss_barrier, after.loss_barrier, before.error_barrier, after.error_barrier,
                          float(before.acc[mid]), float(after.acc[mid]), (float(before.acc[0]), float(before.acc[-1])))


def aligned_average(layout: ParamLayout, models: torch.Tensor, *, seed: int = 0) -> torch.Tensor:
    """``[n_params]``: the average of ``models [M, n_params]`` after matching every model to the first
    (independently trained models of one architecture; Git Re-Basin §4)."""
    ref = models[0]
    aligned = [ref] + [align(layout, m, weight_matching(layout, ref, m, seed=seed)) for m in models[1:]]
    return torch.stack(aligned).mean(0)
