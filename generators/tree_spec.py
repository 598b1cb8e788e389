"""Model-tree specs (``kind: model_tree``): K base models, each fine-tuned into many children.

Example (the full format is in ``docs/SPECS.md``)::

    name: tree_demo
    kind: model_tree
    task: {source: mnist1d}
    optimizer: {name: sgd, lr: 0.05, momentum: 0.9, batch_size: 64}   # shared defaults
    bases:
      architectures: [{name: mlp, width: 32, depth: 2}]
      seeds: 2
      epochs: 20
    children:
      seed: 0
      epochs: 5
      optimizer: {lr: 0.01}
      families:
        class_subset: {count: 8, size: [2, 9]}
        label_permutation: {count: 4}
        corruption: {count: 6, kinds: {noise: {range: [0.1, 1.0]}, shift: {levels: [1, 2, 4]},
                                       scale: {range: [0.5, 2.0]}}}

Every error names the field (``children.families.corruption.kinds.noise.range[1]: ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from zoo.errors import SpecError
from zoo.format import short_hash
from zoo.tasks import CORRUPTION_KINDS, DERIVED_OPTIONS, normalize_task_spec

from generators.spec import (
    _fail,
    number,
    parse_architecture,
    parse_checkpoints,
    parse_optimizer,
    parse_schedule,
    parse_seeds,
)

TOP_LEVEL = ("name", "kind", "description", "task", "optimizer", "bases", "children", "population", "splits")
BASES_FIELDS = ("architecture", "architectures", "seeds", "data_seed_offset", "epochs", "optimizer", "schedule",
                "checkpoints")
CHILDREN_FIELDS = ("seed", "tasks", "epochs", "optimizer", "lr_range", "schedule", "checkpoints", "data_seed_offset",
                   "families")
#: Derivation families, in the order their children are planned (the derived-task options of zoo.tasks).
FAMILIES = DERIVED_OPTIONS
FAMILY_FIELDS = {
    "class_subset": ("count", "size", "optimizer", "lr_range"),
    "label_permutation": ("count", "moved", "optimizer", "lr_range"),
    "corruption": ("count", "kinds", "optimizer", "lr_range"),
}
SPLIT_FIELDS = ("seed", "fractions", "ood_family", "ood_task_fraction")


@dataclass
class Training:
    """How one role (bases or children) trains: epochs, optimiser, schedule, checkpoint epochs."""

    epochs: int
    optimizer: dict
    schedule: dict
    checkpoint_epochs: list[int]

    def record(self) -> dict:
        return {"epochs": self.epochs, "optimizer": self.optimizer, "schedule": self.schedule,
                "checkpoints": self.checkpoint_epochs}


@dataclass
class BaseModel:
    """One base model: its architecture and seed (``init_seed = seed``)."""

    architecture: str
    arch_config: dict
    seed: int
    seed_index: int
    arch_index: int


@dataclass
class Family:
    """One derivation family: how many children per base, their derivation ranges and optimiser."""

    name: str
    count: int
    options: dict          # class_subset: size; label_permutation: moved; corruption: kinds
    optimizer: dict        # complete optimiser record (children's defaults with this family's overrides)
    lr_range: list[float] | None


@dataclass
class ModelTreeSpec:
    """A validated model-tree spec (``raw`` is the canonical dict it was built from)."""

    name: str
    task: dict
    bases: list[BaseModel]
    base_training: Training
    base_data_seed_offset: int
    child_training: Training
    child_seed: int
    shared_tasks: bool
    child_data_seed_offset: int
    families: list[Family]
    max_population: int
    splits: dict
    raw: dict = field(default_factory=dict)
    analysis: Any = None  # generators.analysis.Analysis: landscape metrics (no phases: no grid)
    population: Any = None  # generators.planner.PopulationSettings (speed only, not in the spec hash)

    @property
    def kind(self) -> str:
        return "model_tree"

    @property
    def spec_hash(self) -> str:
        from generators.analysis import training_record

        return short_hash(training_record(self.raw), 16)

    @property
    def checkpoint_epochs(self) -> list[int]:
        """The children's checkpoint epochs (the store's ``checkpoint_epochs``)."""
        return self.child_training.checkpoint_epochs

    @property
    def n_children_per_base(self) -> int:
        return sum(f.count for f in self.families)


def _where(source: str | None) -> str:
    return f"{source}: " if source else ""


def _check_fields(value: Any, allowed: tuple, field_name: str, source: str | None) -> dict:
    if not isinstance(value, Mapping):
        raise _fail(field_name, f"expected a mapping, got {value!r}", source)
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        name = f"{field_name}.{unknown[0]}" if field_name else unknown[0]
        raise _fail(name, f"unknown field; allowed fields are {list(allowed)}", source)
    return dict(value)


def _range(value: Any, field_name: str, source: str | None, parse: Callable[[Any, str], Any],
           what: str = "") -> list:
    """``[low, high]`` with each end checked by ``parse(value, field name)`` and ``low <= high``."""
    if not isinstance(value, list) or len(value) != 2:
        raise _fail(field_name, f"expected [low, high]{what}, got {value!r}", source)
    lo, hi = (parse(v, f"{field_name}[{i}]") for i, v in enumerate(value))
    if lo > hi:
        raise _fail(field_name, f"low {lo} is above high {hi}", source)
    return [lo, hi]


def _int_range(value: Any, field_name: str, source: str | None, minimum: int) -> list[int]:
    return _range(value, field_name, source,
                  lambda v, name: int(number(v, name, source, integer=True, minimum=minimum)))


def _lr_range(value: Any, field_name: str, source: str | None) -> list[float] | None:
    if value is None:
        return None
    return _range(value, field_name, source, lambda v, name: float(number(v, name, source, positive=True)),
                  " learning rates")


def _training(section: Mapping, prefix: str, source: str | None, shared_optimizer: dict, default_epochs: int,
              default_checkpoints: Any) -> Training:
    epochs = int(number(section.get("epochs", default_epochs), f"{prefix}.epochs", source, integer=True,
                        positive=True))
    optimizer = parse_optimizer(section.get("optimizer", {}), f"{prefix}.optimizer", source, shared_optimizer)
    schedule = parse_schedule(section.get("schedule", {"name": "constant"}), f"{prefix}.schedule", source)
    checkpoints = parse_checkpoints(section.get("checkpoints", default_checkpoints), epochs, source,
                                    f"{prefix}.checkpoints")
    return Training(epochs, optimizer, schedule, checkpoints)


def _levels(kind: str, value: Any, field_name: str, source: str | None) -> dict:
    """``{"range": [lo, hi]}`` or ``{"levels": [...]}`` of one corruption kind, checked for that kind."""
    spec = _check_fields(value, ("range", "levels"), field_name, source)
    if len(spec) != 1:
        raise _fail(field_name, "give exactly one of 'range' ([low, high]) or 'levels' (a list)", source)
    integer = CORRUPTION_KINDS[kind]

    def level(v: Any, name: str) -> float | int:
        out = number(v, name, source, integer=integer)
        if integer and out == 0:
            raise _fail(name, "a shift of 0 positions is no corruption", source)
        if not integer and out <= 0:
            raise _fail(name, f"a {kind} level must be > 0, got {v!r}", source)
        return out

    if "levels" in spec:
        values = spec["levels"]
        if not isinstance(values, list) or not values:
            raise _fail(f"{field_name}.levels", f"expected a non-empty list, got {values!r}", source)
        return {"levels": [level(v, f"{field_name}.levels[{i}]") for i, v in enumerate(values)]}
    lo, hi = _range(spec["range"], f"{field_name}.range", source, level)
    if integer and lo < 0 < hi:
        raise _fail(f"{field_name}.range", f"a shift range must not contain 0, got [{lo}, {hi}]", source)
    return {"range": [lo, hi]}


def _family(name: str, value: Any, source: str | None, child_optimizer: dict, child_lr_range: list | None
            ) -> Family:
    prefix = f"children.families.{name}"
    spec = _check_fields(value if value is not None else {}, FAMILY_FIELDS[name], prefix, source)
    count = int(number(spec.get("count", 0), f"{prefix}.count", source, integer=True, minimum=0))
    options: dict[str, Any] = {}
    if name == "class_subset":
        size = spec.get("size")
        options["size"] = None if size is None else _int_range(size, f"{prefix}.size", source, minimum=2)
    elif name == "label_permutation":
        moved = spec.get("moved")
        options["moved"] = None if moved is None else _int_range(moved, f"{prefix}.moved", source, minimum=2)
    else:
        kinds = spec.get("kinds")
        if not isinstance(kinds, Mapping) or not kinds:
            raise _fail(f"{prefix}.kinds", f"is required: a mapping of corruption kinds {list(CORRUPTION_KINDS)} to "
                        f"{{range: [low, high]}} or {{levels: [...]}}, got {kinds!r}", source)
        unknown = sorted(set(kinds) - set(CORRUPTION_KINDS))
        if unknown:
            raise _fail(f"{prefix}.kinds.{unknown[0]}", f"unknown corruption kind; choose from "
                        f"{list(CORRUPTION_KINDS)}", source)
        options["kinds"] = {k: _levels(k, kinds[k], f"{prefix}.kinds.{k}", source) for k in sorted(kinds)}
    optimizer = parse_optimizer(spec.get("optimizer", {}), f"{prefix}.optimizer", source, child_optimizer)
    lr_range = _lr_range(spec.get("lr_range"), f"{prefix}.lr_range", source) if "lr_range" in spec else child_lr_range
    return Family(name, count, options, optimizer, lr_range)


def _splits(value: Any, families: list[Family], source: str | None) -> dict:
    spec = _check_fields(value if value is not None else {}, SPLIT_FIELDS, "splits", source)
    fractions = spec.get("fractions", [0.7, 0.15, 0.15])
    if not isinstance(fractions, list) or len(fractions) != 3:
        raise _fail("splits.fractions", f"expected [train, val, test], got {fractions!r}", source)
    fractions = [float(number(f, f"splits.fractions[{i}]", source, minimum=0)) for i, f in enumerate(fractions)]
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise _fail("splits.fractions", f"must sum to 1, got {fractions}", source)
    present = [f.name for f in families if f.count > 0]
    default_family = "corruption" if "corruption" in present else present[-1]
    ood_family = spec.get("ood_family", default_family)
    if ood_family not in present:
        raise _fail("splits.ood_family", f"must be a family with children: {present}, got {ood_family!r}", source)
    task_fraction = number(spec.get("ood_task_fraction", 0.25), "splits.ood_task_fraction", source, positive=True)
    if task_fraction >= 1:
        raise _fail("splits.ood_task_fraction", f"must be in (0, 1), got {task_fraction}", source)
    return {"seed": int(number(spec.get("seed", 0), "splits.seed", source, integer=True, minimum=0)),
            "fractions": fractions, "ood_family": ood_family, "ood_task_fraction": float(task_fraction)}


def validate_tree_spec(spec: dict, source: str | None) -> ModelTreeSpec:
    """Validate a ``kind: model_tree`` spec dict; errors name the field."""
    spec = _check_fields(spec, TOP_LEVEL, "", source)
    name = str(spec.get("name", Path(source).stem if source else "zoo"))
    try:
        task = normalize_task_spec(spec.get("task", "mnist1d"))
    except SpecError as exc:
        raise SpecError(f"{_where(source)}field 'task': {exc}") from exc
    derived = [k for k in FAMILIES if k in task]
    if derived:
        raise _fail(f"task.{derived[0]}", "the source task of a tree cannot itself be derived; derived tasks "
                    "come from children.families", source)
    shared_opt = parse_optimizer(spec.get("optimizer", {"name": "sgd"}), "optimizer", source)

    if spec.get("bases") is None:
        raise _fail("bases", "is required: a mapping with 'architectures' (or 'architecture') and 'seeds'", source)
    bases_spec = _check_fields(spec["bases"], BASES_FIELDS, "bases", source)
    if ("architecture" in bases_spec) == ("architectures" in bases_spec):
        raise _fail("bases.architectures", "give exactly one of 'architecture' (a mapping) or 'architectures' "
                    "(a list of mappings)", source)
    if "architecture" in bases_spec:
        arch_list = [(parse_architecture(bases_spec["architecture"], "bases.architecture", source))]
    else:
        archs = bases_spec["architectures"]
        if not isinstance(archs, list) or not archs:
            raise _fail("bases.architectures", f"expected a non-empty list of architectures, got {archs!r}", source)
        arch_list = [parse_architecture(a, f"bases.architectures[{i}]", source) for i, a in enumerate(archs)]
    seeds = parse_seeds(bases_spec.get("seeds", 1), "bases.seeds", source)
    bases = [BaseModel(arch, cfg, seed, si, ai) for ai, (arch, cfg) in enumerate(arch_list)
             for si, seed in enumerate(seeds)]
    base_training = _training(bases_spec, "bases", source, shared_opt, 10, {"count": 3})
    base_offset = int(number(bases_spec.get("data_seed_offset", 10_000), "bases.data_seed_offset", source,
                             integer=True))

    children_spec = spec.get("children")
    if children_spec is None:
        raise _fail("children", "is required: a mapping with 'families'", source)
    children_spec = _check_fields(children_spec, CHILDREN_FIELDS, "children", source)
    n_ckpt = len(base_training.checkpoint_epochs)
    child_training = _training(children_spec, "children", source, shared_opt, 5, {"count": n_ckpt})
    if len(child_training.checkpoint_epochs) != n_ckpt:
        raise _fail("children.checkpoints", f"a tree zoo has one checkpoint axis: children need as many checkpoints "
                    f"as the bases ({n_ckpt}: epochs {base_training.checkpoint_epochs}), got "
                    f"{child_training.checkpoint_epochs}", source)
    child_seed = int(number(children_spec.get("seed", 0), "children.seed", source, integer=True, minimum=0))
    tasks_mode = children_spec.get("tasks", "shared")
    if tasks_mode not in ("shared", "per_base"):
        raise _fail("children.tasks", f"expected 'shared' (every base gets the same derived tasks) or 'per_base', "
                    f"got {tasks_mode!r}", source)
    child_offset = int(number(children_spec.get("data_seed_offset", 20_000), "children.data_seed_offset", source,
                              integer=True))
    child_lr_range = _lr_range(children_spec.get("lr_range"), "children.lr_range", source)
    fam_spec = children_spec.get("families")
    if not isinstance(fam_spec, Mapping) or not fam_spec:
        raise _fail("children.families", f"is required: a mapping of families {list(FAMILIES)} to their settings, "
                    f"got {fam_spec!r}", source)
    unknown = sorted(set(fam_spec) - set(FAMILIES))
    if unknown:
        raise _fail(f"children.families.{unknown[0]}", f"unknown derivation family; choose from {list(FAMILIES)}",
                    source)
    families = [_family(f, fam_spec[f], source, child_training.optimizer, child_lr_range)
                for f in FAMILIES if f in fam_spec]
    if sum(f.count for f in families) == 0:
        raise _fail("children.families", "every family has count 0; a tree needs children", source)
    from generators.planner import parse_population_settings

    population = parse_population_settings(spec.get("population", {}), source, allowed=("max_size", "threads"))
    max_population = population.max_size
    splits = _splits(spec.get("splits"), families, source)

    raw = {
        "name": name, "kind": "model_tree", "task": task,
        "bases": {"architectures": [{"name": a, **c} for a, c in arch_list], "seeds": seeds,
                  "data_seed_offset": base_offset, **base_training.record()},
        "children": {"seed": child_seed, "tasks": tasks_mode, "data_seed_offset": child_offset,
                     **child_training.record(),
                     "families": {f.name: {"count": f.count, **f.options, "optimizer": f.optimizer,
                                           "lr_range": f.lr_range} for f in families}},
        "splits": splits,
    }
    return ModelTreeSpec(name, task, bases, base_training, base_offset, child_training, child_seed,
                         tasks_mode == "shared", child_offset, families, max_population, splits, raw,
                         population=population)
