"""A composition problem read from a model-tree zoo: one base, the task vectors of some of its children,
their tasks and the architecture that runs the composed weights.

A tree zoo (``docs/FORMAT.md``) stores bases and children with ``parent_id`` and ``derivation`` columns;
``z.task_vector(child)`` is ``child − parent`` (final checkpoints) and ``z.task_data(child, split)``
rebuilds the child's derived task. Derived tasks keep the parent's label space, so every composed
model has the base's architecture and output size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

import kernels
from zoo import (
    ArchitectureMismatchError,
    ParamLayout,
    SpecError,
    Zoo,
    ZooError,
    build_task,
)
from zoo.tasks import TaskData
from zoo.trees import children_of


class CompositionError(ZooError):
    """Bad input to a composition: children of another base or architecture, an unknown task family,
    more shots than a task has examples. The message names the models, fields and choices."""


@dataclass
class TaskVectors:
    """Base weights ``base [N]``, task vectors ``stack [T, N]`` (float32) and their parameter layout.

    ``names[t]`` labels task vector ``t`` (e.g. ``"child 7 (corruption)"``). Built by
    :func:`load_task_vectors` from a tree zoo, or directly from tensors (then the shapes are checked:
    :class:`zoo.ArchitectureMismatchError` when the stack's width is not the base's or the layout's).
    """

    base: torch.Tensor
    stack: torch.Tensor
    layout: ParamLayout
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.base.dim() != 1 or self.stack.dim() != 2:
            raise ArchitectureMismatchError(f"task vectors: base must be [N] and stack [T, N], got "
                                            f"{list(self.base.shape)} and {list(self.stack.shape)}")
        n = self.layout.n_params
        if self.base.shape[0] != n or self.stack.shape[1] != n:
            raise ArchitectureMismatchError(
                f"task vectors: the base has {self.base.shape[0]} parameters, the task vectors "
                f"{self.stack.shape[1]}, the architecture's layout {n}; all must be equal")
        if not self.names:
            self.names = [f"task {t}" for t in range(self.n_tasks)]
        if len(self.names) != self.n_tasks:
            raise ValueError(f"{len(self.names)} names for {self.n_tasks} task vectors")

    @property
    def n_tasks(self) -> int:
        return int(self.stack.shape[0])

    @property
    def n_params(self) -> int:
        return int(self.stack.shape[1])

    def children(self) -> torch.Tensor:
        """``[T, N]`` the fine-tuned models themselves (``base + τ_t``)."""
        return self.base[None] + self.stack

    def blocks(self, granularity: str) -> kernels.BlockSpec:
        """Block spec of a coefficient granularity: ``"task"`` (one block), ``"layer"`` (one per layer,
        layer-wise AdaMerging), ``"tensor"`` (one per parameter tensor, aTLAS)."""
        table = {"task": "model", "layer": "layer", "tensor": "tensor"}
        if granularity not in table:
            raise SpecError(f"granularity: unknown value {granularity!r}; choose from {sorted(table)}")
        return kernels.BlockSpec.from_layout(self.layout, table[granularity])


@dataclass
class CompositionProblem:
    """Everything a composition method needs: the task vectors, the architecture as a module, the
    tasks (one :class:`zoo.TaskData` per task vector) and where they came from."""

    vectors: TaskVectors
    arch: nn.Module
    tasks: list[TaskData]
    base_id: int | None = None
    child_ids: list[int] = field(default_factory=list)
    task_keys: list[str] = field(default_factory=list)
    derivations: list[str] = field(default_factory=list)
    base_task: TaskData | None = None
    base_task_key: str | None = None
    store: str | None = None

    def __post_init__(self) -> None:
        if len(self.tasks) != self.vectors.n_tasks:
            raise ValueError(f"{len(self.tasks)} tasks for {self.vectors.n_tasks} task vectors")


def _row(z: Zoo, models, model_id: int):
    if not 0 <= int(model_id) < z.n_models:
        raise CompositionError(f"{z.path}: no model {model_id} (model ids are 0..{z.n_models - 1})")
    return models.iloc[int(model_id)]


def select_children(z: Zoo, base: int, tasks: Sequence[int] | None = None, family: str | None = None
                    ) -> list[int]:
    """The child ids of a composition: ``tasks`` as given (checked to be children of ``base``), or
    every child of ``base`` in derivation ``family``. Exactly one of ``tasks`` and ``family``.

    Raises :class:`CompositionError` when ``base`` is not a parent (it is a child itself, or has no
    children), when a listed model is not a child of ``base`` (naming its own parent), or for an
    unknown family (listing the families of ``base``'s children).
    """
    if (tasks is None) == (family is None):
        raise CompositionError("give the task vectors either as child ids (--tasks) or as a family (--family), "
                               "not both and not neither")
    models = z.models
    if "parent_id" not in models.columns:
        raise CompositionError(f"{z.path} is a {z.meta.get('kind')!r} zoo without parents; composition needs a "
                               "model tree (kind 'model_tree')")
    base_row = _row(z, models, base)
    if int(base_row["parent_id"]) >= 0:
        raise CompositionError(f"{z.path}: model {base} is not a base: it is a child of model "
                               f"{int(base_row['parent_id'])}; pass its parent as --base")
    own = children_of(z, base)
    if len(own) == 0:
        raise CompositionError(f"{z.path}: model {base} has no children, so it is no child's parent")
    if family is not None:
        fams = sorted({str(models.iloc[int(c)]["derivation"]) for c in own})
        picked = [int(c) for c in own if str(models.iloc[int(c)]["derivation"]) == family]
        if not picked:
            raise CompositionError(f"{z.path}: base {base} has no children of family {family!r}; its children's "
                                   f"families are {fams}")
        return picked
    ids = [int(t) for t in tasks]
    if not ids:
        raise CompositionError("--tasks: give at least one child id")
    if len(set(ids)) != len(ids):
        raise CompositionError(f"--tasks: child ids {ids} repeat a model")
    for cid in ids:
        row = _row(z, models, cid)
        parent = int(row["parent_id"])
        if parent < 0:
            raise CompositionError(f"{z.path}: model {cid} is a base, not a child; its task vector is undefined")
        if parent != int(base):
            raise CompositionError(f"{z.path}: model {cid} was fine-tuned from base {parent}, not from base {base}; "
                                   f"its task vector belongs to another base (children of {base}: "
                                   f"{own.tolist()})")
    return ids


def load_problem(z: Zoo, base: int, tasks: Sequence[int] | None = None, family: str | None = None
                 ) -> CompositionProblem:
    """Read the composition of ``base``'s children ``tasks`` (or its whole ``family``) from tree zoo ``z``.

    Task vectors are ``z.task_vector(child)`` (final checkpoints), stacked in the given order. Raises
    :class:`CompositionError` (see :func:`select_children`) and
    :class:`zoo.ArchitectureMismatchError` when a child's architecture differs from the base's (naming
    both); a child or base without complete weights raises :class:`zoo.ZooError`.
    """
    from weightnets.evaluate import architecture_module

    ids = select_children(z, base, tasks, family)
    models = z.models
    base_key = str(models.iloc[int(base)]["arch_key"])
    for cid in ids:
        key = str(models.iloc[cid]["arch_key"])
        if key != base_key:
            raise ArchitectureMismatchError(f"{z.path}: child {cid} has architecture {key} but base {base} has "
                                            f"{base_key}; task vectors must share the base's architecture")
    bad = [(i, str(models.iloc[i]["status"])) for i in [int(base), *ids] if str(models.iloc[i]["status"]) != "ok"]
    if bad:
        raise CompositionError(f"{z.path}: models {[i for i, _ in bad]} are not 'ok' (status "
                               f"{[s for _, s in bad]}); only complete, finite models compose")
    base_w = z.weights([int(base)])[0]
    stack = z.weights(ids) - base_w[None]
    layout = z.layout(base_key)
    derivs = [str(models.iloc[c]["derivation"]) for c in ids]
    vectors = TaskVectors(base_w, stack, layout, [f"child {c} ({d})" for c, d in zip(ids, derivs)])
    keys = [str(models.iloc[c]["task"]) for c in ids]
    cache: dict[str, TaskData] = {}
    for k in keys + [str(models.iloc[int(base)]["task"])]:
        if k not in cache:
            cache[k] = build_task(z.tasks[k])
    base_key_task = str(models.iloc[int(base)]["task"])
    return CompositionProblem(vectors, architecture_module(z, base_key), [cache[k] for k in keys], int(base), ids,
                              keys, derivs, cache[base_key_task], base_key_task, str(z.path))


def check_same_base(a: TaskVectors, b: TaskVectors, names: tuple[str, str] = ("a", "b")) -> None:
    """Task vectors combined from two sources must come from one base: raise
    :class:`CompositionError` naming both when the base weights differ, and
    :class:`zoo.ArchitectureMismatchError` when the layouts differ."""
    if a.layout.to_record() != b.layout.to_record():
        raise ArchitectureMismatchError(f"task vectors {names[0]} ({a.n_params} parameters, tensors "
                                        f"{a.layout.names}) and {names[1]} ({b.n_params} parameters, tensors "
                                        f"{b.layout.names}) have different architectures")
    if not torch.equal(a.base, b.base):
        diff = float((a.base - b.base).abs().max())
        raise CompositionError(f"task vectors {names[0]} and {names[1]} were taken against different bases "
                               f"(largest weight difference {diff:.3g}); compose task vectors of one base")


def task_label(problem: CompositionProblem, t: int) -> str:
    """How errors name task ``t``: its task key and child id when read from a zoo."""
    if problem.child_ids:
        return f"task {problem.task_keys[t]} (child {problem.child_ids[t]})"
    return f"task {t}"
