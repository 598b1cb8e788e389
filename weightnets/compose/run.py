"""Run one composition method on a problem and evaluate the composed model: what ``weightzoo compose``
and ``scripts/bench_compose.py`` call.

Composers (:func:`composer_names`) are the merge methods of :mod:`weightnets.compose.methods` (their
``tune`` options — λ, and the density or drop probability — chosen on the selection data) and the
learned ones:

==================== ============================================================================
``adamerging_task``  task-wise AdaMerging: entropy on unlabelled test inputs (transductive)
``adamerging_layer`` layer-wise AdaMerging (same data)
``atlas``            aTLAS few-shot: cross-entropy on ``shots`` labelled examples per class per task
``atlas_tta``        aTLAS test-time adaptation: entropy on unlabelled test inputs (transductive)
``atlas_pseudo``     aTLAS test-time adaptation with confident pseudo-labels (transductive)
``atlas_negation``   aTLAS task negation: the tasks to chance, the base's own task as control
``cma_task``         CMA-ES over task-wise coefficients, cross-entropy on the selection data
``cma_layer``        CMA-ES over layer-wise coefficients
==================== ============================================================================

**Selection data** (never the test split): with ``shots=k``, ``k`` labelled examples per class per task
from the fitting part of the training split; otherwise the validation split
(:func:`weightnets.evaluate.validation_split`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

import kernels
from weightnets.compose.data import CompositionDataModule, few_shot
from weightnets.compose.methods import (
    get_method,
    merged_task_vector,
    method_names,
    resolve,
    scaled_models,
)
from weightnets.compose.taskset import CompositionError, CompositionProblem, task_label
from weightnets.evaluate import evaluate_on_tasks, task_examples
from weightnets.interrupt import interruptible
from zoo import UnknownNameError

#: λ grid for merge methods (selected on the selection data).
SCALES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0)
#: TIES densities and DARE drop probabilities tried (with every λ).
DENSITIES = (0.1, 0.2, 0.3, 0.5, 0.7)
DROP_PROBABILITIES = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class ComposeOptions:
    """Settings shared by the composers: ``shots`` (labelled examples per class per task, or None),
    ``seed`` (few-shot draw, DARE mask, CMA-ES, shuffling), ``steps``/``lr``/``batch_size`` of the
    learned coefficients and ``select_every`` (score the validation split every that many steps and keep
    the best; ``None``: keep the last step), ``generations`` of CMA-ES, the grids of the merge methods, and per-method
    overrides (``method_options``, e.g. ``{"aggregation": "sum"}``)."""

    shots: int | None = None
    seed: int = 0
    steps: int = 300
    select_every: int | None = 20
    lr: float | None = None
    batch_size: int = 128
    generations: int = 30
    scales: tuple[float, ...] = SCALES
    densities: tuple[float, ...] = DENSITIES
    drop_probabilities: tuple[float, ...] = DROP_PROBABILITIES
    method_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "generations": self.generations,
                    "shots": self.shots, "select_every": self.select_every}
        for name, value in positive.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise CompositionError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if self.lr is not None and not (math.isfinite(float(self.lr)) and float(self.lr) > 0):
            raise CompositionError(f"--lr must be a finite number > 0, got {self.lr!r}")


@dataclass
class Composition:
    """A composed model ``flat [N]`` and how it was made: ``method``, ``coefficients`` (JSON-able: λ
    and options of a merge method, or the learned ``C``), ``selection`` (what was chosen on which data),
    ``data`` (what the coefficients were fitted on)."""

    method: str
    flat: torch.Tensor
    coefficients: dict[str, Any]
    selection: dict[str, Any] = field(default_factory=dict)
    data: str = ""


Composer = Callable[[CompositionProblem, ComposeOptions], Composition]
_COMPOSERS: dict[str, Composer] = {}


def register_composer(name: str) -> Callable[[Composer], Composer]:
    """Decorator registering ``fn(problem, options) -> Composition`` as composer ``name``."""

    def deco(fn: Composer) -> Composer:
        _COMPOSERS[name] = fn
        return fn

    return deco


def composer_names() -> list[str]:
    """Every composition method name: the merge methods and the learned ones, sorted."""
    return sorted(set(_COMPOSERS) | set(method_names()))


def get_composer(name: str) -> Composer:
    """The composer ``name`` (:class:`zoo.UnknownNameError` listing every name otherwise)."""
    if name in _COMPOSERS:
        return _COMPOSERS[name]
    if name in method_names():
        return lambda problem, options: tune_merge(problem, name, options)
    raise UnknownNameError(f"unknown composition method {name!r}; choose from {composer_names()}")


def selection_data(problem: CompositionProblem, options: ComposeOptions) -> tuple[list[tuple], str]:
    """One labelled ``(x, y)`` per task to select or fit on, and its description: ``shots`` examples per
    class (:func:`~weightnets.compose.data.few_shot`), else the validation split."""
    if options.shots is not None:
        data = [few_shot(task, options.shots, options.seed + t, name=task_label(problem, t))
                for t, task in enumerate(problem.tasks)]
        return data, f"{options.shots} labelled examples per class per task (training split, seed {options.seed})"
    return [task_examples(task, "val") for task in problem.tasks], "validation split (20% of each training split)"


def _mean_accuracy(flat: torch.Tensor, problem: CompositionProblem, data: list[tuple]) -> np.ndarray:
    from weightnets.evaluate import evaluate_weights

    accs = np.stack([evaluate_weights(flat, problem.arch, x, y).acc for x, y in data], axis=1)
    return accs.mean(1)


def tune_merge(problem: CompositionProblem, name: str, options: ComposeOptions) -> Composition:
    """Merge method ``name`` with its ``tune`` options (λ; density for TIES, drop probability for DARE)
    chosen by mean accuracy over the tasks on the selection data (first best in grid order)."""
    method = resolve(get_method(name), **options.method_options)
    data, described = selection_data(problem, options)
    v = problem.vectors
    grid_key = "density" if "density" in method.tune and method.sparsify == "magnitude" else (
        "p" if "p" in method.tune and method.sparsify == "random" else None)
    values = {"density": options.densities, "p": options.drop_probabilities}.get(grid_key, (None,))
    scales = options.scales if "scale" in method.tune else (method.scale,)
    best: tuple[float, dict[str, Any]] | None = None
    tried = []
    for value in values:
        m = resolve(method, **({grid_key: value} if grid_key else {}))
        tau = merged_task_vector(v.stack, m, blocks=v.layout, seed=options.seed)
        models = scaled_models(v.base, tau, scales)
        accs = _mean_accuracy(models, problem, data)
        for lam, acc in zip(scales, accs):
            tried.append({"scale": lam, **({grid_key: value} if grid_key else {}), "selection_acc": float(acc)})
            if best is None or acc > best[0]:
                best = (float(acc), {"scale": float(lam), **({grid_key: value} if grid_key else {})})
    chosen = resolve(method, **{k: v for k, v in best[1].items() if k != "scale"})
    tau = merged_task_vector(v.stack, chosen, blocks=v.layout, seed=options.seed)
    flat = scaled_models(v.base, tau, [best[1]["scale"]])[0]
    coeffs = {"scale": best[1]["scale"], "options": chosen.options(), "seed": options.seed}
    return Composition(name, flat, coeffs, {"chosen": best[1], "selection_acc": best[0], "on": described,
                                            "grid": tried}, described)


# ---------------------------------------------------------------------------- learned coefficients
def fit_coefficients(problem: CompositionProblem, module: Any, datamodule: CompositionDataModule, steps: int,
                     select_every: int | None = None) -> Any:
    """Train ``module`` (a :class:`~weightnets.compose.coefficients.CoefficientComposer`) for ``steps``
    optimiser steps with a plain Lightning ``Trainer`` (CPU, no logger, no checkpoint files).

    With ``select_every=k`` the validation split is scored before training and every ``k`` steps, and the
    coefficients of the best check (mean validation accuracy; control minus target accuracy for
    negation) are kept (:class:`~weightnets.compose.coefficients.BestOnValidation`, in memory); without
    it the last step's coefficients are kept. Returns the module (``module.selection`` holds the
    chosen step and the validation history)."""
    from lightning.pytorch import Trainer

    from weightnets.compose.coefficients import BestOnValidation

    module.bind(problem)
    callbacks = []
    extra: dict[str, Any] = {"limit_val_batches": 0}
    best = None
    if select_every:
        best = BestOnValidation()
        best.record(module, 0, validation_score(module, datamodule))
        callbacks.append(best)
        extra = {"val_check_interval": int(select_every), "check_val_every_n_epoch": None}
    trainer = Trainer(max_steps=int(steps), logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu", devices=1,
                      callbacks=callbacks, **extra)
    interruptible(trainer, trainer.fit, module, datamodule=datamodule)
    module.selection = ({"selected_step": best.best_step, "val_score": best.best_score, "history": best.history}
                        if best is not None else {"selected_step": int(steps)})
    return module


@torch.no_grad()
def validation_score(module: Any, datamodule: CompositionDataModule) -> float:
    """``val/score`` of ``module``'s current coefficients (the quantity :class:`BestOnValidation` ranks)."""
    flat = module.composed().detach().float()[None]
    accs = evaluate_on_tasks(flat, module.problem.arch, datamodule.eval_tasks(), "val").acc[0]
    T = module.stack.shape[0]
    return float(accs[T] - accs[:T].mean()) if module.negate else float(accs[:T].mean())


