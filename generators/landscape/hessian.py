"""Hessian top eigenvalue and trace of a whole population at once.

The population loss ``sum_p L_p(theta_p)`` is a sum of independent per-model losses, so its Hessian
w.r.t. the stacked parameters ``[P, n_params]`` is block diagonal: one Hessian-vector product (HVP) of
the sum gives every member's own HVP. :class:`PopulationHVP` builds that product with ``torch.func``
(``vjp`` of ``grad``, reverse over reverse) and keeps the linearisation, so every further product
costs one backward pass. Power iteration and Hutchinson's estimator then run batched over members,
with per-member normalisation and per-member stopping (power iteration: PyHessian's rule, stop when
the relative change of the estimate is below ``tol``; the trace: stop when its standard error is
below ``trace_tol`` of its magnitude). A member's random vectors come from its own generator, so
its values do not depend on which other models share the population.

``L_p`` is the mean cross-entropy over a fixed sample set (as PyHessian with ``criterion`` =
``CrossEntropyLoss``). The "top" eigenvalue is the one of largest magnitude, as in PyHessian.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.func import grad, vjp

from generators.landscape.population_data import (
    STREAM_POWER,
    STREAM_TRACE,
    cross_entropy_sum,
    member_generator,
)
from generators.population import PopulationModel
from kernels.layout import ParamLayout


class PopulationHVP:
    """``v [P, n_params] -> H v [P, n_params]`` for the members' Hessians at ``flat [P, n_params]``.

    The loss is the mean over all of ``(x [n, ...], y [n])``; samples are processed in chunks of
    ``batch_size`` (the product is linear in the loss, so chunk products add up with weights
    ``len(chunk) / n``). With a single chunk the linearisation is kept between products.
    """

    def __init__(self, model: PopulationModel, layout: ParamLayout, flat: torch.Tensor, x: torch.Tensor,
                 y: torch.Tensor, batch_size: int = 1024) -> None:
        self.model, self.layout, self.flat = model, layout, flat
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self.chunks = [(i, min(i + self.batch_size, len(y))) for i in range(0, len(y), self.batch_size)]
        self._linearised: list[Callable] | None = None
        if len(self.chunks) == 1:
            self._linearised = [self._linearise(*self.chunks[0])]

    @property
    def n_members(self) -> int:
        return self.flat.shape[0]

    def _linearise(self, start: int, stop: int) -> Callable:
        x, y = self.x[start:stop], self.y[start:stop]

        def loss(flat: torch.Tensor) -> torch.Tensor:
            return cross_entropy_sum(self.model.logits(self.layout.unflatten(flat), x, shared=True), y)

        _, fn = vjp(grad(loss), self.flat)
        return fn

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        n = len(self.y)
        out = torch.zeros_like(v)
        for k, (start, stop) in enumerate(self.chunks):
            fn = self._linearised[k] if self._linearised is not None else self._linearise(start, stop)
            out += fn(v)[0] * ((stop - start) / n)
        return out

    def subset(self, members: Sequence[int]) -> "PopulationHVP":
        """The same operator for some of the members only (fewer products once most have stopped)."""
        idx = torch.as_tensor(list(members), dtype=torch.long)
        return PopulationHVP(_rows(self.model, idx), self.layout, self.flat[idx], self.x, self.y, self.batch_size)


def _rows(model: PopulationModel, rows: slice | torch.Tensor) -> PopulationModel:
    """The population function of some members (their unit masks) when members are padded."""
    return model.select(rows) if model.padded else model


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() * b.double()).sum(1)


def _relative_change(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return (new - old).abs() / (old.abs() + 1e-6)


class _ActiveSet:
    """Members still iterating, and the operator restricted to them: the operator is rebuilt on the
    active members once at most three quarters of the members it covers are still active."""

    def __init__(self, hvp: PopulationHVP) -> None:
        self.full = hvp
        self.op = hvp
        self.op_members = np.arange(hvp.n_members)
        self.active = np.ones(hvp.n_members, dtype=bool)

    def apply(self, v_full: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rows [k], live [k], H v [k, n])``: the members the operator covers (indices into
        ``v_full [P, n]``), which of them are still active, and their products."""
        if self.active.sum() * 4 <= 3 * len(self.op_members) and self.active.any():
            self.op_members = np.flatnonzero(self.active)
            self.op = self.full.subset(self.op_members)
        rows = torch.from_numpy(self.op_members)
        return rows, torch.from_numpy(self.active[self.op_members]), self.op(v_full[rows])


