"""AdaMerging (Yang et al., ICLR 2024, "AdaMerging: Adaptive Model Merging for Multi-Task Learning").

Task-wise AdaMerging learns one coefficient per task vector, layer-wise AdaMerging one per task vector
and layer, by minimising the Shannon entropy of the merged model's predictions on **unlabelled test
inputs** of every task (§3.2, Eq. 6–8). It is *transductive*: the coefficients are fitted on the very
inputs they are evaluated on (labels are never read). The paper initialises every coefficient at 0.3
(§4.1), clips them to [0, 1] and trains with Adam (lr 1e-3, 500 steps, on a CLIP ViT); those are the
defaults here, except the step count, which the caller sets (``weightzoo compose`` and the benchmark
stop at the step with the best validation accuracy, ``docs/COMPOSE.md``). Data: :class:`~weightnets.compose.data.CompositionDataModule` with
``unlabelled="test"``.
"""

from __future__ import annotations

from typing import Literal

import kernels
from weightnets.compose.coefficients import CoefficientComposer


class AdaMerging(CoefficientComposer):
    """Entropy-minimising merge coefficients, ``granularity="task"`` (task-wise) or ``"layer"``
    (layer-wise). See :class:`~weightnets.compose.coefficients.CoefficientComposer` for the mechanics."""

    def __init__(self, granularity: Literal["task", "layer"] = "layer", init: float = 0.3, lr: float = 1e-3,
                 clamp: tuple[float, float] | None = (0.0, 1.0), select_on_validation: bool = False,
                 backend: kernels.Backend = "auto") -> None:
        super().__init__(granularity=granularity, objective="entropy", init=init, lr=lr, clamp=clamp,
                         select_on_validation=select_on_validation, backend=backend)
