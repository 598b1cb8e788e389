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
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator
from typing_extensions import Annotated

from generators.analysis import Analysis, LandscapeField, PhasesField, training_record
from generators.spec_fields import (
    Architecture,
    Checkpoints,
    CheckpointSchedule,
    Description,
    Optimizer,
    Schedule,
    ScheduleField,
    Seeds,
    TaskField,
    TreePopulationSettings,
    canonical_task,
    checkpoint_epochs,
    layered_optimizer,
    seed_list,
)
from zoo.format import short_hash
from zoo.tasks import CORRUPTION_KINDS, DERIVED_OPTIONS
from zoo.validation import FieldError, Int, Number, SpecModel, Str, as_int, as_number, drop_nulls, known_keys, validate

#: Derivation families, in the order their children are planned (the derived-task options of zoo.tasks).
DERIVATION_FAMILIES = DERIVED_OPTIONS


# ------------------------------------------------------------------------------------ the YAML schema
class OptimizerOverride(SpecModel):
    """Optimiser fields laid over the enclosing section's optimiser (any subset of :class:`Optimizer`'s
    fields; the momentum is kept only when the optimiser name stays the same)."""

    name: Optional[str] = None
    lr: Optional[Number] = None
    weight_decay: Optional[Number] = None
    momentum: Optional[Number] = None
    batch_size: Optional[Int] = None
    betas: Optional[list[Number]] = None
    eps: Optional[Number] = None

    def over(self, base: Mapping[str, Any], path: tuple) -> dict:
        """The complete optimiser record of these fields over ``base`` (validated; errors at ``path``)."""
        merged = layered_optimizer(self.model_dump(exclude_none=True), base)
        try:
            return validate(Optimizer, merged).record()
        except Exception as exc:  # a SpecError of the merged record: put it at path
            field_name = getattr(exc, "field", None)
            if field_name is None:
                raise
            raise FieldError(exc.reason, (*path, *field_name.split(".")),
                             unknown_name=type(exc).__name__ == "UnknownNameError") from None


def _positive(value: Any) -> float:
    v = as_number(value)
    if v <= 0:
        raise FieldError(f"must be > 0, got {value!r}")
    return v


def _int_at_least(minimum: int):
    def check(value: Any) -> int:
        v = as_int(value)
        if v < minimum:
            raise FieldError(f"must be >= {minimum}, got {value!r}")
        return v
    return check


def _ordered(value: list) -> list:
    if value[0] > value[1]:
        raise FieldError(f"low {value[0]} is above high {value[1]}")
    return value


def _pair(check) -> Any:
    """``[low, high]`` with each end checked by ``check`` and ``low <= high``."""
    end = Annotated[Any, BeforeValidator(check)]
    return Annotated[list[end], Field(min_length=2, max_length=2), BeforeValidator(_a_pair),
                     AfterValidator(_ordered)]


def _a_pair(value: Any) -> Any:
    if not isinstance(value, list) or len(value) != 2:
        raise FieldError(f"expected [low, high], got {value!r}")
    return value


LrRange = _pair(_positive)
SizeRange = _pair(_int_at_least(2))


