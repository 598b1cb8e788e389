"""Generation specs: a YAML file that says which zoo to train (format in ``docs/SPECS.md``).

:func:`load_spec` reads any spec and dispatches on its ``kind``: ``phase_grid`` (this module,
:class:`PhaseGridSpec`) or ``model_tree`` (:mod:`generators.tree_spec`). The field parsers below
(optimiser, schedule, checkpoints, architecture, seeds) are shared by every kind.

A phase grid, for example::

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

Every error names the field that is wrong (``grid.load.values[2]: ...``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from zoo.architectures import architecture_names
from zoo.errors import SpecError, UnknownNameError
from zoo.format import canonical_json, short_hash
from zoo.tasks import normalize_task_spec

from generators.population import OPTIMIZERS, SCHEDULES

SPEC_DIR = Path(__file__).parent / "specs"
TRAINING_PARAMS = ("batch_size", "lr", "weight_decay", "momentum")
TASK_PARAMS = ("train_fraction",)
TOP_LEVEL = ("name", "kind", "description", "task", "architecture", "grid", "seeds", "data_seed_offset", "epochs",
             "optimizer", "schedule", "checkpoints", "population", "splits")


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
    analysis: Any = None  # generators.analysis.Analysis: landscape metrics and phase rule
    population: Any = None  # generators.planner.PopulationSettings (speed only, not in the spec hash)

    @property
    def spec_hash(self) -> str:
        from generators.analysis import training_record

        return short_hash(training_record(self.raw), 16)

    @property
    def kind(self) -> str:
        return "phase_grid"


#: The spec kinds :func:`load_spec` understands.
SPEC_KINDS = ("phase_grid", "model_tree")


def _fail(field_name: str, msg: str, source: str | None) -> SpecError:
    where = f"{source}: " if source else ""
    return SpecError(f"{where}field '{field_name}': {msg}")


def resolve_spec_path(name_or_path: str | Path) -> Path:
    """A spec file path, or the name of a spec shipped in ``generators/specs`` (``demo``)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    shipped = SPEC_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    names = sorted(q.stem for q in SPEC_DIR.glob("*.yaml"))
    raise SpecError(f"spec {str(name_or_path)!r} is neither a file nor a shipped spec (shipped: {names})")


def load_spec(spec: str | Path | Mapping[str, Any]) -> Any:
    """Parse and validate a spec from a YAML path, a shipped spec name, or a dict.

    Returns a :class:`PhaseGridSpec` or a :class:`generators.tree_spec.ModelTreeSpec` by the spec's
    ``kind`` (default ``phase_grid``); every spec object has ``kind``, ``name``, ``raw`` and ``spec_hash``.
    """
    source = None
    if not isinstance(spec, Mapping):
        path = resolve_spec_path(spec)
        source = str(path)
        try:
            spec = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SpecError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(spec, Mapping):
            raise SpecError(f"{source}: the spec must be a mapping of fields, got {type(spec).__name__}")
    from generators.analysis import ANALYSIS_FIELDS, parse_analysis

    spec = copy.deepcopy(dict(spec))
    analysis = parse_analysis(spec, source)
    spec = {k: v for k, v in spec.items() if k not in ANALYSIS_FIELDS}
    kind = spec.get("kind", "phase_grid")
    if kind == "model_tree":
        from generators.tree_spec import validate_tree_spec

        parsed = validate_tree_spec(spec, source)
    elif kind != "phase_grid":
        raise _fail("kind", f"unknown kind {kind!r}; choose from {list(SPEC_KINDS)}", source)
    else:
        parsed = _validate(spec, source)
    parsed.analysis = analysis
    parsed.raw.update(analysis.record())
    return parsed


