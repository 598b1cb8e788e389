"""Spec sections that every zoo kind shares: architecture, optimiser, schedule, checkpoints, seeds.

Each is a pydantic model (:class:`zoo.validation.SpecModel`: unknown fields refused, errors naming the
field); :mod:`generators.grid_spec` and :mod:`generators.tree_spec` compose them into whole specs and
:func:`generators.spec.load_spec` reads any of them. Relies on pydantic.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Literal, Mapping, Optional, Union

import numpy as np
from pydantic import BeforeValidator, ConfigDict, Field, model_validator
from typing_extensions import Annotated

from generators.optimizers import optimizer_names, schedule_names
from zoo.architectures import architecture_names, get_architecture
from zoo.errors import SpecError
from zoo.tasks import TaskSpec, normalize_task_spec
from zoo.validation import FieldError, Int, Number, SpecModel, Str, choice, either, nested

#: Options an architecture builder takes that a spec does not set (they come from the task).
TASK_GIVEN = ("input_shape", "n_classes")


def architecture_options(name: str) -> list[str] | None:
    """The options (keyword arguments) architecture ``name`` accepts; ``None`` when it accepts any."""
    params = inspect.signature(get_architecture(name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [p for p in params if p not in TASK_GIVEN]


class Architecture(SpecModel):
    """A registered architecture (``name``) and its options (``width``, ``depth``, ``activation``, ...:
    the keyword arguments of its builder, checked against it)."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, BeforeValidator(choice("architecture", architecture_names))]

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_fields(cls, data: Any) -> Any:  # options are checked against the builder below
        if not isinstance(data, Mapping):
            raise FieldError(f"expected a mapping with 'name' and options, got {data!r}")
        if "name" not in data:
            raise FieldError(f"is required; registered architectures: {architecture_names()}", ("name",))
        return data

    @model_validator(mode="after")
    def _options_fit_the_builder(self) -> "Architecture":
        allowed = architecture_options(self.name)
        if allowed is not None:
            unknown = sorted(set(self.options) - set(allowed))
            if unknown:
                raise FieldError(f"unknown option of architecture {self.name!r}; its options are {allowed}",
                                 (unknown[0],))
        return self

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Optimizer(SpecModel):
    """The optimiser of a population (vectorised in :mod:`generators.population`): ``sgd`` (momentum
    defaults to 0.9), ``adam`` or ``adamw`` (momentum 0), with the mini-batch size."""

    name: Annotated[str, BeforeValidator(choice("optimiser", optimizer_names))] = "sgd"
    lr: Number = Field(default=0.01, gt=0, description="learning rate")
    weight_decay: Number = Field(default=0.0, ge=0)
    momentum: Optional[Number] = Field(default=None, ge=0, description="default: 0.9 for sgd, else 0")
    batch_size: Int = Field(default=64, gt=0)
    betas: tuple[Annotated[Number, Field(ge=0)], Annotated[Number, Field(ge=0)]] = (0.9, 0.999)
    eps: Number = Field(default=1e-8, gt=0)

    def record(self) -> dict[str, Any]:
        """The complete optimiser record stored in a zoo's spec (part of the spec hash)."""
        momentum = self.momentum if self.momentum is not None else (0.9 if self.name == "sgd" else 0.0)
        return {"name": self.name, "lr": self.lr, "weight_decay": self.weight_decay, "momentum": momentum,
                "batch_size": self.batch_size, "betas": [float(b) for b in self.betas], "eps": self.eps}


def layered_optimizer(value: Any, base: Mapping[str, Any] | None) -> Any:
    """``value`` (a mapping of optimiser fields) laid over ``base`` (e.g. a tree's top-level optimiser
    record); ``base``'s momentum is kept only when the optimiser name stays the same."""
    if not isinstance(value, Mapping) or not base:
        return value
    base = dict(base)
    if base.get("name", value.get("name", "sgd")) != value.get("name", base.get("name", "sgd")):
        base.pop("momentum", None)
    return {**base, **value}


class Schedule(SpecModel):
    """Learning-rate schedule: ``constant``, ``cosine`` (to 0 over the run) or ``step`` (multiply by
    ``gamma`` every ``step_size`` epochs)."""

    name: Annotated[str, BeforeValidator(choice("schedule", schedule_names))] = "constant"
    step_size: Int = Field(default=10, gt=0)
    gamma: Number = Field(default=0.5, gt=0)


