"""The data a learned composition trains on: few-shot labelled examples or unlabelled inputs of each task.

:class:`CompositionDataModule` (a ``LightningDataModule``) reads a composition problem from a tree zoo
(``store``, ``base``, ``tasks`` or ``family``) and serves, per task vector ``t``:

* **train** — one of
  * ``shots=k``: ``k`` labelled examples per class of the task, drawn (seeded) from the part of the
    task's training split that :func:`weightnets.evaluate.validation_split` keeps for fitting
    (aTLAS few-shot, Zhang et al. 2024 §4.3);
  * ``unlabelled="test"``: the inputs of the task's **test** split, labels withheld (replaced by
    ``-1``). This is *transductive*: the coefficients adapt to the very inputs they are evaluated on,
    as in AdaMerging (Yang et al. 2024, §3.2) and aTLAS' test-time adaptation (§4.4);
  * ``unlabelled="train"``: the inputs of the fitting part of the training split, labels withheld
    (inductive test-time adaptation);
  * neither: every labelled example of the fitting part;
* **val** — the task's validation split (labelled; :func:`~weightnets.evaluate.validation_split`);
* **test** — the task's test split.

With ``negate=True`` the tasks are *targets* to forget and the base's own (source) task is the
*control*: train batches hold the targets' unlabelled training inputs and the control's labelled
examples (``k`` per class with ``shots``); val/test report both.

A training batch is a dict ``{"task0": (x, y), ..., ["control": (x, y)]}`` (Lightning's
``CombinedLoader`` in ``max_size_cycle`` mode: every task contributes to every step); validation and
test loaders are one ``DataLoader`` per task (and control, last).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, TensorDataset

import zoo
from weightnets.compose.taskset import (
    CompositionError,
    CompositionProblem,
    load_problem,
    task_label,
)
from weightnets.evaluate import task_examples, validation_split
from zoo.tasks import TaskData


def few_shot(task: TaskData, k: int, seed: int = 0, *, name: str = "task") -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` labelled examples per class ``(x [k·C, ...], y [k·C])`` from the fitting part of ``task``'s
    training split (never its validation or test examples), drawn without replacement with
    ``numpy.random.default_rng(seed)``; classes absent from the task (class-subset children) are
    skipped. Raises :class:`~weightnets.compose.taskset.CompositionError` when ``k < 1`` or a class has
    fewer than ``k`` fitting examples (naming ``name``, the class and the count)."""
    if int(k) < 1:
        raise CompositionError(f"--shots must be >= 1, got {k}")
    (x, y), _ = validation_split(task)
    labels = y.numpy()
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < k:
            raise CompositionError(f"--shots {k}: {name} has only {len(idx)} training examples of class {int(c)} "
                                   f"(after holding out its validation split); use --shots {len(idx)} or fewer")
        picked.append(rng.choice(idx, size=int(k), replace=False))
    sel = torch.from_numpy(np.sort(np.concatenate(picked)))
    return x[sel], y[sel]


def _unlabelled(x: torch.Tensor) -> TensorDataset:
    return TensorDataset(x, torch.full((len(x),), -1, dtype=torch.int64))


class CompositionDataModule(LightningDataModule):
    """Few-shot / unlabelled / validation / test data of a composition problem (module docstring).

    Args:
        store, base, tasks, family: the problem (:func:`~weightnets.compose.taskset.load_problem`).
        shots: labelled examples per class per task (``None``: see ``unlabelled``).
        unlabelled: ``"test"`` (transductive), ``"train"`` or ``None``.
        negate: the tasks are targets to forget; the base's source task is the control.
        batch_size: examples per task per step. seed: few-shot draw and shuffling.
    """

    def __init__(self, store: str | None = None, base: int | None = None, tasks: Sequence[int] | None = None,
                 family: str | None = None, shots: int | None = None,
                 unlabelled: Literal["test", "train"] | None = None, negate: bool = False, batch_size: int = 128,
                 seed: int = 0) -> None:
        super().__init__()
        if shots is not None and unlabelled is not None and not negate:
            raise CompositionError("give either shots (labelled few-shot) or unlabelled (test-time), not both")
        if unlabelled not in (None, "test", "train"):
            raise CompositionError(f"unlabelled: expected 'test', 'train' or None, got {unlabelled!r}")
        self.store, self.base, self.tasks, self.family = store, base, tasks, family
        self.shots, self.unlabelled, self.negate = shots, unlabelled, bool(negate)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.problem: CompositionProblem | None = None
        self._train: dict[str, TensorDataset] | None = None

    @classmethod
    def from_problem(cls, problem: CompositionProblem, **kwargs) -> "CompositionDataModule":
        """A data module over an already loaded problem (no store access)."""
        dm = cls(**kwargs)
        dm.problem = problem
        return dm

    # ------------------------------------------------------------------ setup
    def prepare(self) -> CompositionProblem:
        """Load the problem (once) and build the training sets; returns the problem."""
        if self.problem is None:
            if self.store is None or self.base is None:
                raise CompositionError("CompositionDataModule needs store and base (and tasks or family)")
            z = zoo.open(self.store)
            self.problem = load_problem(z, int(self.base), self.tasks, self.family)
        if self._train is None:
            self._train = self._training_sets(self.problem)
        return self.problem

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _training_sets(self, problem: CompositionProblem) -> dict[str, TensorDataset]:
        out: dict[str, TensorDataset] = {}
        for t, task in enumerate(problem.tasks):
            if self.negate:
                (x, _), _ = validation_split(task)
                out[f"task{t}"] = _unlabelled(x)
            elif self.shots is not None:
                out[f"task{t}"] = TensorDataset(*few_shot(task, self.shots, self.seed + t,
                                                          name=task_label(problem, t)))
            elif self.unlabelled == "test":
                out[f"task{t}"] = _unlabelled(task.x_test)
            elif self.unlabelled == "train":
                out[f"task{t}"] = _unlabelled(validation_split(task)[0][0])
            else:
                out[f"task{t}"] = TensorDataset(*validation_split(task)[0])
        if self.negate:
            control = self.control_task
            if self.shots is not None:
                out["control"] = TensorDataset(*few_shot(control, self.shots, self.seed + 7919,
                                                         name=f"control task {problem.base_task_key}"))
            else:
                out["control"] = TensorDataset(*validation_split(control)[0])
        return out

    @property
    def control_task(self) -> TaskData:
        problem = self.prepare() if self.problem is None else self.problem
        if problem.base_task is None:
            raise CompositionError("task negation needs the base's own task as the control task")
        return problem.base_task

    def eval_tasks(self) -> list[TaskData]:
        """The tasks reported in validation and test, in loader order (the control last)."""
        problem = self.prepare()
        return list(problem.tasks) + ([self.control_task] if self.negate else [])

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> CombinedLoader:
        self.prepare()
        gen = torch.Generator().manual_seed(self.seed)
        loaders = {name: DataLoader(ds, batch_size=min(self.batch_size, len(ds)), shuffle=True, generator=gen)
                   for name, ds in self._train.items()}
        return CombinedLoader(loaders, mode="max_size_cycle")

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        return [DataLoader(TensorDataset(*task_examples(task, split)), batch_size=1024)
                for task in self.eval_tasks()]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")
