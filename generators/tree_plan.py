"""Plan a model-tree zoo: the derived tasks of the children and the models table, before any training.

Derived tasks are drawn from ``numpy.random.default_rng([children.seed, family, tree])`` per family
(``tree`` is 0 for every base when ``children.tasks: shared``, else ``1 + base index``), so adding a
family or a base never changes the tasks drawn for the others. Per-child learning rates (``lr_range``,
log-uniform) come from a separate stream, so switching them on leaves the tasks as they were.

Model ids: the K bases first (architectures outer, seeds inner), then the children base by base, each
base's children family by family (``class_subset``, ``label_permutation``, ``corruption``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from generators.tree_spec import DERIVATION_FAMILIES, Family, ModelTreeSpec
from zoo.architectures import architecture_record
from zoo.errors import SpecError
from zoo.format import architecture_key, short_hash
from zoo.tasks import build_task, normalize_task_spec

_LR_STREAM = 1000  # offset of the learning-rate streams' family index


@dataclass
class Derivation:
    """One derived task: its family, index within the family, task options and table columns."""

    family: str
    index: int
    options: dict      # added to the source task spec: {"class_subset": [...]} etc.
    columns: dict      # derivation parameters as models-table columns
    lr: float | None   # the child's own learning rate (from lr_range), else None


def class_column(class_id: int) -> str:
    """Models-table column of the multi-hot class label: ``class_<original class id>``."""
    return f"class_{int(class_id)}"


def _distinct(draw, count: int, capacity: int, field_name: str, what: str) -> list:
    """``count`` distinct results of ``draw()`` (tuples), or a SpecError when fewer than ``count`` exist."""
    if count > capacity:
        raise SpecError(f"field '{field_name}': {count} children need {count} distinct {what}, but only "
                        f"{capacity} exist")
    seen: set = set()
    out = []
    while len(out) < count:
        item = draw()
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _class_subsets(rng: np.random.Generator, family: Family, class_ids: list[int]) -> list[Derivation]:
    n = len(class_ids)
    field_name = "children.families.class_subset.size"
    lo, hi = family.options["size"] or [2, n - 1]
    if hi > n - 1 or lo > hi:
        raise SpecError(f"field '{field_name}': a class subset keeps 2..{n - 1} of the source task's {n} classes, "
                        f"got [{lo}, {hi}]")
    capacity = sum(math.comb(n, s) for s in range(lo, hi + 1))

    def draw() -> tuple:
        size = int(rng.integers(lo, hi + 1))
        return tuple(sorted(int(c) for c in rng.choice(class_ids, size=size, replace=False)))

    out = []
    for i, subset in enumerate(_distinct(draw, family.count, capacity, field_name, "class subsets")):
        out.append(Derivation("class_subset", i, {"class_subset": list(subset)},
                              {"class_subset": ",".join(map(str, subset)), "n_classes_trained": len(subset)}, None))
    return out


def _label_permutations(rng: np.random.Generator, family: Family, n: int) -> list[Derivation]:
    field_name = "children.families.label_permutation.moved"
    lo, hi = family.options["moved"] or [n, n]
    if hi > n or lo > hi:
        raise SpecError(f"field '{field_name}': a permutation moves 2..{n} of the source task's {n} labels, "
                        f"got [{lo}, {hi}]")
    # one cycle through k labels: C(n, k) * (k - 1)! distinct permutations move exactly k labels
    capacity = sum(math.comb(n, k) * math.factorial(k - 1) for k in range(lo, hi + 1))

    def draw() -> tuple:
        k = int(rng.integers(lo, hi + 1))
        cycle = rng.choice(n, size=k, replace=False)
        perm = np.arange(n)
        perm[cycle] = np.roll(cycle, -1)  # label cycle[i] becomes cycle[i + 1]
        return tuple(int(p) for p in perm)

    out = []
    for i, perm in enumerate(_distinct(draw, family.count, capacity, field_name, "label permutations")):
        moved = int(sum(p != j for j, p in enumerate(perm)))
        out.append(Derivation("label_permutation", i, {"label_permutation": list(perm)},
                              {"label_permutation": ",".join(map(str, perm)), "n_moved_classes": moved}, None))
    return out


def _corruptions(rng: np.random.Generator, family: Family) -> list[Derivation]:
    kinds = sorted(family.options["kinds"])
    out = []
    for i in range(family.count):
        kind = kinds[i % len(kinds)]  # kinds take turns, so each is represented evenly
        levels = family.options["kinds"][kind]
        if "levels" in levels:
            level = levels["levels"][int(rng.integers(len(levels["levels"])))]
        elif kind == "shift":
            level = int(rng.integers(levels["range"][0], levels["range"][1] + 1))
        else:
            level = float(f"{rng.uniform(*levels['range']):.4g}")
        corruption: dict[str, Any] = {"kind": kind, "level": level}
        seed = -1
        if kind == "noise":
            seed = int(rng.integers(0, 2**31 - 1))
            corruption["seed"] = seed
        out.append(Derivation("corruption", i, {"corruption": corruption},
                              {"corruption": kind, "corruption_level": float(level), "corruption_seed": seed}, None))
    return out


def derivations(spec: ModelTreeSpec, class_ids: list[int], base_index: int) -> list[Derivation]:
    """The derived tasks of the children of base ``base_index``, family by family (see module docstring)."""
    tree = 0 if spec.shared_tasks else 1 + base_index
    out: list[Derivation] = []
    for family in spec.families:
        f = DERIVATION_FAMILIES.index(family.name)
        rng = np.random.default_rng([spec.child_seed, f, tree])
        if family.name == "class_subset":
            derived = _class_subsets(rng, family, class_ids)
        elif family.name == "label_permutation":
            derived = _label_permutations(rng, family, len(class_ids))
        else:
            derived = _corruptions(rng, family)
        if family.lr_range is not None:
            lr_rng = np.random.default_rng([spec.child_seed, _LR_STREAM + f, tree])
            lo, hi = np.log(family.lr_range[0]), np.log(family.lr_range[1])
            for d in derived:
                d.lr = float(f"{math.exp(lr_rng.uniform(lo, hi)):.4g}")
        out.extend(derived)
    return out


#: Derivation columns of a model without that derivation (class_subset / n_classes_trained: all classes).
_NO_DERIVATION = {"label_permutation": "", "n_moved_classes": 0, "corruption": "none",
                  "corruption_level": float("nan"), "corruption_seed": -1}


def plan_tree(spec: ModelTreeSpec) -> tuple[pd.DataFrame, dict[str, dict], dict[str, dict], dict]:
    """:func:`tree_tables`; a :class:`SpecError` it raises names the spec file."""
    try:
        return tree_tables(spec)
    except SpecError as exc:
        if spec.source and not str(exc).startswith(spec.source):
            raise SpecError(f"{spec.source}: {exc}") from None
        raise


def tree_tables(spec: ModelTreeSpec) -> tuple[pd.DataFrame, dict[str, dict], dict[str, dict], dict]:
    """The models table, architecture records, task specs and the ``tree`` attribute of a tree zoo.

    Columns beyond the training settings: ``parent_id`` (-1 for bases), ``tree_id`` (the model id of
    the tree's base), ``tree_role`` (``base``/``child``), ``tree_depth`` (0/1), ``base_index``,
    ``derivation`` (``none`` or the family), ``derived_index`` (index of the derived task in its family),
    the derivation parameters (``class_subset``, ``n_classes_trained``, ``label_permutation``,
    ``n_moved_classes``, ``corruption``, ``corruption_level``, ``corruption_seed``) and the multi-hot
    class label ``class_<id>`` (bool, one column per class of the source task: the classes the model
    was trained on).
    """
    source = build_task(spec.task)
    class_ids = list(source.classes)
    source_key = "task-" + short_hash(spec.task)
    tasks: dict[str, dict] = {source_key: spec.task}
    archs: dict[str, dict] = {}
    base_keys = []
    for base in spec.bases:
        akey = architecture_key(base.architecture, base.arch_config, source.input_shape, source.n_classes)
        if akey not in archs:
            _, archs[akey] = architecture_record(base.architecture, source.input_shape, source.n_classes,
                                                 base.arch_config)
        base_keys.append(akey)
    option_names = sorted({k for b in spec.bases for k in b.arch_config})
    all_classes = {class_column(c): True for c in class_ids}
    full_subset = ",".join(map(str, class_ids))

    def training(role: str, optimizer: dict, lr: float | None) -> dict:
        t = spec.base_training if role == "base" else spec.child_training
        return {"train_fraction": float(spec.task["train_fraction"]), "optimizer": optimizer["name"],
                "lr": float(lr if lr is not None else optimizer["lr"]),
                "weight_decay": float(optimizer["weight_decay"]), "momentum": float(optimizer["momentum"]),
                "batch_size": int(optimizer["batch_size"]), "epochs": t.epochs, "schedule": t.schedule["name"]}

    def arch_columns(b: int) -> dict:
        cfg = spec.bases[b].arch_config
        akey = base_keys[b]
        return {"arch_key": akey, "architecture": spec.bases[b].architecture,
                **{k: _column_value(cfg.get(k)) for k in option_names},
                "n_params": int(archs[akey]["layout"]["n_params"])}

    rows = []
    for b, base in enumerate(spec.bases):
        rows.append({"model_id": b, **arch_columns(b), "task": source_key,
                     **training("base", spec.base_training.optimizer, None),
                     "init_seed": int(base.seed), "data_seed": int(base.seed) + spec.base_data_seed_offset,
                     "seed_index": base.seed_index, "arch_index": base.arch_index,
                     "parent_id": -1, "tree_id": b, "tree_role": "base", "tree_depth": 0, "base_index": b,
                     "derivation": "none", "derived_index": -1,
                     **_NO_DERIVATION, "class_subset": full_subset, "n_classes_trained": len(class_ids),
                     **all_classes})
    families = {f.name: f for f in spec.families}
    for b, base in enumerate(spec.bases):
        for j, d in enumerate(derivations(spec, class_ids, b)):
            corruption = d.options.get("corruption", {})
            if corruption.get("kind") == "shift" and abs(int(corruption["level"])) >= source.input_shape[-1]:
                raise SpecError(f"field 'children.families.corruption.kinds.shift': a shift of "
                                f"{int(corruption['level'])} positions leaves nothing of the source task's inputs "
                                f"(length {source.input_shape[-1]} along their last axis)")
            task = normalize_task_spec({**spec.task, **d.options})
            key = "task-" + short_hash(task)
            tasks[key] = task
            subset = d.options.get("class_subset", class_ids)
            row = {"model_id": len(rows), **arch_columns(b), "task": key,
                   **training("child", families[d.family].optimizer, d.lr),
                   "init_seed": -1, "data_seed": spec.child_data_seed_offset + j,
                   "seed_index": base.seed_index, "arch_index": base.arch_index,
                   "parent_id": b, "tree_id": b, "tree_role": "child", "tree_depth": 1, "base_index": b,
                   "derivation": d.family, "derived_index": d.index,
                   **_NO_DERIVATION, "class_subset": full_subset, "n_classes_trained": len(class_ids),
                   **d.columns, **{class_column(c): c in subset for c in class_ids}}
            rows.append(row)
    models = pd.DataFrame(rows)
    for name in option_names:  # an option of only some architectures: NaN (numbers) or "" (text) elsewhere
        present = [v for v in models[name] if v is not None]
        if len(present) < len(models):
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)
            models[name] = (models[name].astype(float) if numeric
                            else models[name].map(lambda v: "" if v is None else str(v)))
    tree = {
        "n_bases": len(spec.bases), "n_children": len(rows) - len(spec.bases),
        "children_per_base": {f.name: f.count for f in spec.families},
        "families": [f.name for f in spec.families],
        "class_ids": class_ids, "class_columns": [class_column(c) for c in class_ids],
        "source_task": source_key, "shared_tasks": spec.shared_tasks,
        "checkpoint_epochs": {"base": spec.base_training.checkpoint_epochs,
                              "child": spec.child_training.checkpoint_epochs},
    }
    return models, archs, tasks, tree


def _column_value(value: Any) -> Any:
    """An architecture option as a table value (sequences as text, missing as None)."""
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    return str(value)