def _schedule_name(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


ScheduleField = Annotated[Schedule, BeforeValidator(_schedule_name)]


class CheckpointSchedule(SpecModel):
    """Which epochs get a checkpoint besides the first (0) and the last: ``log_spaced: k`` (about k
    log-spaced epochs), ``every: n``, or ``count: n`` (exactly n checkpoints, inner ones log-spaced)."""

    log_spaced: Int = Field(default=0, ge=0)
    every: Optional[Int] = Field(default=None, gt=0)
    count: Optional[Int] = Field(default=None, ge=2)

    @model_validator(mode="before")
    @classmethod
    def _count_alone(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "count" in data and len(data) > 1:
            raise FieldError("cannot be combined with log_spaced or every", ("count",))
        return data


Checkpoints = either(("list", list[Annotated[Int, Field(ge=0)]]), ("schedule", CheckpointSchedule),
                     lambda v: isinstance(v, list))
Seeds = either(("list", Annotated[list[Annotated[Int, Field(ge=0)]], Field(min_length=1)]),
               ("count", Annotated[Int, Field(gt=0)]), lambda v: isinstance(v, list))


def seed_list(seeds: Union[int, list[int]], path: tuple = ("seeds",)) -> list[int]:
    """A count (``2`` -> seeds 0, 1) or a list of distinct seeds, as a list."""
    if isinstance(seeds, list):
        if len(set(seeds)) != len(seeds):
            raise FieldError(f"expected distinct seeds, got {seeds}", path)
        return list(seeds)
    return list(range(seeds))


def checkpoint_epochs(value: Union[list[int], CheckpointSchedule], epochs: int, path: tuple = ("checkpoints",)
                      ) -> list[int]:
    """Epochs to store: always the initialisation (0) and the final epoch, plus the schedule asked for."""
    if isinstance(value, list):
        bad = [e for e in value if e > epochs]
        if bad:
            raise FieldError(f"epochs {bad} are beyond the last epoch {epochs}", path)
        return sorted(set(value) | {0, epochs})
    if value.count is not None:
        return _count_checkpoints(value.count, epochs, path + ("count",))
    eps = {0, epochs}
    if value.log_spaced:
        eps |= {int(e) for e in np.unique(np.round(np.logspace(0, math.log10(max(epochs, 1)), value.log_spaced + 1)))}
    if value.every is not None:
        eps |= set(range(0, epochs + 1, value.every))
    return sorted(e for e in eps if 0 <= e <= epochs)


def _count_checkpoints(n: int, epochs: int, path: tuple) -> list[int]:
    """Epoch 0 and ``n - 1`` distinct epochs in ``1..epochs`` near ``epochs ** (i / (n - 1))``, i = 1..n-1
    (``n = 3``, 20 epochs: 0, 4, 20)."""
    if n - 1 > epochs:
        raise FieldError(f"{n} checkpoints need at least {n - 1} epochs, got {epochs}", path)
    out = [0]
    targets = np.logspace(0, math.log10(epochs), n)[1:]
    for i, t in enumerate(targets):
        lo, hi = out[-1] + 1, epochs - (n - 2 - i)
        out.append(int(min(max(round(float(t)), lo), hi)))
    return out


#: A task: a source name or a task spec (:class:`zoo.tasks.TaskSpec` and the source's options).
TaskField = either(("source", Str), ("spec", TaskSpec), lambda v: isinstance(v, str))


def canonical_task(value: Any) -> dict:
    """The canonical task spec of a spec's ``task`` field (:func:`zoo.tasks.normalize_task_spec`); its
    errors become :class:`FieldError` at the same place below ``task``."""
    try:
        return normalize_task_spec(value)
    except SpecError as exc:
        raise nested(exc, "task") from None


class TreePopulationSettings(SpecModel):
    """A model tree's ``population`` field: how models train (speed only: none of it is part of the spec
    hash, and no model's result depends on it). ``max_size``: most models per population; ``threads``:
    torch intra-op threads while training (0: torch's default, one per core; the default 1 is measured,
    docs/SPECS.md "Threads")."""

    max_size: Int = Field(default=64, gt=0, description="most models per population")
    threads: Int = Field(default=1, ge=0, description="torch intra-op threads while training (0: torch's default)")

    def plan_record(self) -> dict[str, Any]:
        """The settings the plan depends on (``threads`` only changes speed)."""
        return self.model_dump(exclude={"threads"})


class PopulationSettings(TreePopulationSettings):
    """A phase grid's ``population`` field (speed only, as for trees): besides ``max_size`` and
    ``threads``, how the planner groups the grid (:mod:`generators.planner`): ``max_padding``, the most
    padded training FLOPs of a width bucket per real FLOP (1 forbids padding); ``max_memory_mb``, the most
    memory a population may keep (parameters, gradients, optimiser state, checkpoints); ``grouping``,
    ``planner`` (across the grid) or ``shape`` (one population per architecture instance, task, batch size
    and optimiser)."""

    max_padding: Number = Field(default=2.0, ge=1, description="most padded training FLOPs per real FLOP")
    max_memory_mb: Number = Field(default=1024.0, gt=0, description="most memory (MiB) one population keeps")
    grouping: Literal["planner", "shape"] = "planner"


Description = Optional[Str]
Kind = Literal["phase_grid", "model_tree"]