def _learned(name: str, problem: CompositionProblem, options: ComposeOptions, module: Any,
             data_kwargs: dict[str, Any], described: str) -> Composition:
    import lightning.pytorch as pl

    pl.seed_everything(options.seed, verbose=False)
    dm = CompositionDataModule.from_problem(problem, batch_size=options.batch_size, seed=options.seed,
                                            **data_kwargs)
    fit_coefficients(problem, module, dm, options.steps, options.select_every)
    with torch.no_grad():
        flat = module.composed().detach().float().clone()
    coeffs = module.coefficients()
    coeffs["init"] = float(module.init)
    selection = {"steps": options.steps, "lr": float(module.lr), **module.selection}
    if options.select_every:
        selection["on"] = "validation split (20% of each training split): the step with the best mean accuracy"
    return Composition(name, flat, coeffs, selection, described)


def _no_shots(name: str, options: ComposeOptions) -> None:
    if options.shots is not None:
        raise CompositionError(f"{name} learns from unlabelled inputs only; --shots does not apply to it")


def _lr(options: ComposeOptions, default: float) -> float:
    return float(options.lr) if options.lr is not None else default


TRANSDUCTIVE = "unlabelled inputs of each task's test split (transductive)"


def _register_transductive(name: str, learner: Callable[[float], Any], lr: float) -> None:
    """A composer that learns coefficients from the unlabelled test inputs of each task."""

    def compose(problem: CompositionProblem, options: ComposeOptions) -> Composition:
        _no_shots(name, options)
        return _learned(name, problem, options, learner(_lr(options, lr)), {"unlabelled": "test"}, TRANSDUCTIVE)

    register_composer(name)(compose)


