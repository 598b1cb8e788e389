"""Generate a phase-grid zoo: a load axis x a temperature axis x seeds, trained as populations.

:func:`plan_models` turns a spec into the models table (one row per model, fixed before any training);
:func:`grid_plan` groups the models into populations across the grid (:mod:`generators.planner`:
members of different widths, batch sizes and training-data fractions train together).
:data:`KIND` is the phase grid's :class:`generators.kinds.ZooKind` (registered as ``phase_grid``);
:func:`generators.driver.generate` trains it.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from generators.grid_spec import PhaseGridSchema, PhaseGridSpec, parse_phase_grid
from generators.kinds import Population, TrainingJob, ZooKind, ZooPlan, register_zoo_kind
from generators.planner import Plan, plan_populations, plan_table
from generators.population import Member, PopulationConfig
from zoo.architectures import architecture_record
from zoo.format import architecture_key, short_hash
from zoo.store import Zoo
from zoo.tasks import TaskData, build_task, normalize_task_spec

__all__ = ["KIND", "grid_plan", "plan_models", "populations", "population_config"]


def _with_axis(spec: PhaseGridSpec, load_value: Any, temp_value: Any) -> tuple[dict, dict, dict]:
    """Task spec, architecture config and training settings of one grid cell."""
    task = dict(spec.task)
    arch = dict(spec.arch_config)
    train = dict(spec.optimizer)
    for axis, value in ((spec.load, load_value), (spec.temperature, temp_value)):
        target = {"task": task, "architecture": arch, "training": train}[axis.target]
        target[axis.param] = value
    return normalize_task_spec(task), arch, train


def plan_models(spec: PhaseGridSpec) -> tuple[pd.DataFrame, dict[str, dict], dict[str, dict]]:
    """The models table, architecture records and task specs of a phase grid.

    Model ids run over load values (outer), temperature values, then seeds (inner). A seed ``s`` gives
    ``init_seed = s`` and ``data_seed = s + data_seed_offset``: the same seed starts from the same
    initial weights in every cell of one architecture.
    """
    rows, archs, tasks = [], {}, {}
    task_data_shapes: dict[str, tuple] = {}
    cells = itertools.product(enumerate(spec.load.values), enumerate(spec.temperature.values))
    for cell, ((li, lv), (ti, tv)) in enumerate(cells):
        task, arch_cfg, train = _with_axis(spec, lv, tv)
        task_key = "task-" + short_hash(task)
        tasks[task_key] = task
        if task_key not in task_data_shapes:
            data = build_task(task)
            task_data_shapes[task_key] = (data.input_shape, data.n_classes)
        input_shape, n_classes = task_data_shapes[task_key]
        akey = architecture_key(spec.architecture, arch_cfg, input_shape, n_classes)
        if akey not in archs:
            _, archs[akey] = architecture_record(spec.architecture, input_shape, n_classes, arch_cfg)
        n_params = archs[akey]["layout"]["n_params"]
        for si, seed in enumerate(spec.seeds):
            row = {
                "model_id": len(rows), "arch_key": akey, "architecture": spec.architecture, "task": task_key,
                **{k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in arch_cfg.items()},
                "train_fraction": float(task.get("train_fraction", 1.0)),
                "optimizer": train["name"], "lr": float(train["lr"]), "weight_decay": float(train["weight_decay"]),
                "momentum": float(train["momentum"]), "batch_size": int(train["batch_size"]),
                "epochs": spec.epochs, "schedule": spec.schedule["name"],
                "init_seed": int(seed), "data_seed": int(seed) + spec.data_seed_offset, "seed_index": si,
                "grid_load": float(lv), "grid_temperature": float(tv), "grid_load_index": li,
                "grid_temperature_index": ti, "grid_cell": cell, "parent_id": -1, "n_params": int(n_params),
            }
            rows.append(row)
    return pd.DataFrame(rows), archs, tasks


def grid_plan(spec: PhaseGridSpec, models: pd.DataFrame, architectures: Mapping[str, dict],
              tasks: Mapping[str, Any]) -> Plan:
    """The :class:`generators.planner.Plan` of a phase grid's models under the spec's ``population``
    settings."""
    return plan_populations(models, architectures, tasks, spec.population, epochs=spec.epochs,
                            n_checkpoints=len(spec.checkpoint_epochs), optimizer=spec.optimizer["name"])


def populations(spec: PhaseGridSpec, models: pd.DataFrame, architectures: Mapping[str, dict],
                tasks: Mapping[str, Any]) -> list[Population]:
    """The phase grid's populations (one stage), as the planner forms them."""
    plan = grid_plan(spec, models, architectures, tasks)
    return [Population(("population", i), list(p.model_ids), 0, spec.epochs) for i, p in enumerate(plan.populations)]


