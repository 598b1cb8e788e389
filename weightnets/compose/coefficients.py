"""Learned composition coefficients: a LightningModule whose only trainable tensor is ``C [T, n_blocks]``.

The composed weights are ``θ(C) = θ_base + Σ_t C[t, block(i)] · τ_t[i]`` (:func:`kernels.compose`, one
fused pass with a per-block coefficient gradient), and the model runs through
``torch.func.functional_call`` on views of ``θ(C)``. The base weights and the task vectors are
*buffers* (not parameters, not saved in checkpoints: a checkpoint holds ``C`` only), and the
architecture's own parameters are never used, so there are no weight gradients and no optimiser state
for weights — the optimiser (Adam, ``torch.optim``) sees ``T · n_blocks`` numbers.

Granularities (:meth:`weightnets.compose.TaskVectors.blocks`): ``"task"`` (one coefficient per task
vector: task-wise AdaMerging), ``"layer"`` (one per task vector and layer: layer-wise AdaMerging),
``"tensor"`` (one per task vector and parameter tensor: aTLAS).

Objectives (``objective``), each averaged over the tasks of a batch with equal weight:

* ``"ce"`` — cross-entropy on labelled examples (aTLAS few-shot);
* ``"entropy"`` — Shannon entropy of the predictions on unlabelled inputs (AdaMerging §3.2; aTLAS
  test-time adaptation);
* ``"pseudo_label"`` — cross-entropy against the model's own predictions whose probability is at least
  ``confidence`` (confident pseudo-labels; recomputed every step, no gradient through the labels);
* ``"negation"`` — targets pushed to chance (cross-entropy against the uniform distribution, minimal
  exactly at uniform predictions) plus ``control_weight`` × cross-entropy on the control task.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule
from torchmetrics.classification import MulticlassAccuracy

import kernels
from weightnets.compose.taskset import CompositionProblem
from weightnets.evaluate import evaluate_on_tasks
from zoo import SpecError

Objective = Literal["ce", "entropy", "pseudo_label", "negation"]
OBJECTIVES = ("ce", "entropy", "pseudo_label", "negation")
GRANULARITIES = ("task", "layer", "tensor")


class _Frozen:
    """Holds the architecture module outside ``nn.Module`` registration: ``functional_call`` runs it with
    the composed weights instead of its own, which must be neither trained nor checkpointed."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval().requires_grad_(False)


def split_params(layout: kernels.ParamLayout, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name: view}`` of a flat vector ``[N]`` through one ``torch.split`` (its backward assembles the
    gradient with a single concatenation; slicing views one by one would allocate a zero ``[N]`` buffer
    per tensor in the backward pass)."""
    pieces = flat.split([e.numel for e in layout])
    return {e.name: p.view(e.shape) for e, p in zip(layout, pieces)}


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of ``softmax(logits)`` over the rows of ``logits [n, C]``."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1).mean()


def uniform_cross_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``softmax(logits)`` against the uniform distribution: ``−mean_c log p_c``; its
    minimum ``log C`` is reached exactly at uniform predictions (chance)."""
    return -F.log_softmax(logits, dim=-1).mean(-1).mean()


def pseudo_label_loss(logits: torch.Tensor, confidence: float) -> torch.Tensor:
    """Cross-entropy against the argmax of the (detached) predictions whose probability is at least
    ``confidence``; 0 (with a graph) when none is."""
    with torch.no_grad():
        conf, label = F.softmax(logits, dim=-1).max(-1)
        keep = conf >= confidence
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], label[keep])