def _adamerging(granularity: str) -> Callable[[float], Any]:
    def make(lr: float) -> Any:
        from weightnets.compose.adamerging import AdaMerging

        return AdaMerging(granularity, lr=lr)

    return make


def _atlas_objective(objective: str) -> Callable[[float], Any]:
    def make(lr: float) -> Any:
        from weightnets.compose.atlas import ATLAS

        return ATLAS(objective, lr=lr)

    return make


_register_transductive("adamerging_task", _adamerging("task"), 1e-3)
_register_transductive("adamerging_layer", _adamerging("layer"), 1e-3)
_register_transductive("atlas_tta", _atlas_objective("entropy"), 1e-3)
_register_transductive("atlas_pseudo", _atlas_objective("pseudo_label"), 1e-3)


@register_composer("atlas")
def _atlas(problem: CompositionProblem, options: ComposeOptions) -> Composition:
    from weightnets.compose.atlas import ATLAS

    shots = 16 if options.shots is None else options.shots
    opts = ComposeOptions(**{**options.__dict__, "shots": shots})
    return _learned("atlas", problem, opts, ATLAS("ce", lr=_lr(options, 0.05)), {"shots": shots},
                    f"{shots} labelled examples per class per task (training split, seed {options.seed})")


@register_composer("atlas_negation")
def _atlas_negation(problem: CompositionProblem, options: ComposeOptions) -> Composition:
    from weightnets.compose.atlas import ATLAS

    return _learned("atlas_negation", problem, options, ATLAS("negation", lr=_lr(options, 0.05)),
                    {"negate": True, "shots": options.shots},
                    "targets: unlabelled training inputs; control: the base's task, "
                    + (f"{options.shots} labelled examples per class" if options.shots else "its training split"))


