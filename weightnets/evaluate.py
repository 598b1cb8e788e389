"""Accuracy and loss of many weight vectors of one architecture on one task, in batched passes.

Every learner that produces weights (composition, generators) is judged by the models those weights
make, not by a distance in weight space. :func:`evaluate_weights` runs ``P`` flat weight vectors on a
task's examples with :func:`kernels.population_forward` (one batched forward for all ``P`` models per
chunk of examples), so evaluating 100 samples costs about as much as a few single models.

:func:`validation_split` is the one place where a *validation* part of a task is defined: a seeded,
stratified fraction of the task's **training** split. Selections (λ of task arithmetic, best-of-N
samples, checkpoints) use it, never the test split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import kernels
from zoo import Zoo, ZooError, build_architecture
from zoo.tasks import TaskData

Split = Literal["train", "val", "test"]

#: Fraction of a task's training examples held out as its validation split (stratified, seed 0).
VAL_FRACTION = 0.2


@dataclass(frozen=True)
class Evaluation:
    """Per-model results: ``acc [P]`` (fraction correct, float64) and ``loss [P]`` (mean cross-entropy,
    nats, float64). Non-finite weights give NaN for both, never a chance-level number."""

    acc: np.ndarray
    loss: np.ndarray

    def __len__(self) -> int:
        return len(self.acc)


def validation_split(task: TaskData, fraction: float = VAL_FRACTION, seed: int = 0
                     ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``((x_fit, y_fit), (x_val, y_val))``: the task's training split cut into a part to fit on and a
    held-out validation part of about ``fraction`` of each class (at least one example per class that
    has two or more). Deterministic in ``seed``. Raises ``ValueError`` for a fraction outside (0, 1)."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    x, y = task.x_train, task.y_train
    gen = np.random.default_rng(seed)
    val = np.zeros(len(y), dtype=bool)
    labels = y.numpy()
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        k = max(1, int(round(fraction * len(idx))))
        val[gen.choice(idx, size=k, replace=False)] = True
    keep = torch.from_numpy(~val)
    held = torch.from_numpy(val)
    return (x[keep], y[keep]), (x[held], y[held])


def task_examples(task: TaskData, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of ``split``: ``train`` (the whole training split), ``val`` (:func:`validation_split`'s
    held-out part) or ``test``."""
    if split == "val":
        return validation_split(task)[1]
    if split in ("train", "test"):
        return task.split(split)
    raise ValueError(f"unknown split {split!r}; choose from ['train', 'val', 'test']")


def architecture_module(z: Zoo, arch_key: str) -> nn.Module:
    """An ``nn.Module`` of the stored architecture ``arch_key`` (its own weights are not used)."""
    if arch_key not in z.architectures:
        raise ZooError(f"{z.path}: no architecture {arch_key!r} (has {sorted(z.architectures)})")
    rec = z.architectures[arch_key]
    if rec.get("generic"):
        raise ZooError(f"{z.path}: architecture {arch_key!r} was imported with a generic layout and cannot be "
                       "run; no registered architecture matches it")
    return build_architecture(rec["name"], rec["input_shape"], rec["n_classes"], rec["config"])


