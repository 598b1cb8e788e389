"""Phase-grid specs (``kind: phase_grid``, the default): a load axis x a temperature axis x seeds.

A phase grid, for example (every field in ``docs/SPECS.md``; ``weightzoo schema phase_grid`` writes
the JSON Schema)::

    name: demo
    task: {source: mnist1d}
    architecture: {name: mlp, depth: 2, activation: relu}
    grid:
      load: {param: width, values: [4, 8, 16, 32]}
      temperature: {param: batch_size, values: [16, 32, 64, 128]}
    seeds: 2
    epochs: 20
    optimizer: {name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0}
    checkpoints: {log_spaced: 4}

:class:`PhaseGridSchema` validates the YAML (errors name the field: ``grid.load.values[2]: ...``);
:func:`parse_phase_grid` turns it into the :class:`PhaseGridSpec` the generator uses, whose ``raw``
record (and so the spec hash) is the canonical form of the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import Field, field_validator, model_validator
from typing_extensions import Annotated

from generators.analysis import Analysis, LandscapeField, PhasesField, training_record
from generators.spec_fields import (
    Architecture,
    Checkpoints,
    CheckpointSchedule,
    Description,
    Optimizer,
    PopulationSettings,
    Schedule,
    ScheduleField,
    Seeds,
    TaskField,
    architecture_options,
    canonical_task,
    checkpoint_epochs,
    seed_list,
)
from zoo.format import canonical_json, short_hash
from zoo.validation import FieldError, Int, SpecModel, Str, as_number, drop_nulls, validate

TRAINING_PARAMS = ("batch_size", "lr", "weight_decay", "momentum")
TASK_PARAMS = ("train_fraction",)
_PREFIXES = {"optimizer": "training", "training": "training", "task": "task", "architecture": "architecture"}

class Axis(SpecModel):
    """One axis of the grid: the parameter it varies and its values. ``param`` is a training setting
    (``batch_size``, ``lr``, ``weight_decay``, ``momentum``), ``train_fraction`` (the task), or an
    option of the architecture (``width``, ``depth``, ...); a prefix ``optimizer.``, ``task.`` or
    ``architecture.`` says where it lives explicitly."""

    param: Str
    values: Annotated[list[Any], Field(min_length=1)]
    target: Optional[Literal["architecture", "task", "training"]] = Field(
        default=None, description="where the parameter lives; inferred from param when absent (stored records "
        "carry it)")


class Grid(SpecModel):
    """The two axes of a phase grid."""

    load: Axis
    temperature: Axis


class PhaseGridSchema(SpecModel):
    """A phase-grid spec as written in YAML (see the module docstring)."""

    name: Optional[Str] = Field(default=None, description="default: the file name")
    kind: Literal["phase_grid"] = "phase_grid"
    description: Description = None
    task: TaskField = "mnist1d"
    architecture: Architecture
    grid: Grid
    seeds: Seeds = 1
    data_seed_offset: Int = 10_000
    epochs: Int = Field(default=10, gt=0)
    optimizer: Optimizer = Optimizer()
    schedule: ScheduleField = Schedule()
    checkpoints: Checkpoints = CheckpointSchedule(log_spaced=3)
    population: PopulationSettings = PopulationSettings()
    landscape: LandscapeField = True
    phases: PhasesField = True

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        return drop_nulls(data, ("landscape", "phases", "population"))

    @field_validator("task", mode="wrap")
    @classmethod
    def _canonical_task(cls, value: Any, handler: Any) -> dict:
        return canonical_task(value)

    @model_validator(mode="after")
    def _consistent(self) -> "PhaseGridSchema":
        targets = []
        for role in ("load", "temperature"):
            axis: Axis = getattr(self.grid, role)
            target, pname = axis_target(axis.param, self.architecture, ("grid", role, "param"))
            if axis.target is not None and axis.target != target:
                raise FieldError(f"parameter {axis.param!r} lives in {target!r}, not {axis.target!r}",
                                 ("grid", role, "target"))
            for i, value in enumerate(axis.values):
                check_axis_value(pname, value, ("grid", role, "values", i))
            if len(set(map(canonical_json, axis.values))) != len(axis.values):
                raise FieldError(f"values must be distinct, got {axis.values}", ("grid", role, "values"))
            targets.append((target, pname))
        if targets[0] == targets[1]:
            raise FieldError("must differ from grid.load.param", ("grid", "temperature", "param"))
        seed_list(self.seeds)
        checkpoint_epochs(self.checkpoints, self.epochs)
        return self



def axis_target(param: str, arch: Architecture, path: tuple) -> tuple[str, str]:
    """``(target, name)`` of a grid parameter: where it lives (``training``, ``task``, ``architecture``)."""
    if "." in param:
        prefix, pname = param.split(".", 1)
        if prefix not in _PREFIXES:
            raise FieldError(f"prefix must be one of task., architecture., optimizer.; got {param!r}", path)
        return _PREFIXES[prefix], pname
    if param in TRAINING_PARAMS:
        return "training", param
    if param in TASK_PARAMS:
        return "task", param
    accepted = architecture_options(arch.name)
    if accepted is None or param in accepted:
        return "architecture", param
    raise FieldError(f"unknown parameter {param!r}; use one of {list(TRAINING_PARAMS) + list(TASK_PARAMS)} or a "
                     f"config option of architecture {arch.name!r}: {accepted}", path)


def check_axis_value(param: str, value: Any, path: tuple) -> None:
    """Range checks of the values of the well-known grid parameters."""
    try:
        if param in ("batch_size", "width", "depth"):
            v = as_number(value)
            if not float(v).is_integer():
                raise FieldError(f"expected an integer, got {value!r}")
            if v <= 0:
                raise FieldError(f"must be > 0, got {value!r}")
        elif param in ("lr", "train_fraction"):
            v = as_number(value)
            if v <= 0:
                raise FieldError(f"must be > 0, got {value!r}")
            if param == "train_fraction" and v > 1:
                raise FieldError(f"a training-data fraction must be in (0, 1], got {value!r}")
        elif param in ("weight_decay", "momentum"):
            if as_number(value) < 0:
                raise FieldError(f"must be >= 0, got {value!r}")
    except FieldError as exc:
        raise FieldError(exc.message, path) from None


@dataclass
class GridAxis:
    """One axis of the phase grid: the varied parameter, where it lives, and its values."""

    role: str          # "load" or "temperature"
    param: str         # e.g. "width", "batch_size", "lr", "train_fraction"
    target: str        # "architecture", "task" or "training"
    values: list


@dataclass
class PhaseGridSpec:
    """A validated phase-grid spec (``raw`` is the canonical dict it was built from)."""

    name: str
    task: dict
    architecture: str
    arch_config: dict
    load: GridAxis
    temperature: GridAxis
    seeds: list[int]
    data_seed_offset: int
    epochs: int
    optimizer: dict
    schedule: dict
    checkpoint_epochs: list[int]
    max_population: int
    raw: dict = field(default_factory=dict)
    analysis: Optional[Analysis] = None
    population: PopulationSettings = field(default_factory=PopulationSettings)  # speed only, not in the hash

    @property
    def spec_hash(self) -> str:
        return short_hash(training_record(self.raw), 16)

    @property
    def kind(self) -> str:
        return "phase_grid"


def parse_phase_grid(spec: Mapping[str, Any], source: Union[str, None] = None) -> PhaseGridSpec:
    """Validate a phase-grid spec mapping; raises ``SpecError`` naming ``source`` and the field."""
    s = validate(PhaseGridSchema, spec, source=source)
    arch = s.architecture
    task = s.task
    axes = {}
    for role in ("load", "temperature"):
        axis: Axis = getattr(s.grid, role)
        target, pname = axis_target(axis.param, arch, ("grid", role, "param"))
        axes[role] = GridAxis(role, pname, target, list(axis.values))
    seeds = seed_list(s.seeds)
    epochs = checkpoint_epochs(s.checkpoints, s.epochs)
    name = s.name or (Path(source).stem if source else "zoo")
    optimizer = s.optimizer.record()
    schedule = s.schedule.model_dump()
    raw = {
        "name": name, "kind": "phase_grid", "task": task, "architecture": {"name": arch.name, **arch.options},
        "grid": {r: {"param": axes[r].param, "target": axes[r].target, "values": axes[r].values} for r in axes},
        "seeds": seeds, "data_seed_offset": s.data_seed_offset, "epochs": s.epochs, "optimizer": optimizer,
        "schedule": schedule, "checkpoints": epochs,
    }
    analysis = Analysis.from_fields(s.landscape, s.phases)
    raw.update(analysis.record())
    return PhaseGridSpec(name, task, arch.name, arch.options, axes["load"], axes["temperature"], seeds,
                         s.data_seed_offset, s.epochs, optimizer, schedule, epochs, s.population.max_size, raw,
                         analysis, s.population)