def describe(spec: PhaseGridSpec, zplan: ZooPlan) -> Any:
    """The plan as ``weightzoo generate --plan`` prints it, with the one-population-per-cell grouping's
    estimate beside it."""
    from rich.console import Group

    plan = grid_plan(spec, zplan.models, zplan.architectures, zplan.tasks)
    shape = plan_populations(zplan.models, zplan.architectures, zplan.tasks,
                             spec.population.model_copy(update={"grouping": "shape"}), epochs=spec.epochs,
                             n_checkpoints=len(spec.checkpoint_epochs), optimizer=spec.optimizer["name"])
    parts: list[Any] = [plan_table(plan, zplan.architectures, shape)]
    parts += [f"note: {n}" for n in plan.notes]
    parts.append("est. s: the planner's cost model (generators/cost.py), one thread. FLOPs x: padded per real "
                 "training FLOP. The plan only changes speed: every model trains as it would alone (up to float "
                 "rounding).")
    return Group(*parts)


def population_config(spec: PhaseGridSpec, row: pd.Series, arch: dict) -> PopulationConfig:
    return PopulationConfig(
        architecture=arch["name"], arch_config=arch["config"], optimizer=str(row["optimizer"]),
        batch_size=int(row["batch_size"]), epochs=spec.epochs, checkpoint_epochs=spec.checkpoint_epochs,
        schedule=spec.schedule["name"], step_size=spec.schedule["step_size"], gamma=spec.schedule["gamma"],
        betas=tuple(spec.optimizer["betas"]), eps=spec.optimizer["eps"])


def _job(z: Zoo, spec: PhaseGridSpec, model_ids: Sequence[int], tasks: Callable[[str], TaskData]) -> TrainingJob:
    models = z.planned.set_index("model_id")
    rows = [models.loc[i] for i in model_ids]
    arch = z.architectures[str(rows[0]["arch_key"])]
    members = [Member(int(r["init_seed"]), int(r["data_seed"]), float(r["lr"]), float(r["weight_decay"]),
                      float(r["momentum"]), batch_size=int(r["batch_size"]),
                      arch_config=z.architectures[str(r["arch_key"])]["config"]) for r in rows]
    return TrainingJob(population_config(spec, rows[0], arch), list(model_ids), members,
                       [tasks(str(r["task"])) for r in rows])


def _splits(z: Zoo, spec: PhaseGridSpec) -> list[tuple[str, Any, dict]]:
    """``default`` (by model), ``by_cell`` (all seeds of a cell together), ``ood_cells`` (a quarter of
    the cells held out as test, when there are at least 4)."""
    from zoo.splits import assign_split, ood_split

    models = z.planned
    out = [("default", assign_split(models, seed=0),
            {"rule": "hash", "seed": 0, "fractions": [0.7, 0.15, 0.15], "group_by": None}),
           ("by_cell", assign_split(models, seed=0, group_by=("grid_cell",)),
            {"rule": "hash", "seed": 0, "fractions": [0.7, 0.15, 0.15], "group_by": ["grid_cell"]})]
    if models["grid_cell"].nunique() >= 4:
        out.append(("ood_cells", ood_split(models, holdout_fraction=0.25, seed=0),
                    {"rule": "ood", "holdout_fraction": 0.25, "columns": ["grid_load", "grid_temperature"],
                     "seed": 0, "val_fraction": 0.15}))
    return out


def plan_zoo(spec: PhaseGridSpec) -> ZooPlan:
    """The phase grid's :class:`ZooPlan`: its models table, architectures, tasks and grid attribute."""
    models, archs, tasks = plan_models(spec)
    grid = {r: {"param": a.param, "target": a.target, "values": a.values}
            for r, a in (("load", spec.load), ("temperature", spec.temperature))}
    return ZooPlan(models, archs, tasks, spec.checkpoint_epochs, spec.epochs, {"grid": grid})


#: The phase grid as a :class:`generators.kinds.ZooKind`: one stage, populations across the grid.
KIND = register_zoo_kind("phase_grid")(ZooKind(
    schema=PhaseGridSchema, parse=parse_phase_grid, plan=plan_zoo, populations=populations, job=_job,
    splits=_splits, describe=describe))
