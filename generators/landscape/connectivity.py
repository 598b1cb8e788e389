"""Mode connectivity of model pairs along a trained quadratic Bezier curve, and the straight-line barrier.

The curve between weights ``a`` and ``b`` with bend ``c`` is
``phi(t) = (1 - t)^2 a + 2 t (1 - t) c + t^2 b`` (Garipov et al. 2018); the endpoints stay fixed, the
bend starts at the midpoint ``(a + b) / 2`` (where the curve is the straight line) and is trained with
SGD on the loss at a random ``t ~ U(0, 1)`` per pair and step. All pairs of a population train at
once: the bends are a population of parameters ``[n_pairs, n_params]`` and the loss is the sum of the
pairs' own losses, so every bend gets exactly its own gradient.

Mode connectivity (Yang et al. 2021; PTMZ's ``compute_mc``): with ``L`` the loss (or error) at evenly
spaced ``t``, ``mc = (L(0) + L(1)) / 2 - L(t*)`` where ``t*`` maximises ``|L(t) - (L(0) + L(1)) / 2|``.
``mc < 0``: a barrier between the endpoints; ``mc > 0``: the curve is better than its ends.
The straight-line barrier (Frankle et al. 2020) is ``max_t L(t) - ((1 - t) L(0) + t L(1))`` on the
segment ``(1 - t) a + t b``: ``0`` when the segment is as good as linear interpolation of the ends.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from generators.landscape.population_data import (
    STREAM_CURVE_T,
    cross_entropy_sum,
    loss_and_errors,
    member_generator,
)
from generators.population import PopulationModel
from kernels.layout import ParamLayout


def mc_from_curve(values: np.ndarray) -> np.ndarray:
    """Mode connectivity of curves ``values [..., T]`` (first and last points are the endpoints): ``[...]``."""
    v = np.asarray(values, dtype=np.float64)
    ends = 0.5 * (v[..., 0] + v[..., -1])
    dev = v - ends[..., None]
    k = np.argmax(np.abs(dev), axis=-1)
    return ends - np.take_along_axis(v, k[..., None], axis=-1)[..., 0]


def linear_barrier(values: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Barrier ``max_t L(t) - ((1 - t) L(0) + t L(1))`` of curves ``values [..., T]`` at ``ts [T]``: ``[...]``."""
    v = np.asarray(values, dtype=np.float64)
    ts = np.asarray(ts, dtype=np.float64)
    interp = (1 - ts) * v[..., :1] + ts * v[..., -1:]
    return (v - interp).max(axis=-1)


def bezier(a: torch.Tensor, bend: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points ``[P, n_params]`` of the curves at ``t`` (a number or ``[P]``, one per pair)."""
    t = torch.as_tensor(t, dtype=a.dtype)
    if t.dim() == 1:
        t = t[:, None]
    return (1 - t) ** 2 * a + 2 * t * (1 - t) * bend + t ** 2 * b


def train_bends(model: PopulationModel, layout: ParamLayout, a: torch.Tensor, b: torch.Tensor, x: torch.Tensor,
                y: torch.Tensor, pairs: Sequence[tuple[int, int]], *, epochs: int, lr: float, momentum: float,
                weight_decay: float, batch_size: int, seed: int) -> torch.Tensor:
    """Trained bends ``[P, n_params]`` for the pairs with endpoints ``a``, ``b`` ``[P, n_params]`` on
    the training data ``(x, y)``. All pairs see the same mini-batches (order from ``seed``); pair
    ``(i, j)`` draws its ``t`` per step from its own generator ``(seed, (i, j))``."""
    bend = (0.5 * (a + b)).clone().requires_grad_(True)
    n = len(y)
    steps_per_epoch = math.ceil(n / batch_size)
    if epochs == 0 or n == 0:
        return bend.detach()
    t_all = torch.stack([torch.rand(epochs * steps_per_epoch, generator=member_generator(seed, pair, STREAM_CURVE_T))
                         for pair in pairs]).to(a.dtype)  # [P, steps]
    order = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.SGD([bend], lr=lr, momentum=momentum, weight_decay=weight_decay)
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            phi = bezier(a, bend, b, t_all[:, step])
            loss = cross_entropy_sum(model.logits(layout.unflatten(phi), x[idx], shared=True), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return bend.detach()


def curve_values(model: PopulationModel, layout: ParamLayout, a: torch.Tensor, bend: torch.Tensor, b: torch.Tensor,
                 x: torch.Tensor, y: torch.Tensor, n_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss and error ``[P, n_points]`` along the curves at ``ts = linspace(0, 1, n_points)``, and ``ts``."""
    ts = np.linspace(0.0, 1.0, n_points)
    loss = np.empty((a.shape[0], n_points), dtype=np.float64)
    err = np.empty_like(loss)
    for k, t in enumerate(ts):
        loss[:, k], err[:, k] = (v.numpy() for v in loss_and_errors(model, layout, bezier(a, bend, b, float(t)), x, y))
    return loss, err, ts
