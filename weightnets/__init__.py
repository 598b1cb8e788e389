"""weightnets: models that learn on weights (Lightning), built on :mod:`zoo` and :mod:`kernels` only.

* :mod:`weightnets.evaluate` — accuracy and loss of many weight vectors on a task in one batched pass.
* :mod:`weightnets.cli` — the LightningCLI behind ``weightzoo fit --config CFG``.
* :mod:`weightnets.data` — ``ZooDataModule``: a zoo as a LightningDataModule (targets, views, splits).
* :mod:`weightnets.metrics` — the shared torchmetrics (label_acc, subset_acc, map, kendall_tau, ...).
* :mod:`weightnets.probes` — ProbeX with tree experts, Dense, StatNN and NFN learners (docs/WEIGHTNETS.md).
* :mod:`weightnets.compose` — task-vector composition: merge methods, learned coefficients (AdaMerging,
  aTLAS), CMA-ES, weight matching, robust weight signatures (``docs/COMPOSE.md``).
* :mod:`weightnets.generative` — weight generation for tasks: a weight autoencoder and latent diffusion
  conditioned on the task (imported on demand: it pulls in diffusers).

``weightnets`` never imports :mod:`generators` (checked by import-linter).
"""

from __future__ import annotations

from weightnets.data import DataSpec, ZooDataModule
from weightnets.evaluate import Evaluation, evaluate_on_tasks, evaluate_weights, predict_weights, validation_split
from weightnets.probes import NFN, LayerProbe, ProbeX, StatNN, StatNNBoosting

__all__ = ["DataSpec", "Evaluation", "LayerProbe", "NFN", "ProbeX", "StatNN", "StatNNBoosting", "ZooDataModule",
           "evaluate_on_tasks", "evaluate_weights", "predict_weights", "validation_split"]