def number(value: Any, name: str, source: str | None, *, integer: bool = False, positive: bool = False,
           minimum: float | None = None, maximum: float | None = None) -> float | int:
    """``value`` checked as a (finite, optionally integer, positive or bounded) number; errors name ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, f"expected a number, got {value!r}", source)
    if integer and not float(value).is_integer():
        raise _fail(name, f"expected an integer, got {value!r}", source)
    if not math.isfinite(float(value)):
        raise _fail(name, f"expected a finite number, got {value!r}", source)
    if positive and value <= 0:
        raise _fail(name, f"must be > 0, got {value!r}", source)
    if minimum is not None and value < minimum:
        raise _fail(name, f"must be >= {minimum}, got {value!r}", source)
    if maximum is not None and value > maximum:
        raise _fail(name, f"must be <= {maximum}, got {value!r}", source)
    return int(value) if integer else float(value)


def _mapping(spec: Mapping, key: str, source: str | None, default: Any = None) -> dict:
    value = spec.get(key, default)
    if value is None:
        raise _fail(key, "is required", source)
    if not isinstance(value, Mapping):
        raise _fail(key, f"expected a mapping, got {value!r}", source)
    return dict(value)


def parse_architecture(value: Any, field_name: str, source: str | None) -> tuple[str, dict]:
    """``(name, config)`` of an architecture mapping ``{name: <registered>, <options>}``."""
    if not isinstance(value, Mapping):
        raise _fail(field_name, f"expected a mapping with 'name' and options, got {value!r}", source)
    arch = dict(value)
    if "name" not in arch:
        raise _fail(f"{field_name}.name", f"is required; registered architectures: {architecture_names()}", source)
    arch_name = str(arch.pop("name"))
    if arch_name not in architecture_names():
        raise UnknownNameError(f"{source + ': ' if source else ''}field '{field_name}.name': unknown architecture "
                               f"{arch_name!r}; registered: {architecture_names()}")
    return arch_name, arch


def parse_seeds(value: Any, field_name: str, source: str | None) -> list[int]:
    """A count (``2`` -> seeds 0, 1) or a list of distinct non-negative seeds."""
    if isinstance(value, list):
        seeds = [int(number(s, f"{field_name}[{i}]", source, integer=True, minimum=0)) for i, s in enumerate(value)]
        if not seeds or len(set(seeds)) != len(seeds):
            raise _fail(field_name, f"expected distinct seeds, got {value}", source)
        return seeds
    return list(range(int(number(value, field_name, source, integer=True, positive=True))))


OPTIMIZER_FIELDS = ("name", "lr", "weight_decay", "momentum", "betas", "eps", "batch_size")


def parse_optimizer(value: Any, field_name: str, source: str | None, base: Mapping | None = None) -> dict:
    """A complete optimiser record from ``value`` (a mapping of :data:`OPTIMIZER_FIELDS`) laid over
    ``base`` (shared defaults, e.g. a tree's top-level optimiser; its ``momentum`` is kept only when
    the optimiser name stays the same)."""
    if not isinstance(value, Mapping):
        raise _fail(field_name, f"expected a mapping, got {value!r}", source)
    extra = sorted(set(value) - set(OPTIMIZER_FIELDS))
    if extra:
        raise _fail(f"{field_name}.{extra[0]}", f"unknown option; allowed: {sorted(OPTIMIZER_FIELDS)}", source)
    base = dict(base or {})
    opt_name = value.get("name", base.get("name", "sgd"))
    if opt_name not in OPTIMIZERS:
        raise UnknownNameError(f"{source + ': ' if source else ''}field '{field_name}.name': unknown optimiser "
                               f"{opt_name!r}; choose from {list(OPTIMIZERS)}")
    if base.get("name", opt_name) != opt_name:
        base.pop("momentum", None)
    opt = {**base, **value}
    betas = opt.get("betas", [0.9, 0.999])
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise _fail(f"{field_name}.betas", f"expected two numbers, got {betas!r}", source)
    return {
        "name": opt_name,
        "lr": number(opt.get("lr", 0.01), f"{field_name}.lr", source, positive=True),
        "weight_decay": number(opt.get("weight_decay", 0.0), f"{field_name}.weight_decay", source, minimum=0),
        "momentum": number(opt.get("momentum", 0.9 if opt_name == "sgd" else 0.0), f"{field_name}.momentum",
                           source, minimum=0),
        "batch_size": int(number(opt.get("batch_size", 64), f"{field_name}.batch_size", source, integer=True,
                                 positive=True)),
        "betas": [float(number(b, f"{field_name}.betas[{i}]", source, minimum=0)) for i, b in enumerate(betas)],
        "eps": number(opt.get("eps", 1e-8), f"{field_name}.eps", source, positive=True),
    }


def parse_schedule(value: Any, field_name: str, source: str | None) -> dict:
    """``{name, step_size, gamma}`` from a schedule name or mapping."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping) or value.get("name", "constant") not in SCHEDULES:
        raise UnknownNameError(f"{source + ': ' if source else ''}field '{field_name}.name': unknown schedule "
                               f"{value!r}; choose from {list(SCHEDULES)}")
    extra = sorted(set(value) - {"name", "step_size", "gamma"})
    if extra:
        raise _fail(f"{field_name}.{extra[0]}", "unknown option; allowed: name, step_size, gamma", source)
    return {"name": value.get("name", "constant"),
            "step_size": int(number(value.get("step_size", 10), f"{field_name}.step_size", source, integer=True,
                                    positive=True)),
            "gamma": number(value.get("gamma", 0.5), f"{field_name}.gamma", source, positive=True)}