def _cma(name: str, granularity: str, problem: CompositionProblem, options: ComposeOptions) -> Composition:
    from weightnets.compose.search import cma_search

    data, described = selection_data(problem, options)
    res = cma_search(problem.vectors, problem.arch, data, granularity=granularity, objective="ce",
                     generations=options.generations, seed=options.seed)
    spec = problem.vectors.blocks(granularity)
    flat = kernels.compose(problem.vectors.base.float(), problem.vectors.stack.float(), res.coeffs, spec)
    coeffs = {"granularity": granularity, "blocks": list(spec.names),
              "values": [[float(x) for x in row] for row in res.coeffs.tolist()]}
    return Composition(name, flat, coeffs, {"objective": res.value, "evaluations": res.evaluations,
                                            "generations": res.generations}, described)


@register_composer("cma_task")
def _cma_task(problem: CompositionProblem, options: ComposeOptions) -> Composition:
    return _cma("cma_task", "task", problem, options)


@register_composer("cma_layer")
def _cma_layer(problem: CompositionProblem, options: ComposeOptions) -> Composition:
    return _cma("cma_layer", "layer", problem, options)


def run_composition(problem: CompositionProblem, method: str, options: ComposeOptions | None = None) -> Composition:
    """Compose with ``method`` (:func:`composer_names`); see the module docstring for the data each
    method uses."""
    options = options or ComposeOptions()
    composer = get_composer(method)
    if options.method_options and method not in method_names():
        raise CompositionError(f"--option {sorted(options.method_options)}: options apply to the merge methods "
                               f"{method_names()}, not to the learned method {method!r}")
    return composer(problem, options)


# ---------------------------------------------------------------------------- evaluation
@dataclass
class TaskReport:
    """Test accuracy per task (``[T]`` arrays) of the composed model, the base and each child alone,
    the composed model's accuracy normalised by the child's (``acc / child_acc``), and on the base's own
    (source) task ``source_acc = (composed, base)`` (task negation's control; the clean task of
    corruption children)."""

    acc: np.ndarray
    base_acc: np.ndarray
    child_acc: np.ndarray
    source_acc: tuple[float, float] | None = None  # (composed, base) on the base's own task

    @property
    def normalized(self) -> np.ndarray:
        return self.acc / self.child_acc

    def summary(self) -> dict[str, float]:
        out = {"mean_acc": float(np.mean(self.acc)), "mean_normalized_acc": float(np.mean(self.normalized)),
               "mean_base_acc": float(np.mean(self.base_acc)), "mean_child_acc": float(np.mean(self.child_acc))}
        if self.source_acc is not None:
            out.update(source_task_acc=self.source_acc[0], source_task_base_acc=self.source_acc[1],
                       source_task_retained=self.source_acc[0] / self.source_acc[1])
        return out


def evaluate_composition(problem: CompositionProblem, flat: torch.Tensor, split: str = "test") -> TaskReport:
    """:class:`TaskReport` of ``flat [N]`` on every task's ``split`` (children and base in the same
    batched passes), with the base's own task (the control of task negation) in ``source_acc``."""
    v = problem.vectors
    models = torch.cat([flat.float()[None], v.base.float()[None], v.children().float()])
    acc = evaluate_on_tasks(models, problem.arch, problem.tasks, split).acc
    report = TaskReport(acc[0], acc[1], np.array([acc[2 + t, t] for t in range(v.n_tasks)]))
    if problem.base_task is not None:
        src = evaluate_on_tasks(models[:2], problem.arch, [problem.base_task], split).acc[:, 0]
        report.source_acc = (float(src[0]), float(src[1]))
    return report


__all__ = ["ComposeOptions", "Composition", "TaskReport", "composer_names", "evaluate_composition", "get_composer",
           "register_composer", "run_composition", "selection_data", "tune_merge"]
