"""The model-tree zoo kind: K bases trained on a source task (stage 0), then fine-tuned children (stage 1).

Bases of one architecture, batch size and optimiser train as one population. Children of every base of
one architecture that share batch size and optimiser (name, betas, eps) train as one population too:
each member fine-tunes from its parent's final weights (read from the store, so stage 1 can run in
any process once stage 0 is written) on its own derived task. A child whose parent is not ``ok``
(diverged or failed) cannot start and is marked ``failed`` with the reason; one whose parent is still
``pending`` (only stage 1 asked for) is left ``pending``.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
import torch

from generators.kinds import Population, TaskCache, TrainingJob, ZooKind, ZooPlan, register_zoo_kind
from generators.population import Member, PopulationConfig
from generators.tree_plan import plan_tree
from generators.tree_spec import ModelTreeSchema, ModelTreeSpec, parse_model_tree
from zoo.format import STATUS_CODES, STATUS_NAMES
from zoo.splits import assign_split, hash_uniform, ood_split
from zoo.store import Zoo

STAGES = {"base": 0, "child": 1}


def _optimizer_of(spec: ModelTreeSpec, row: pd.Series) -> dict:
    """The complete optimiser record a model trains with (its family's, for children)."""
    if row["tree_role"] == "base":
        return spec.base_training.optimizer
    return next(f.optimizer for f in spec.families if f.name == row["derivation"])


def tree_populations(spec: ModelTreeSpec, models: pd.DataFrame, *_records: Any) -> list[Population]:
    """Bases (stage 0) and children (stage 1) grouped by architecture, batch size and optimiser, in
    model-id order, chunked to ``population.max_size``."""
    out = []
    models = models.sort_values("model_id")
    for role, stage in STAGES.items():
        part = models[models["tree_role"] == role]
        epochs = (spec.base_training if role == "base" else spec.child_training).epochs
        opts = [_optimizer_of(spec, r) for _, r in part.iterrows()]
        part = part.assign(_adam=[(*o["betas"], o["eps"]) for o in opts])
        for key, group in part.groupby(["arch_key", "batch_size", "optimizer", "_adam"], sort=False):
            ids = group["model_id"].tolist()
            for i in range(0, len(ids), spec.max_population):
                out.append(Population((role, *key), ids[i:i + spec.max_population], stage, epochs))
    return out


def tree_job(z: Zoo, spec: ModelTreeSpec, model_ids: Sequence[int], tasks: TaskCache) -> TrainingJob:
    """What one population of a tree trains; children read their parents' final weights from ``z``."""
    models = z.planned.set_index("model_id")
    rows = [models.loc[int(i)] for i in model_ids]
    roles = {str(r["tree_role"]) for r in rows}
    if len(roles) != 1:
        raise ValueError(f"a population mixes bases and children: models {list(model_ids)}")
    role = roles.pop()
    training = spec.base_training if role == "base" else spec.child_training
    optimizer = _optimizer_of(spec, rows[0])
    arch = z.architectures[str(rows[0]["arch_key"])]
    config = PopulationConfig(
        architecture=arch["name"], arch_config=arch["config"], optimizer=optimizer["name"],
        batch_size=int(rows[0]["batch_size"]), epochs=training.epochs, checkpoint_epochs=training.checkpoint_epochs,
        schedule=training.schedule["name"], step_size=training.schedule["step_size"],
        gamma=training.schedule["gamma"], betas=tuple(optimizer["betas"]), eps=optimizer["eps"])

    def member(r: pd.Series) -> Member:  # children ignore init_seed: they start from their parent
        return Member(max(int(r["init_seed"]), 0), int(r["data_seed"]), float(r["lr"]), float(r["weight_decay"]),
                      float(r["momentum"]))

    if role == "base":
        return TrainingJob(config, list(model_ids), [member(r) for r in rows], [tasks(str(r["task"])) for r in rows])
    parents = sorted({int(r["parent_id"]) for r in rows})
    parent_status = dict(zip(parents, z.status_codes(parents)))
    blocked, ids, trainable, child_tasks = {}, [], [], []
    for mid, r in zip(model_ids, rows):
        status = int(parent_status[int(r["parent_id"])])
        if status == STATUS_CODES["pending"]:  # a child of a pending parent stays pending for a later run
            continue
        if status != STATUS_CODES["ok"]:
            blocked[int(mid)] = (f"parent model {int(r['parent_id'])} is {STATUS_NAMES[status]}; a child starts from "
                                 "its parent's final weights, so it cannot be fine-tuned")
            continue
        try:  # one child's unusable derived task must not fail its population's other children
            task = tasks(str(r["task"]))
        except Exception as exc:
            blocked[int(mid)] = f"its derived task cannot be built: {type(exc).__name__}: {exc}"
            continue
        ids.append(int(mid))
        trainable.append(r)
        child_tasks.append(task)
    if not ids:
        return TrainingJob(config, [], [], [], None, blocked)
    ok_parents = sorted({int(r["parent_id"]) for r in trainable})
    final = dict(zip(ok_parents, z.weights(ok_parents, -1)))
    start = torch.stack([final[int(r["parent_id"])] for r in trainable])
    return TrainingJob(config, ids, [member(r) for r in trainable], child_tasks, start, blocked)


def held_out_tasks(models: pd.DataFrame, fraction: float, seed: int) -> list[str]:
    """The derived tasks (``task`` keys of children) an ``ood_tasks`` split holds out: the
    ``max(1, round(fraction * n))`` with the smallest seeded hash of their key."""
    keys = sorted(set(models.loc[models["tree_role"] == "child", "task"].astype(str)))
    n = min(len(keys), max(1, int(round(fraction * len(keys)))))
    return sorted(sorted(keys, key=lambda k: (hash_uniform(seed, "task:" + k), k))[:n])


def tree_splits(models: pd.DataFrame, settings: dict) -> list[tuple[str, Any, dict]]:
    """``default`` (by model), ``by_tree`` (each base with its whole family), ``ood_family`` (one
    derivation family held out as test) and ``ood_tasks`` (a share of the derived tasks held out)."""
    seed, fractions = settings["seed"], list(settings["fractions"])
    family, share = settings["ood_family"], settings["ood_task_fraction"]
    held = held_out_tasks(models, share, seed)
    return [
        ("default", assign_split(models, seed=seed, fractions=fractions),
         {"rule": "hash", "seed": seed, "fractions": fractions, "group_by": None}),
        ("by_tree", assign_split(models, seed=seed, fractions=fractions, group_by="tree_id"),
         {"rule": "hash", "seed": seed, "fractions": fractions, "group_by": ["tree_id"]}),
        ("ood_family", ood_split(models, holdout=[{"derivation": family}], columns=["derivation"], seed=seed,
                                 val_fraction=fractions[1]),
         {"rule": "ood", "columns": ["derivation"], "holdout": [{"derivation": family}], "seed": seed,
          "val_fraction": fractions[1]}),
        ("ood_tasks", ood_split(models, holdout=[{"task": k} for k in held], columns=["task"], seed=seed,
                                val_fraction=fractions[1]),
         {"rule": "ood", "columns": ["task"], "holdout": [{"task": k} for k in held], "holdout_fraction": share,
          "seed": seed, "val_fraction": fractions[1]}),
    ]


def plan_zoo(spec: ModelTreeSpec) -> ZooPlan:
    """The tree's :class:`ZooPlan` (the store's checkpoint axis holds the children's epochs)."""
    models, archs, tasks, tree = plan_tree(spec)
    n_epochs = max(spec.base_training.epochs, spec.child_training.epochs)
    return ZooPlan(models, archs, tasks, spec.child_training.checkpoint_epochs, n_epochs, {"tree": tree})


#: The model tree as a :class:`generators.kinds.ZooKind`: bases in stage 0, children in stage 1.
KIND = register_zoo_kind("model_tree")(ZooKind(
    schema=ModelTreeSchema, parse=parse_model_tree, plan=plan_zoo, populations=tree_populations, job=tree_job,
    splits=lambda z, spec: tree_splits(z.planned, spec.splits)))