def _validate(spec: dict, source: str | None) -> PhaseGridSpec:
    unknown = sorted(set(spec) - set(TOP_LEVEL))
    if unknown:
        raise _fail(unknown[0], f"unknown field; allowed fields are {list(TOP_LEVEL)}", source)
    kind = spec.get("kind", "phase_grid")
    if kind != "phase_grid":
        raise _fail("kind", f"only 'phase_grid' specs are supported, got {kind!r}", source)
    name = str(spec.get("name", Path(source).stem if source else "zoo"))

    try:
        task = normalize_task_spec(spec.get("task", "mnist1d"))
    except SpecError as exc:
        raise SpecError(f"{source + ': ' if source else ''}field 'task': {exc}") from exc

    arch_name, arch = parse_architecture(_mapping(spec, "architecture", source), "architecture", source)

    grid = _mapping(spec, "grid", source)
    extra = sorted(set(grid) - {"load", "temperature"})
    if extra:
        raise _fail(f"grid.{extra[0]}", "unknown axis; a grid has 'load' and 'temperature'", source)
    axes = {}
    for role in ("load", "temperature"):
        ax = grid.get(role)
        if not isinstance(ax, Mapping):
            raise _fail(f"grid.{role}", "is required: a mapping with 'param' and 'values'", source)
        param = ax.get("param")
        if not isinstance(param, str):
            raise _fail(f"grid.{role}.param", f"is required (a parameter name), got {param!r}", source)
        target, pname = _axis_target(param, arch_name, arch, f"grid.{role}.param", source)
        values = ax.get("values")
        if not isinstance(values, list) or not values:
            raise _fail(f"grid.{role}.values", f"expected a non-empty list, got {values!r}", source)
        for i, v in enumerate(values):
            _check_axis_value(pname, v, f"grid.{role}.values[{i}]", source)
        if len(set(map(canonical_json, values))) != len(values):
            raise _fail(f"grid.{role}.values", f"values must be distinct, got {values}", source)
        axes[role] = GridAxis(role, pname, target, list(values))
    if (axes["load"].target, axes["load"].param) == (axes["temperature"].target, axes["temperature"].param):
        raise _fail("grid.temperature.param", "must differ from grid.load.param", source)

    seeds = parse_seeds(spec.get("seeds", 1), "seeds", source)
    data_seed_offset = int(number(spec.get("data_seed_offset", 10_000), "data_seed_offset", source, integer=True))
    epochs = int(number(spec.get("epochs", 10), "epochs", source, integer=True, positive=True))

    optimizer = parse_optimizer(_mapping(spec, "optimizer", source, {"name": "sgd"}), "optimizer", source)
    schedule = parse_schedule(spec.get("schedule", {"name": "constant"}), "schedule", source)

    checkpoint_epochs = parse_checkpoints(spec.get("checkpoints", {"log_spaced": 3}), epochs, source)
    from generators.planner import parse_population_settings

    population = parse_population_settings(spec.get("population", {}), source)  # speed only: not in raw
    max_population = population.max_size

    raw = {
        "name": name, "kind": "phase_grid", "task": task, "architecture": {"name": arch_name, **arch},
        "grid": {r: {"param": axes[r].param, "target": axes[r].target, "values": axes[r].values} for r in axes},
        "seeds": seeds, "data_seed_offset": data_seed_offset, "epochs": epochs, "optimizer": optimizer,
        "schedule": schedule, "checkpoints": checkpoint_epochs,
    }
    return PhaseGridSpec(name, task, arch_name, arch, axes["load"], axes["temperature"], seeds, data_seed_offset,
                         epochs, optimizer, schedule, checkpoint_epochs, max_population, raw, population=population)