class Levels(SpecModel):
    """Levels of one corruption kind: ``range: [low, high]`` (each child draws one) or ``levels: [...]``."""

    range: Optional[list[Number]] = None
    levels: Optional[Annotated[list[Number], Field(min_length=1)]] = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and set(data) <= {"range", "levels"} and len(data) != 1:
            raise FieldError("give exactly one of 'range' ([low, high]) or 'levels' (a list)")
        return data

    def record(self, kind: str, path: tuple) -> dict:
        """``{"range": [lo, hi]}`` or ``{"levels": [...]}`` checked for ``kind`` (shifts: whole positions, not 0)."""
        integer = CORRUPTION_KINDS[kind]

        def level(v: float, where: tuple) -> float | int:
            if integer:
                if not float(v).is_integer():
                    raise FieldError(f"expected an integer, got {v!r}", where)
                if v == 0:
                    raise FieldError("a shift of 0 positions is no corruption", where)
                return int(v)
            if v <= 0:
                raise FieldError(f"a {kind} level must be > 0, got {v!r}", where)
            return float(v)

        if self.levels is not None:
            return {"levels": [level(v, (*path, "levels", i)) for i, v in enumerate(self.levels)]}
        if len(self.range) != 2:
            raise FieldError(f"expected [low, high], got {self.range!r}", (*path, "range"))
        lo, hi = (level(v, (*path, "range", i)) for i, v in enumerate(self.range))
        if lo > hi:
            raise FieldError(f"low {lo} is above high {hi}", (*path, "range"))
        if integer and lo < 0 < hi:
            raise FieldError(f"a shift range must not contain 0, got [{lo}, {hi}]", (*path, "range"))
        return {"range": [lo, hi]}


class _FamilyBase(SpecModel):
    count: Int = Field(default=0, ge=0, description="children per base")
    optimizer: OptimizerOverride = OptimizerOverride()
    lr_range: Optional[LrRange] = Field(default=None, description="each child draws its learning rate "
                                        "log-uniformly from [low, high] (default: the children's)")


class ClassSubsetFamily(_FamilyBase):
    """Children fine-tuned on a subset of the source's classes (labels keep the parent's label space)."""

    size: Optional[SizeRange] = Field(default=None, description="[low, high] classes per subset")

    def options(self, path: tuple) -> dict:
        return {"size": self.size}


class LabelPermutationFamily(_FamilyBase):
    """Children fine-tuned with permuted labels."""

    moved: Optional[SizeRange] = Field(default=None, description="[low, high] labels moved by the permutation")

    def options(self, path: tuple) -> dict:
        return {"moved": self.moved}


class CorruptionFamily(_FamilyBase):
    """Children fine-tuned on corrupted inputs (kinds noise, shift, scale)."""

    kinds: dict[str, Levels]

    @field_validator("kinds", mode="before")
    @classmethod
    def _known_kinds(cls, value: Any) -> Any:
        return known_keys(value, CORRUPTION_KINDS, "corruption kind", "{range: [low, high]} or {levels: [...]}")

    def options(self, path: tuple) -> dict:
        return {"kinds": {k: self.kinds[k].record(k, (*path, "kinds", k)) for k in sorted(self.kinds)}}


def _family(model: type) -> Any:
    return Annotated[Optional[model], BeforeValidator(lambda v: {} if v is None else v)]


class Families(SpecModel):
    """The derivation families of a tree's children (at least one with children)."""

    class_subset: _family(ClassSubsetFamily) = None
    label_permutation: _family(LabelPermutationFamily) = None
    corruption: _family(CorruptionFamily) = None


