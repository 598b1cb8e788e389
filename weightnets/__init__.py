"""weightnets: models that learn on weights (Lightning), built on :mod:`zoo` and :mod:`kernels` only.

* :mod:`weightnets.evaluate` — accuracy and loss of many weight vectors on a task in one batched pass.
* :mod:`weightnets.cli` — the LightningCLI behind ``weightzoo fit --config CFG``.
* :mod:`weightnets.generative` — weight generation for tasks: a weight autoencoder and latent diffusion
  conditioned on the task (imported on demand: it pulls in diffusers).

``weightnets`` never imports :mod:`generators` (checked by import-linter).
"""

from __future__ import annotations

from weightnets.evaluate import (
    Evaluation,
    evaluate_weights,
    predict_weights,
    validation_split,
)

__all__ = ["Evaluation", "evaluate_weights", "predict_weights", "validation_split"]