def _axis_target(param: str, arch_name: str, arch: Mapping, field_name: str, source: str | None) -> tuple[str, str]:
    if "." in param:
        target, pname = param.split(".", 1)
        target = {"optimizer": "training", "training": "training", "task": "task",
                  "architecture": "architecture"}.get(target, "")
        if not target:
            raise _fail(field_name, f"prefix must be one of task., architecture., optimizer.; got {param!r}", source)
        return target, pname
    if param in TRAINING_PARAMS:
        return "training", param
    if param in TASK_PARAMS:
        return "task", param
    import inspect

    from zoo.architectures import _REGISTRY

    accepted = [p for p in inspect.signature(_REGISTRY[arch_name]).parameters if p not in ("input_shape", "n_classes")]
    if param in accepted:
        return "architecture", param
    raise _fail(field_name, f"unknown parameter {param!r}; use one of {list(TRAINING_PARAMS) + list(TASK_PARAMS)} "
                f"or a config option of architecture {arch_name!r}: {accepted}", source)


def _check_axis_value(param: str, value: Any, field_name: str, source: str | None) -> None:
    if param in ("batch_size", "width", "depth"):
        number(value, field_name, source, integer=True, positive=True)
    elif param in ("lr", "train_fraction"):
        v = number(value, field_name, source, positive=True)
        if param == "train_fraction" and v > 1:
            raise _fail(field_name, f"a training-data fraction must be in (0, 1], got {value!r}", source)
    elif param in ("weight_decay", "momentum"):
        number(value, field_name, source, minimum=0)


def parse_checkpoints(value: Any, epochs: int, source: str | None, field_name: str = "checkpoints") -> list[int]:
    """Epochs to store: always the initialisation (0) and the final epoch, plus the schedule asked for:
    a list of epochs, ``{log_spaced: k, every: n}``, or ``{count: n}`` (exactly ``n`` epochs, the inner
    ones log-spaced and distinct)."""
    if isinstance(value, list):
        eps = [int(number(v, f"{field_name}[{i}]", source, integer=True, minimum=0)) for i, v in enumerate(value)]
        bad = [e for e in eps if e > epochs]
        if bad:
            raise _fail(field_name, f"epochs {bad} are beyond the last epoch {epochs}", source)
        return sorted(set(eps) | {0, epochs})
    if not isinstance(value, Mapping):
        raise _fail(field_name, f"expected a list of epochs or a mapping, got {value!r}", source)
    extra = sorted(set(value) - {"log_spaced", "every", "count"})
    if extra:
        raise _fail(f"{field_name}.{extra[0]}", "unknown option; allowed: log_spaced, every, count", source)
    if "count" in value:
        if len(value) > 1:
            raise _fail(f"{field_name}.count", "cannot be combined with log_spaced or every", source)
        return _count_checkpoints(int(number(value["count"], f"{field_name}.count", source, integer=True,
                                             minimum=2)), epochs, f"{field_name}.count", source)
    eps = {0, epochs}
    n_log = int(number(value.get("log_spaced", 0), f"{field_name}.log_spaced", source, integer=True, minimum=0))
    if n_log:
        eps |= {int(e) for e in np.unique(np.round(np.logspace(0, math.log10(max(epochs, 1)), n_log + 1)))}
    every = value.get("every")
    if every is not None:
        step = int(number(every, f"{field_name}.every", source, integer=True, positive=True))
        eps |= set(range(0, epochs + 1, step))
    return sorted(e for e in eps if 0 <= e <= epochs)


def _count_checkpoints(n: int, epochs: int, field_name: str, source: str | None) -> list[int]:
    """Epoch 0 and ``n - 1`` distinct epochs in ``1..epochs`` near ``epochs ** (i / (n - 1))``, i = 1..n-1
    (``n = 3``, 20 epochs: 0, 4, 20)."""
    if n - 1 > epochs:
        raise _fail(field_name, f"{n} checkpoints need at least {n - 1} epochs, got {epochs}", source)
    out = [0]
    targets = np.logspace(0, math.log10(epochs), n)[1:]
    for i, t in enumerate(targets):
        lo, hi = out[-1] + 1, epochs - (n - 2 - i)
        out.append(int(min(max(round(float(t)), lo), hi)))
    return out