class Bases(SpecModel):
    """The base models: architectures x seeds, trained on the source task."""

    architecture: Optional[Architecture] = None
    architectures: Optional[Annotated[list[Architecture], Field(min_length=1)]] = None
    seeds: Seeds = 1
    data_seed_offset: Int = 10_000
    epochs: Int = Field(default=10, gt=0)
    optimizer: OptimizerOverride = OptimizerOverride()
    schedule: ScheduleField = Schedule()
    checkpoints: Checkpoints = CheckpointSchedule(count=3)

    @model_validator(mode="before")
    @classmethod
    def _one_architecture_field(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and ("architecture" in data) == ("architectures" in data):
            raise FieldError("give exactly one of 'architecture' (a mapping) or 'architectures' (a list of "
                             "mappings)", ("architectures",))
        return data

    @property
    def architecture_list(self) -> list[Architecture]:
        return [self.architecture] if self.architecture is not None else list(self.architectures)


class Children(SpecModel):
    """The children: fine-tuned from their parent's final weights on derived tasks."""

    seed: Int = Field(default=0, ge=0, description="seed of the derived tasks")
    tasks: Literal["shared", "per_base"] = Field(default="shared", description="shared: every base gets the same "
                                                 "derived tasks; per_base: each base draws its own")
    epochs: Int = Field(default=5, gt=0)
    optimizer: OptimizerOverride = OptimizerOverride()
    lr_range: Optional[LrRange] = None
    schedule: ScheduleField = Schedule()
    checkpoints: Optional[Checkpoints] = Field(default=None, description="default: as many as the bases")
    data_seed_offset: Int = 20_000
    families: Families

    @field_validator("families", mode="before")
    @classmethod
    def _some_families(cls, value: Any) -> Any:
        return known_keys(value, DERIVATION_FAMILIES, "derivation family", "their settings")


class TreeSplits(SpecModel):
    """The standard splits of a tree zoo (``docs/SPECS.md``)."""

    seed: Int = Field(default=0, ge=0)
    fractions: Annotated[list[Annotated[Number, Field(ge=0)]], Field(min_length=3, max_length=3)] = [0.7, 0.15, 0.15]
    ood_family: Optional[Str] = Field(default=None, description="default: corruption if it has children, else the "
                                      "last family with children")
    ood_task_fraction: Number = Field(default=0.25, gt=0, lt=1)

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, value: list) -> list:
        if abs(sum(value) - 1.0) > 1e-6:
            raise FieldError(f"must sum to 1, got {value}")
        return value


class ModelTreeSchema(SpecModel):
    """A model-tree spec as written in YAML (see the module docstring)."""

    name: Optional[Str] = Field(default=None, description="default: the file name")
    kind: Literal["model_tree"]
    description: Description = None
    task: TaskField = "mnist1d"
    optimizer: Optimizer = Optimizer()
    bases: Bases
    children: Children
    population: TreePopulationSettings = TreePopulationSettings()
    splits: TreeSplits = TreeSplits()
    landscape: LandscapeField = True
    phases: PhasesField = True

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        return drop_nulls(data, ("landscape", "phases", "splits", "population"))

    @field_validator("task", mode="wrap")
    @classmethod
    def _canonical_task(cls, value: Any, handler: Any) -> dict:
        task = canonical_task(value)
        derived = [k for k in DERIVATION_FAMILIES if k in task]
        if derived:
            raise FieldError("the source task of a tree cannot itself be derived; derived tasks come from "
                             "children.families", (derived[0],))
        return task

    @model_validator(mode="after")
    def _sections_agree(self) -> "ModelTreeSchema":
        resolve_tree(self)  # checks that span sections (checkpoint counts, families, splits), with field paths
        return self


# ------------------------------------------------------------------------------------ the parsed spec
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
    analysis: Optional[Analysis] = None  # landscape metrics (phases need a grid)
    population: TreePopulationSettings = field(default_factory=TreePopulationSettings)  # speed only
    source: Optional[str] = None  # the spec file, named in errors found when planning

    @property
    def kind(self) -> str:
        return "model_tree"

    @property
    def spec_hash(self) -> str:
        return short_hash(training_record(self.raw), 16)

    @property
    def checkpoint_epochs(self) -> list[int]:
        """The children's checkpoint epochs (the store's ``checkpoint_epochs``)."""
        return self.child_training.checkpoint_epochs

    @property
    def n_children_per_base(self) -> int:
        return sum(f.count for f in self.families)


def _training(section: Union[Bases, Children], prefix: str, shared_optimizer: dict, checkpoints: Any) -> Training:
    optimizer = section.optimizer.over(shared_optimizer, (prefix, "optimizer"))
    epochs = checkpoint_epochs(checkpoints, section.epochs, (prefix, "checkpoints"))
    return Training(section.epochs, optimizer, section.schedule.model_dump(), epochs)


