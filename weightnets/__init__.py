"""weightnets: models that learn on weights (Lightning), built on :mod:`zoo` and :mod:`kernels` only.

* :mod:`weightnets.evaluate` — accuracy and loss of many weight vectors on a task in one batched pass.
* :mod:`weightnets.cli` — the LightningCLI behind ``weightzoo fit --config CFG``.
* :mod:`weightnets.compose` — task-vector composition: merge methods, learned coefficients (AdaMerging,
  aTLAS), CMA-ES, weight matching, robust weight signatures (``docs/COMPOSE.md``).

``weightnets`` never imports :mod:`generators` (checked by import-linter).
"""

from __future__ import annotations

from weightnets.evaluate import Evaluation, evaluate_on_tasks, evaluate_weights, validation_split

__all__ = ["Evaluation", "evaluate_on_tasks", "evaluate_weights", "validation_split"]
