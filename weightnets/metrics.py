"""The metrics every weight-space learner reports, as torchmetrics objects (accumulated over batches).

================  ===========================================================================  ============
kind              metrics (logged as ``val/<name>``, ``test/<name>``)                          selection
================  ===========================================================================  ============
``multilabel``    ``label_acc``: accuracy over all (model, class) cells at threshold 0.5        ``label_acc``
                  (ProbeX's metric; torchmetrics ``MultilabelAccuracy``, micro average);
                  ``subset_acc``: the whole class set right (``MultilabelExactMatch``);
                  ``map``: mean over classes of the average precision (``MultilabelAveragePrecision``)
``multiclass``    ``acc`` (``MulticlassAccuracy``, micro), ``balanced_acc`` (macro: mean recall)  ``acc``
``regression``    ``kendall_tau`` (``KendallRankCorrCoef``, τ-b), ``r2`` (``R2Score``), ``mae``   ``kendall_tau``
                  (``MeanAbsoluteError``), on the target's own scale
(model trees)     ``route_acc``: the router's accuracy in assigning models to their tree
================  ===========================================================================  ============

Selections (best epoch, best layer) use the *selection* metric on the validation split only.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MultilabelAccuracy,
    MultilabelAveragePrecision,
    MultilabelExactMatch,
)
from torchmetrics.regression import KendallRankCorrCoef, MeanAbsoluteError, R2Score

from zoo import UnknownNameError

KINDS = ("multilabel", "multiclass", "regression")
#: The metric each kind of target is selected on (always "higher is better").
SELECTION = {"multilabel": "label_acc", "multiclass": "acc", "regression": "kendall_tau"}


def task_metrics(kind: str, n_outputs: int) -> MetricCollection:
    """The metrics of one target kind with ``n_outputs`` outputs (classes, labels or regressed values).

    Inputs to ``update(preds, target)``: multi-label ``preds [N, C]`` probabilities and ``target [N, C]``
    0/1; multi-class ``preds [N, C]`` probabilities and ``target [N]`` int64; regression ``preds`` and
    ``target`` ``[N]`` (or ``[N, k]``) float on the target's scale.

    Raises:
        zoo.UnknownNameError: an unknown kind.
    """
    if kind == "multilabel":
        return MetricCollection({
            "label_acc": MultilabelAccuracy(n_outputs, threshold=0.5, average="micro"),
            "subset_acc": MultilabelExactMatch(n_outputs, threshold=0.5),
            "map": MultilabelAveragePrecision(n_outputs, average="macro"),
        })
    if kind == "multiclass":
        return MetricCollection({
            "acc": MulticlassAccuracy(n_outputs, average="micro"),
            "balanced_acc": MulticlassAccuracy(n_outputs, average="macro"),
        })
    if kind == "regression":
        k = int(n_outputs)
        return MetricCollection({
            "kendall_tau": KendallRankCorrCoef(variant="b", num_outputs=k),
            "r2": R2Score(multioutput="uniform_average") if k > 1 else R2Score(),
            "mae": MeanAbsoluteError(),
        })
    raise UnknownNameError(f"unknown target kind {kind!r}; choose from {list(KINDS)}")


def route_accuracy(n_groups: int) -> Metric | None:
    """Accuracy of assigning models to one of ``n_groups`` trees (None for a single tree: nothing to route)."""
    return MulticlassAccuracy(int(n_groups), average="micro") if n_groups > 1 else None


def scalar(value: torch.Tensor) -> torch.Tensor:
    """A metric value as one number (the mean over outputs of a multi-output metric)."""
    return value.float().mean() if value.numel() > 1 else value.float().reshape(())
