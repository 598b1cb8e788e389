"""Zoo kinds: what a spec ``kind`` (``phase_grid``, ``model_tree``) supplies to parsing and generation.

A :class:`ZooKind` is registered by name (``register_zoo_kind`` / ``get_zoo_kind`` / ``zoo_kind_names``):

* ``schema``: the pydantic model of its spec (``weightzoo schema`` writes its JSON Schema);
* ``parse(mapping, source) -> spec``: the validated spec object (``kind``, ``name``, ``raw``,
  ``spec_hash``, ``analysis``);
* ``plan(spec) -> ZooPlan``: the models table, architectures, tasks and attributes, fixed before any
  training (each model has a slot; resuming trains exactly the ``pending`` ones);
* ``populations(spec, models, architectures, tasks) -> [Population]``: models that train together,
  each in a *stage* (a model-tree child trains in stage 1, after its parent in stage 0 is written);
  phase grids ask the planner (:mod:`generators.planner`);
* ``job(z, spec, model_ids, tasks) -> TrainingJob``: what one population trains (configuration,
  members, one task per member, start weights), read from the store alone;
* ``splits(z, spec) -> [(name, codes, settings)]``: the kind's standard splits;
* ``describe(spec, plan) -> rich renderable`` (optional): the plan as ``weightzoo generate --plan``
  prints it.

:mod:`generators.phase_grid` and :mod:`generators.model_tree` register the two kinds this package has.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from kernels.registry import Registry
from zoo.errors import UnknownNameError
from zoo.store import Zoo
from zoo.tasks import TaskData, build_task
from zoo.validation import register_schema

if TYPE_CHECKING:  # parsing a spec does not load the training code
    from generators.population import Member, PopulationConfig


@dataclass
class Population:
    """Models trained together (same architecture instance, batch size and optimiser) in one stage."""

    key: tuple
    model_ids: list[int]
    stage: int = 0
    epochs: int = 0


@dataclass
class ZooPlan:
    """Everything :func:`zoo.store.create_zoo` needs, planned from a spec before training."""

    models: pd.DataFrame
    architectures: dict[str, dict]
    tasks: dict[str, dict]
    checkpoint_epochs: list[int]
    n_epochs: int
    attrs: dict


@dataclass
class TrainingJob:
    """One population's training, built from the store: ``tasks[j]`` and ``start_weights[j]``
    (``[P, n_params]``, None for seeded initialisation) belong to ``members[j]``; ``blocked`` maps models
    that cannot train (e.g. a child whose parent failed) to the reason, recorded as their error. Models
    of the population in neither ``model_ids`` nor ``blocked`` are left ``pending``."""

    config: PopulationConfig
    model_ids: list[int]
    members: list[Member]
    tasks: list[TaskData]
    start_weights: torch.Tensor | None = None
    blocked: dict[int, str] = field(default_factory=dict)


SplitDef = tuple[str, np.ndarray, dict]


class TaskCache:
    """Task data by task key of one store, built on first use; keeps the ``max_items`` most recent."""

    def __init__(self, z: Zoo, max_items: int = 256) -> None:
        self.specs = z.tasks
        self.max_items = max_items
        self._data: OrderedDict[str, TaskData] = OrderedDict()

    def __call__(self, key: str) -> TaskData:
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        data = build_task(self.specs[key])
        self._data[key] = data
        while len(self._data) > self.max_items:
            self._data.popitem(last=False)
        return data


@dataclass(frozen=True)
class ZooKind:
    """What a spec kind supplies to parsing and generation (see the module docstring)."""

    schema: type
    parse: Callable[[Mapping[str, Any], str | None], Any]
    plan: Callable[[Any], ZooPlan]
    populations: Callable[[Any, pd.DataFrame, Mapping[str, dict], Mapping[str, Any]], list[Population]]
    job: Callable[[Zoo, Any, Sequence[int], TaskCache], TrainingJob]
    splits: Callable[[Zoo, Any], list[SplitDef]]
    describe: Callable[[Any, ZooPlan], Any] | None = None


_KINDS: Registry[ZooKind] = Registry("zoo kind", error=UnknownNameError)
get_zoo_kind = _KINDS.get
zoo_kind_names = _KINDS.names


def register_zoo_kind(name: str) -> Callable[[ZooKind], ZooKind]:
    """Decorator (or call) registering a :class:`ZooKind` under ``name``; its spec schema is registered
    under the same name (``weightzoo schema NAME``)."""

    def deco(kind: ZooKind) -> ZooKind:
        register_schema(name)(kind.schema)
        return _KINDS.register(name)(kind)

    return deco