def top_eigenvalue(hvp: PopulationHVP, model_ids: Sequence[int], *, iters: int = 100, tol: float = 1e-3,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Power iteration per member: eigenvalue of largest magnitude ``[P]`` and iterations used ``[P]``.

    Member ``p`` starts from a normal vector drawn from its generator ``(seed, model_ids[p])``; its
    estimate is ``v^T H v`` with ``v`` of unit norm; it stops after ``iters`` steps or once the
    relative change of the estimate is below ``tol``.
    """
    P, n = hvp.n_members, hvp.flat.shape[1]
    sizes = hvp.model.member_sizes if hvp.model.padded else [n] * P  # drawn at each member's own size
    v = hvp.model.embed([torch.randn(k, generator=member_generator(seed, m, STREAM_POWER))
                         for m, k in zip(model_ids, sizes)]).to(hvp.flat.dtype)
    v /= v.norm(dim=1, keepdim=True)
    eig = torch.full((P,), float("nan"), dtype=torch.float64)
    used = np.zeros(P, dtype=np.int64)
    state = _ActiveSet(hvp)
    for it in range(iters):
        rows, live, hv = state.apply(v)
        new = _rowdot(v[rows], hv)
        norm = hv.norm(dim=1, keepdim=True)
        done_now = torch.zeros_like(live)
        if it > 0:
            done_now = _relative_change(new, eig[rows]) < tol
        done_now |= (norm.squeeze(1) == 0) | ~torch.isfinite(new)
        upd = rows[live]
        eig[upd] = new[live]
        used[upd.numpy()] = it + 1
        v[upd] = torch.where(norm[live] > 0, hv[live] / norm[live].clamp_min(1e-30), v[upd])
        state.active[rows[live & done_now].numpy()] = False
        if not state.active.any():
            break
    return eig.numpy(), used


def hutchinson_trace(hvp: PopulationHVP, model_ids: Sequence[int], *, max_vectors: int = 100, tol: float = 0.03,
                     seed: int = 0, min_vectors: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hutchinson's estimator per member: trace ``[P]`` (mean of ``v^T H v`` over Rademacher vectors), its
    standard error ``[P]`` (sample standard deviation of ``v^T H v`` / sqrt(vectors); NaN after one
    vector) and vectors used ``[P]``. Member ``p`` draws its vectors from generator ``(seed,
    model_ids[p])`` and stops once it has used ``min_vectors`` and the standard error is at most ``tol``
    times the trace's magnitude, or after ``max_vectors`` (the standard error says how close it got).

    The stopping rule bounds the estimate's own uncertainty; PyHessian's rule (stop when the running
    mean changes by less than ``tol``) can stop by chance after a few vectors, with errors of several
    percent at ``tol = 1e-3``."""
    P, n = hvp.n_members, hvp.flat.shape[1]
    gens = [member_generator(seed, m, STREAM_TRACE) for m in model_ids]
    total = torch.zeros(P, dtype=torch.float64)
    total_sq = torch.zeros(P, dtype=torch.float64)
    mean = torch.zeros(P, dtype=torch.float64)
    se = torch.full((P,), float("nan"), dtype=torch.float64)
    used = np.zeros(P, dtype=np.int64)
    state = _ActiveSet(hvp)
    for k in range(max_vectors):
        # every active member draws its next vector (inactive ones keep their generator state untouched)
        v = torch.zeros(P, n, dtype=hvp.flat.dtype)
        for p in np.flatnonzero(state.active):
            if hvp.model.padded:  # drawn at the member's own size, zero in its padding
                index = hvp.model.member_index[p]
                v[p, index] = torch.randint(0, 2, (len(index),), generator=gens[p]).to(v.dtype) * 2 - 1
            else:
                v[p] = torch.randint(0, 2, (n,), generator=gens[p]).to(v.dtype) * 2 - 1
        rows, live, hv = state.apply(v)
        vhv = _rowdot(v[rows], hv)
        upd = rows[live]
        count = k + 1
        total[upd] += vhv[live]
        total_sq[upd] += vhv[live] ** 2
        mean[upd] = total[upd] / count
        if count > 1:
            var = (total_sq[upd] - count * mean[upd] ** 2).clamp_min(0.0) / (count - 1)
            se[upd] = (var / count).sqrt()
        used[upd.numpy()] = count
        converged = (count >= min(min_vectors, max_vectors)) & (se[upd] <= tol * mean[upd].abs())
        converged |= ~torch.isfinite(mean[upd])
        state.active[upd[converged].numpy()] = False
        if not state.active.any():
            break
    return mean.numpy(), se.numpy(), used


def group_size(layout: ParamLayout, n_samples: int, n_members: int, group_bytes: int) -> int:
    """Members per HVP group so that the group's activations (``n_samples x widest layer x 4 bytes`` a
    member) stay within ``group_bytes``; ``group_bytes <= 0`` keeps the whole population together.

    On a CPU a population whose intermediates outgrow the cache is *slower* than smaller groups (the
    same arithmetic, but streamed from memory): with 512 samples, one thread, MLPs of width 16 / 64 / 256
    are fastest in groups of about 8-16 / 4 / 1 (``docs/LANDSCAPE.md``, "Cost"), i.e. about 512 KiB.
    """
    if group_bytes <= 0 or n_members <= 1:
        return max(n_members, 1)
    widest = max((e.shape[0] for e in layout.entries if len(e.shape) >= 2), default=1)
    per_member = max(int(n_samples) * int(widest) * 4, 1)
    return int(min(n_members, max(1, group_bytes // per_member)))


def hessian_metrics(model: PopulationModel, layout: ParamLayout, flat: torch.Tensor, x: torch.Tensor,
                    y: torch.Tensor, model_ids: Sequence[int], *, iters: int, tol: float, trace_vectors: int,
                    trace_tol: float, seed: int, batch_size: int = 1024, group_bytes: int = 0,
                    trace_min_vectors: int = 10) -> dict[str, np.ndarray]:
    """Top eigenvalue, trace, the trace's standard error (``trace_se``) and their iteration counts ``[P]``
    of every member on ``(x, y)``.

    The members are processed in groups of :func:`group_size` (speed only: each member's vectors come
    from its own generator, so its values do not depend on the grouping)."""
    ids = [int(i) for i in model_ids]
    size = group_size(layout, min(len(y), int(batch_size)), len(ids), group_bytes)
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(ids), size):
        stop = start + size
        hvp = PopulationHVP(_rows(model, slice(start, stop)), layout, flat[start:stop], x, y, batch_size)
        eig, n_power = top_eigenvalue(hvp, ids[start:stop], iters=iters, tol=tol, seed=seed)
        trace, trace_se, n_vec = hutchinson_trace(hvp, ids[start:stop], max_vectors=trace_vectors, tol=trace_tol,
                                                  seed=seed, min_vectors=trace_min_vectors)
        parts.append({"top_eig": eig, "trace": trace, "trace_se": trace_se, "power_iters": n_power,
                      "trace_vectors": n_vec})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