@torch.no_grad()
def evaluate_weights(flat: torch.Tensor, arch: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                     models_per_pass: int = 64, examples_per_pass: int = 2048,
                     backend: kernels.Backend = "auto") -> Evaluation:
    """Accuracy and mean cross-entropy of each of ``P`` weight vectors on ``(x, y)``.

    Args:
        flat: ``[P, n_params]`` float32 weights in ``arch``'s parameter layout.
        arch: the architecture as an ``nn.Module`` (e.g. :func:`architecture_module`).
        x: ``[n, *input_shape]`` float32 examples; y: ``[n]`` int64 labels.
        models_per_pass, examples_per_pass: chunk sizes (memory only; results do not depend on them).
        backend: :func:`kernels.population_forward`'s backend.

    Returns:
        :class:`Evaluation` with ``acc [P]`` and ``loss [P]``. A model with any non-finite weight gets
        NaN (so a diverged or damaged vector never reads as chance-level accuracy).

    Raises:
        ValueError: shapes that do not fit (``flat`` not 2-D, ``x``/``y`` lengths differ, no examples).
        kernels.LayoutMismatchError: ``flat``'s width is not the architecture's parameter count.
    """
    if flat.dim() != 2:
        raise ValueError(f"flat must be [models, params], got shape {list(flat.shape)}")
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"x and y must hold the same positive number of examples, got {len(x)} and {len(y)}")
    P = flat.shape[0]
    correct = torch.zeros(P, dtype=torch.float64)
    loss = torch.zeros(P, dtype=torch.float64)
    finite = torch.isfinite(flat).all(dim=1)
    safe = torch.where(finite[:, None], flat, torch.zeros((), dtype=flat.dtype))
    for m0 in range(0, P, models_per_pass):
        w = safe[m0:m0 + models_per_pass]
        for e0 in range(0, len(y), examples_per_pass):
            xb, yb = x[e0:e0 + examples_per_pass], y[e0:e0 + examples_per_pass]
            logits = kernels.population_forward(w, arch, xb, backend=backend).float()  # [p, b, classes]
            correct[m0:m0 + len(w)] += (logits.argmax(-1) == yb).sum(1).double()
            ce = F.cross_entropy(logits.permute(0, 2, 1), yb.expand(len(w), -1), reduction="none")
            loss[m0:m0 + len(w)] += ce.sum(1).double()
    n = float(len(y))
    acc = (correct / n).numpy()
    mean_loss = (loss / n).numpy()
    bad = ~finite.numpy()
    acc[bad] = np.nan
    mean_loss[bad] = np.nan
    return Evaluation(acc, mean_loss)


def evaluate_on_tasks(flat: torch.Tensor, arch: nn.Module, tasks: "list[TaskData]", split: Split = "test", *,
                      backend: kernels.Backend = "auto") -> Evaluation:
    """Accuracy and loss of ``P`` weight vectors on each of ``T`` tasks' ``split``: an
    :class:`Evaluation` whose ``acc`` and ``loss`` are ``[P, T]`` (NaN rows for non-finite weights).
    Each task is one batched :func:`evaluate_weights` pass over all ``P`` models."""
    if flat.dim() == 1:
        flat = flat[None]
    acc = np.empty((flat.shape[0], len(tasks)))
    loss = np.empty((flat.shape[0], len(tasks)))
    for t, task in enumerate(tasks):
        x, y = task_examples(task, split)
        ev = evaluate_weights(flat, arch, x, y, backend=backend)
        acc[:, t], loss[:, t] = ev.acc, ev.loss
    return Evaluation(acc, loss)


@torch.no_grad()
def predict_weights(flat: torch.Tensor, arch: nn.Module, x: torch.Tensor, *, models_per_pass: int = 64,
                    examples_per_pass: int = 2048, backend: kernels.Backend = "auto") -> torch.Tensor:
    """Predicted labels ``[P, n]`` int64 (argmax of the logits) of ``P`` weight vectors ``flat [P, n_params]``
    on examples ``x [n, *input_shape]``, in the batched passes of :func:`evaluate_weights`. Rows of models
    with non-finite weights are -1.

    Raises ``ValueError`` when ``flat`` is not 2-D or ``x`` holds no examples.
    """
    if flat.dim() != 2:
        raise ValueError(f"flat must be [models, params], got shape {list(flat.shape)}")
    if len(x) == 0:
        raise ValueError("x holds no examples")
    finite = torch.isfinite(flat).all(dim=1)
    safe = torch.where(finite[:, None], flat, torch.zeros((), dtype=flat.dtype))
    out = torch.empty(flat.shape[0], len(x), dtype=torch.long)
    for m0 in range(0, flat.shape[0], models_per_pass):
        w = safe[m0:m0 + models_per_pass]
        for e0 in range(0, len(x), examples_per_pass):
            logits = kernels.population_forward(w, arch, x[e0:e0 + examples_per_pass], backend=backend)
            out[m0:m0 + len(w), e0:e0 + examples_per_pass] = logits.argmax(-1)
    out[~finite] = -1
    return out
