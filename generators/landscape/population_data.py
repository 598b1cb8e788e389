"""Inputs every landscape metric shares: fixed sample sets, per-model seeds, stacked stored weights.

Sample sets depend only on the task and the settings (never on which models are processed together),
and every random draw of a model comes from a generator seeded by ``(seed, model_id, stream)``, so a
model's values are the same whether it is computed in a population of 64 or alone.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from generators.population import PopulationModel, loss_and_correct
from kernels.layout import ParamLayout
from zoo.store import Zoo
from zoo.tasks import TaskData

# streams of per-model random numbers
STREAM_POWER, STREAM_TRACE, STREAM_CURVE_T = 1, 2, 3


def fixed_indices(n_available: int, n: int, rule: str, seed: int) -> np.ndarray:
    """Sorted indices ``[min(n, n_available)]`` into a split: all of them when ``n`` is 0 or at least
    ``n_available``; else the first ``n`` (``rule="first"``) or a seeded random subset (``"random"``)."""
    if n <= 0 or n >= n_available:
        return np.arange(n_available, dtype=np.int64)
    if rule == "first":
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_available, size=n, replace=False)).astype(np.int64)


def fixed_batch(task: TaskData, split: str, n: int, rule: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [m, *input_shape], y [m])``: the samples :func:`fixed_indices` picks from ``split``."""
    x, y = task.split(split)
    idx = torch.from_numpy(fixed_indices(len(y), n, rule, seed))
    return x[idx], y[idx]


def member_generator(seed: int, key: int | Sequence[int], stream: int) -> torch.Generator:
    """A torch generator for the random draws of one kind (``stream``) of one model (``key`` = its id)
    or one pair of models (``key = (id_a, id_b)``)."""
    ids = [int(k) for k in key] if isinstance(key, (tuple, list)) else [int(key)]
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *ids, int(stream)]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def stored_weights(z: Zoo, ids: Sequence[int], checkpoint: int, arch_keys: Sequence[str]) -> list[torch.Tensor]:
    """Each model's stored flat weights ``[n_params_j]`` at checkpoint index ``checkpoint``, in the
    order of ``ids`` (``arch_keys``: their architecture keys; read one architecture at a time)."""
    keys = [str(k) for k in arch_keys]
    out: list[torch.Tensor | None] = [None] * len(ids)
    for key in dict.fromkeys(keys):
        rows = [r for r, k in enumerate(keys) if k == key]
        for r, w in zip(rows, z.weights([int(ids[r]) for r in rows], checkpoint)):
            out[r] = w
    return out  # type: ignore[return-value]


def population_of(z: Zoo, ids: Sequence[int], checkpoint: int, arch_keys: Sequence[str] | None = None
                  ) -> tuple[PopulationModel, ParamLayout, torch.Tensor]:
    """The population function of ``ids``, its layout and their stored weights ``[len(ids), n_params]``
    at checkpoint index ``checkpoint``. With ``arch_keys`` (the models' architecture keys), models of
    one architecture family with different widths are zero-padded to the widest
    (:mod:`generators.padding`; the model's unit masks keep every member's function, gradients and
    Hessian its own); without, the models must share one architecture."""
    keys = [str(k) for k in arch_keys] if arch_keys is not None else []
    if len(set(keys)) <= 1:
        flat = z.weights(list(ids), checkpoint)
        model = PopulationModel([z.empty_model(int(ids[0]))])
        return model, model.layout, flat
    modules = {key: z.empty_model(int(ids[keys.index(key)])) for key in dict.fromkeys(keys)}
    model = PopulationModel([modules[k] for k in keys], stored_weights(z, ids, checkpoint, keys))
    return model, model.layout, model.flat_params


def cross_entropy_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over members of the mean cross-entropy: ``logits [P, B, C]``, ``y [B]`` -> scalar.

    Members are independent, so its gradient and Hessian w.r.t. the stacked parameters are every
    member's own (the Hessian is block diagonal)."""
    p, b, c = logits.shape
    return torch.nn.functional.cross_entropy(logits.reshape(p * b, c), y.repeat(p), reduction="sum") / b


def loss_and_errors(model: PopulationModel, layout: ParamLayout, flat: torch.Tensor, x: torch.Tensor,
                    y: torch.Tensor, batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy ``[P]`` and error rate ``[P]`` (fraction misclassified) of weights
    ``flat [P, n_params]`` on ``(x, y)``."""
    params = layout.unflatten(flat)
    loss = torch.zeros(flat.shape[0], dtype=torch.float64)
    wrong = torch.zeros(flat.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for i in range(0, len(y), batch):
            yb = y[i:i + batch]
            batch_loss, correct = loss_and_correct(model.logits(params, x[i:i + batch], shared=True), yb)
            loss += batch_loss.double()
            wrong += (len(yb) - correct).double()
    return (loss / len(y)).float(), (wrong / len(y)).float()
