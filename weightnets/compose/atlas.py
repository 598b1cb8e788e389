"""aTLAS (Zhang et al., NeurIPS 2024, "Knowledge Composition using Task Vectors with Learned Anisotropic
Scaling"): one learned coefficient per (task vector, parameter block), initialised at 0, so training
starts from the base model exactly (§3, Eq. 3).

Objectives (the paper's uses, §4):

* ``"ce"`` — few-shot: cross-entropy on ``k ∈ {1, 2, 4, 8, 16}`` labelled examples per class per task
  (data: ``CompositionDataModule(shots=k)``; §4.3);
* ``"entropy"`` / ``"pseudo_label"`` — test-time adaptation on unlabelled inputs (entropy, or
  cross-entropy against confident pseudo-labels; ``unlabelled="test"`` is transductive; §4.4);
* ``"negation"`` — task negation: the target tasks' predictions are pushed to chance while a control
  task keeps its accuracy (``CompositionDataModule(negate=True)``; the goal is a control accuracy of
  at least 95% of the base's; §4.1).

The reference implementation composes every parameter tensor in a Python loop with every task vector
resident as modules; here the composition is one fused :func:`kernels.compose` over flat vectors with a
per-block coefficient gradient (``scripts/bench_compose.py`` times both).
"""

from __future__ import annotations

from typing import Literal

import kernels
from weightnets.compose.coefficients import CoefficientComposer, Objective


class ATLAS(CoefficientComposer):
    """Anisotropic (per-block) task-vector scaling, coefficients initialised at 0 (= the base)."""

    def __init__(self, objective: Objective = "ce", granularity: Literal["task", "layer", "tensor"] = "tensor",
                 lr: float = 0.05, init: float = 0.0, confidence: float = 0.9, control_weight: float = 1.0,
                 clamp: tuple[float, float] | None = None, select_on_validation: bool = False,
                 backend: kernels.Backend = "auto") -> None:
        super().__init__(granularity=granularity, objective=objective, init=init, lr=lr, confidence=confidence,
                         control_weight=control_weight, clamp=clamp, select_on_validation=select_on_validation,
                         backend=backend)