def _families(children: Children, child_optimizer: dict, child_lr_range: list | None) -> list[Family]:
    out = []
    for name in DERIVATION_FAMILIES:
        fam = getattr(children.families, name)
        if fam is None:
            continue
        path = ("children", "families", name)
        lr_range = fam.lr_range if "lr_range" in fam.model_fields_set else child_lr_range
        out.append(Family(name, fam.count, fam.options(path), fam.optimizer.over(child_optimizer,
                                                                                 (*path, "optimizer")),
                          None if lr_range is None else [float(v) for v in lr_range]))
    if sum(f.count for f in out) == 0:
        raise FieldError("every family has count 0; a tree needs children", ("children", "families"))
    return out


def _splits(splits: TreeSplits, families: list[Family]) -> dict:
    present = [f.name for f in families if f.count > 0]
    default_family = "corruption" if "corruption" in present else present[-1]
    ood_family = splits.ood_family or default_family
    if ood_family not in present:
        raise FieldError(f"must be a family with children: {present}, got {ood_family!r}", ("splits", "ood_family"))
    return {"seed": splits.seed, "fractions": [float(f) for f in splits.fractions], "ood_family": ood_family,
            "ood_task_fraction": float(splits.ood_task_fraction)}


def resolve_tree(s: ModelTreeSchema) -> dict:
    """The trainings, seeds, families and splits of a validated tree schema (raises :class:`FieldError`)."""
    shared = s.optimizer.record()
    base_training = _training(s.bases, "bases", shared, s.bases.checkpoints)
    n_ckpt = len(base_training.checkpoint_epochs)
    child_training = _training(s.children, "children", shared,
                               s.children.checkpoints if s.children.checkpoints is not None
                               else CheckpointSchedule(count=n_ckpt))
    if len(child_training.checkpoint_epochs) != n_ckpt:
        raise FieldError(f"a tree zoo has one checkpoint axis: children need as many checkpoints as the bases "
                         f"({n_ckpt}: epochs {base_training.checkpoint_epochs}), got "
                         f"{child_training.checkpoint_epochs}", ("children", "checkpoints"))
    seeds = seed_list(s.bases.seeds, ("bases", "seeds"))
    child_lr_range = None if s.children.lr_range is None else [float(v) for v in s.children.lr_range]
    families = _families(s.children, child_training.optimizer, child_lr_range)
    return {"base_training": base_training, "child_training": child_training, "seeds": seeds,
            "families": families, "splits": _splits(s.splits, families)}


def parse_model_tree(spec: Mapping[str, Any], source: Optional[str] = None) -> ModelTreeSpec:
    """Validate a ``kind: model_tree`` spec mapping; raises ``SpecError`` naming ``source`` and the field."""
    s = validate(ModelTreeSchema, spec, source=source)
    p = resolve_tree(s)
    name = s.name or (Path(source).stem if source else "zoo")
    arch_list = [(a.name, a.options) for a in s.bases.architecture_list]
    seeds, base_training, child_training = p["seeds"], p["base_training"], p["child_training"]
    bases = [BaseModel(arch, cfg, seed, si, ai) for ai, (arch, cfg) in enumerate(arch_list)
             for si, seed in enumerate(seeds)]
    families: list[Family] = p["families"]
    raw = {
        "name": name, "kind": "model_tree", "task": s.task,
        "bases": {"architectures": [{"name": a, **c} for a, c in arch_list], "seeds": seeds,
                  "data_seed_offset": s.bases.data_seed_offset, **base_training.record()},
        "children": {"seed": s.children.seed, "tasks": s.children.tasks,
                     "data_seed_offset": s.children.data_seed_offset, **child_training.record(),
                     "families": {f.name: {"count": f.count, **f.options, "optimizer": f.optimizer,
                                           "lr_range": f.lr_range} for f in families}},
        "splits": p["splits"],
    }
    analysis = Analysis.from_fields(s.landscape, s.phases)
    raw.update(analysis.record())
    return ModelTreeSpec(name, s.task, bases, base_training, s.bases.data_seed_offset, child_training, s.children.seed,
                         s.children.tasks == "shared", s.children.data_seed_offset, families, s.population.max_size,
                         p["splits"], raw, analysis, s.population, source)