class CoefficientComposer(LightningModule):
    """Learn ``C [T, n_blocks]`` of ``θ_base + Σ_t C[t, block] τ_t`` (module docstring).

    Args:
        granularity: ``"task"``, ``"layer"`` or ``"tensor"``.
        objective: ``"ce"``, ``"entropy"``, ``"pseudo_label"`` or ``"negation"``.
        init: initial value of every coefficient (aTLAS 0 = the base model; AdaMerging 0.3).
        lr: Adam learning rate. confidence: pseudo-label threshold. control_weight: negation's control
            term weight.
        select_on_validation: when True, ``weightzoo fit`` keeps the epoch with the best ``val/score``
            (mean validation accuracy; control minus target accuracy for negation). Off by default:
            few-shot and test-time runs should not choose epochs with the labelled validation split.
        clamp: optional ``[low, high]`` range the coefficients are clipped to after every step.
        backend: :func:`kernels.compose` backend.

    The problem (base, task vectors, architecture, tasks) comes from :meth:`bind`, called by
    :meth:`setup` with the trainer's :class:`~weightnets.compose.data.CompositionDataModule`, or directly.
    """

    monitor_mode = "max"

    def __init__(self, granularity: Literal["task", "layer", "tensor"] = "tensor", objective: Objective = "ce",
                 init: float = 0.0, lr: float = 0.05, confidence: float = 0.9, control_weight: float = 1.0,
                 select_on_validation: bool = False, clamp: tuple[float, float] | None = None,
                 backend: kernels.Backend = "auto") -> None:
        super().__init__()
        if granularity not in GRANULARITIES:
            raise SpecError(f"granularity: unknown value {granularity!r}; choose from {list(GRANULARITIES)}")
        if objective not in OBJECTIVES:
            raise SpecError(f"objective: unknown value {objective!r}; choose from {list(OBJECTIVES)}")
        if not 0.0 < float(confidence) <= 1.0:
            raise SpecError(f"confidence must be in (0, 1], got {confidence}")
        self.save_hyperparameters()
        # plain attributes too: LightningCLI subclasses do not always pass every parent argument to hparams
        self.granularity, self.objective, self.init, self.lr = granularity, objective, float(init), float(lr)
        self.confidence, self.control_weight, self.clamp, self.backend = (float(confidence), float(control_weight),
                                                                         clamp, backend)
        self.monitor = "val/score" if select_on_validation else None
        self.coeffs: nn.Parameter | None = None
        self._arch: _Frozen | None = None
        self.negate = objective == "negation"
        self.child_test_acc: np.ndarray | None = None
        self.base_control_acc: float | None = None

    # ------------------------------------------------------------------ binding the problem
    def bind(self, problem: CompositionProblem) -> "CoefficientComposer":
        """Take base and task vectors as buffers, the architecture, and create ``C`` (``init``)."""
        v = problem.vectors
        self.problem = problem
        self.register_buffer("base", v.base.detach().clone(), persistent=False)
        self.register_buffer("stack", v.stack.detach().clone(), persistent=False)
        self.spec = v.blocks(self.granularity)
        self.layout = v.layout
        self._arch = _Frozen(problem.arch)
        self.n_classes = int(problem.tasks[0].n_classes)
        self.coeffs = nn.Parameter(torch.full((v.n_tasks, self.spec.n_blocks), float(self.init),
                                              dtype=torch.float64 if v.base.dtype == torch.float64 else torch.float32))
        n_eval = v.n_tasks + (1 if self.negate else 0)
        self.val_acc = nn.ModuleList(MulticlassAccuracy(self.n_classes, average="micro") for _ in range(n_eval))
        self.test_acc = nn.ModuleList(MulticlassAccuracy(self.n_classes, average="micro") for _ in range(n_eval))
        return self

    def setup(self, stage: str) -> None:
        if self.coeffs is None:
            dm = self.trainer.datamodule
            problem = dm.prepare()
            if bool(getattr(dm, "negate", False)) != self.negate:
                raise SpecError(f"objective {self.objective!r} needs a data module with negate="
                                f"{self.negate} (got negate={getattr(dm, 'negate', False)})")
            self.bind(problem)

    # ------------------------------------------------------------------ the composed model
    def composed(self, coeffs: torch.Tensor | None = None) -> torch.Tensor:
        """``θ(C) [N]`` (``coeffs`` defaults to the module's ``C``)."""
        c = self.coeffs if coeffs is None else coeffs
        return kernels.compose(self.base, self.stack, c, self.spec, backend=self.backend)

    def logits(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[n, C]`` of the composed model (or of flat ``weights [N]``) on ``x``."""
        w = self.composed() if weights is None else weights
        params = split_params(self.layout, w)
        return torch.func.functional_call(self._arch.module, params, (x.to(w.dtype),))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)

    # ------------------------------------------------------------------ training
    def objective_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The objective on one combined batch ``{"task0": (x, y), ..., ["control": (x, y)]}``: one composition,
        one forward of the concatenated inputs, per-task losses averaged."""
        names = sorted(k for k in batch if k.startswith("task"))
        parts = [batch[k] for k in names] + ([batch["control"]] if "control" in batch else [])
        sizes = [len(p[0]) for p in parts]
        out = self.logits(torch.cat([p[0] for p in parts]))
        pieces = torch.split(out, sizes)
        obj = self.objective
        losses = []
        for (x, y), logit in zip(parts[:len(names)], pieces):
            if obj == "ce":
                if bool((y < 0).any()):
                    raise SpecError("objective 'ce' needs labelled examples; the data module serves unlabelled inputs "
                                    "(set shots=k, or use objective 'entropy'/'pseudo_label')")
                losses.append(F.cross_entropy(logit, y))
            elif obj == "entropy":
                losses.append(entropy(logit))
            elif obj == "pseudo_label":
                losses.append(pseudo_label_loss(logit, float(self.confidence)))
            else:
                losses.append(uniform_cross_entropy(logit))
        loss = torch.stack(losses).mean()
        if obj == "negation":
            if "control" not in batch:
                raise SpecError("objective 'negation' needs control examples (a data module with negate=True)")
            loss = loss + float(self.control_weight) * F.cross_entropy(pieces[-1], parts[-1][1])
        return loss

    def training_step(self, batch, batch_idx):
        loss = self.objective_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=1)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.clamp is not None:
            lo, hi = self.clamp
            with torch.no_grad():
                self.coeffs.clamp_(float(lo), float(hi))

    def configure_optimizers(self):
        return torch.optim.Adam([self.coeffs], lr=float(self.lr))

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, metrics: nn.ModuleList, batch, dataloader_idx: int) -> None:
        x, y = batch
        metrics[dataloader_idx].update(self.logits(x).argmax(-1), y)

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._eval_step(self.val_acc, batch, dataloader_idx)

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        self._eval_step(self.test_acc, batch, dataloader_idx)

    def _summarise(self, metrics: nn.ModuleList, prefix: str) -> dict[str, float]:
        accs = [float(m.compute()) for m in metrics]
        for m in metrics:
            m.reset()
        T = self.stack.shape[0]
        out = {f"{prefix}/acc_{t}": a for t, a in enumerate(accs[:T])}
        out[f"{prefix}/acc"] = float(np.mean(accs[:T]))
        if self.negate:
            out[f"{prefix}/control_acc"] = accs[T]
            out[f"{prefix}/score"] = accs[T] - out[f"{prefix}/acc"]
        else:
            out[f"{prefix}/score"] = out[f"{prefix}/acc"]
        return out

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self._summarise(self.val_acc, "val"), prog_bar=False, add_dataloader_idx=False)

    def on_test_epoch_end(self) -> None:
        out = self._summarise(self.test_acc, "test")
        T = self.stack.shape[0]
        if self.negate:
            if self.base_control_acc is None:
                control = self.trainer.datamodule.control_task
                self.base_control_acc = float(evaluate_on_tasks(self.base[None].float(), self._arch.module,
                                                                [control], "test").acc[0, 0])
            out["test/control_retained"] = out["test/control_acc"] / self.base_control_acc
            out["test/chance"] = 1.0 / self.n_classes
        else:
            if self.child_test_acc is None:
                children = (self.base[None] + self.stack).float()
                self.child_test_acc = evaluate_on_tasks(children, self._arch.module, self.problem.tasks,
                                                        "test").acc.diagonal().copy()
            norm = [out[f"test/acc_{t}"] / self.child_test_acc[t] for t in range(T)]
            for t, v in enumerate(norm):
                out[f"test/normalized_acc_{t}"] = v
            out["test/normalized_acc"] = float(np.mean(norm))
        self.log_dict(out, add_dataloader_idx=False)

    # ------------------------------------------------------------------ results
    def coefficients(self) -> dict[str, Any]:
        """``{"granularity", "blocks": [names], "values": [[C[t, k]]]}`` (JSON-able)."""
        return {"granularity": self.granularity, "blocks": list(self.spec.names),
                "values": [[float(v) for v in row] for row in self.coeffs.detach().cpu().tolist()]}

    def n_trainable(self) -> int:
        """Number of numbers the optimiser updates (``T · n_blocks``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class BestOnValidation(Callback):
    """Keep, in memory, the coefficients of the validation check with the highest ``val/score`` (the
    state before training counts as a check); restore them when fitting ends. No files are written.
    Attributes after fitting: ``best_score``, ``best_step`` (optimiser steps taken), ``history``
    (``[(step, score)]``)."""

    def __init__(self) -> None:
        self.best_score = -math.inf
        self.best_step = 0
        self.best: torch.Tensor | None = None
        self.history: list[tuple[int, float]] = []

    def record(self, module: "CoefficientComposer", step: int, score: float) -> None:
        self.history.append((int(step), float(score)))
        if score > self.best_score:
            self.best_score, self.best_step = float(score), int(step)
            self.best = module.coeffs.detach().clone()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        score = trainer.callback_metrics.get("val/score")
        if score is not None:
            self.record(pl_module, trainer.global_step, float(score))

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.best is not None:
            with torch.no_grad():
                pl_module.coeffs.copy_(self.best)
