"""The optimisers and learning-rate schedules a population can train with, by name.

Registries (the package-wide pattern ``register_x`` / ``get_x`` / ``x_names``):

* optimisers: an :class:`OptimizerRule` says which ``torch.optim`` class defines the semantics (the
  per-model reference loop, :func:`generators.population.train_single`, uses it; the vectorised update
  in :mod:`generators.population` reproduces it), whether weight decay is decoupled (AdamW) and whether
  the rule keeps a second moment (Adam, AdamW);
* schedules: ``factor(epoch, epochs, step_size, gamma)``, the multiplier of the base learning rate during
  ``epoch`` (0-based).

A spec names them in ``optimizer.name`` and ``schedule.name``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from kernels.registry import Registry
from zoo.errors import UnknownNameError


@dataclass(frozen=True)
class OptimizerRule:
    """What an optimiser name means: its ``torch.optim`` reference class and the traits of its update."""

    reference: type[torch.optim.Optimizer]
    second_moment: bool        # Adam-style (first and second moment, bias correction)
    decoupled_weight_decay: bool  # AdamW: decay the weights, not the gradient


_OPTIMIZERS: Registry[OptimizerRule] = Registry("optimiser", error=UnknownNameError)
register_optimizer = _OPTIMIZERS.register
get_optimizer = _OPTIMIZERS.get
optimizer_names = _OPTIMIZERS.names

register_optimizer("sgd")(OptimizerRule(torch.optim.SGD, second_moment=False, decoupled_weight_decay=False))
register_optimizer("adam")(OptimizerRule(torch.optim.Adam, second_moment=True, decoupled_weight_decay=False))
register_optimizer("adamw")(OptimizerRule(torch.optim.AdamW, second_moment=True, decoupled_weight_decay=True))

#: ``factor(epoch, epochs, step_size, gamma) -> float``
ScheduleFn = Callable[[int, int, int, float], float]
_SCHEDULES: Registry[ScheduleFn] = Registry("schedule", error=UnknownNameError)
register_schedule = _SCHEDULES.register
get_schedule = _SCHEDULES.get
schedule_names = _SCHEDULES.names


@register_schedule("constant")
def constant(epoch: int, epochs: int, step_size: int, gamma: float) -> float:
    """The base learning rate throughout."""
    return 1.0


@register_schedule("cosine")
def cosine(epoch: int, epochs: int, step_size: int, gamma: float) -> float:
    """Cosine annealing to 0 over the run (``torch.optim.lr_scheduler.CosineAnnealingLR``, stepped per epoch)."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


@register_schedule("step")
def step(epoch: int, epochs: int, step_size: int, gamma: float) -> float:
    """Multiply by ``gamma`` every ``step_size`` epochs (``torch.optim.lr_scheduler.StepLR``)."""
    return gamma ** (epoch // max(step_size, 1))
