"""Generate a phase-grid zoo: a load axis x a temperature axis x seeds, trained as populations.

:func:`plan_models` turns a spec into the models table (one row per model, fixed before any training);
:func:`generate` creates the store and trains every model that is not complete yet, so rerunning it
after an interruption finishes the zoo: each model has a fixed slot, nothing is trained twice once its
status is written, and a half-written model is still ``pending`` and is trained again.
"""

from __future__ import annotations

import itertools
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from zoo.architectures import build_architecture, layout_of
from zoo.errors import SpecError
from zoo.format import DEFAULT_METRICS, STATUS_CODES, architecture_key, library_versions, short_hash
from zoo.dataset import norm_stats
from zoo.store import Zoo, create_zoo, open_zoo
from zoo.tasks import TaskData, build_task, normalize_task_spec

from generators.population import Member, PopulationConfig, train_population
from generators.spec import PhaseGridSpec, load_spec


@dataclass
class Population:
    """Models trained together: same architecture instance, task and batch size."""

    key: tuple
    model_ids: list[int]


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
            module = build_architecture(spec.architecture, input_shape, n_classes, arch_cfg)
            archs[akey] = {"name": spec.architecture, "config": arch_cfg, "input_shape": list(input_shape),
                           "n_classes": int(n_classes), "layout": layout_of(module).to_record()}
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


def populations(models: pd.DataFrame, max_size: int) -> list[Population]:
    """Group models that can train together, in model-id order, chunked to ``max_size``."""
    keys = ["arch_key", "task", "batch_size", "optimizer"]
    out = []
    for key, group in models.sort_values("model_id").groupby(keys, sort=False):
        ids = group["model_id"].tolist()
        for i in range(0, len(ids), max_size):
            out.append(Population(tuple(key), ids[i:i + max_size]))
    return out


def create_or_resume(spec: PhaseGridSpec, out: str | Path) -> Zoo:
    """Open ``out`` to resume it (it must come from the same spec), or create it."""
    out = Path(out)
    if out.exists():
        z = open_zoo(out, mode="r+")
        stored = z.meta.get("spec_hash")
        if stored != spec.spec_hash:
            raise SpecError(f"{out} was generated from a different spec (hash {stored}, this spec {spec.spec_hash});"
                            " use another --out or delete the store")
        return z
    models, archs, tasks = plan_models(spec)
    grid = {r: {"param": a.param, "target": a.target, "values": a.values}
            for r, a in (("load", spec.load), ("temperature", spec.temperature))}
    return create_zoo(out, models=models, architectures=archs, tasks=tasks, checkpoint_epochs=spec.checkpoint_epochs,
                      metric_names=list(DEFAULT_METRICS), n_epochs=spec.epochs,
                      attrs={"kind": "phase_grid", "name": spec.name, "spec": spec.raw, "spec_hash": spec.spec_hash,
                             "grid": grid})


def population_config(spec: PhaseGridSpec, row: pd.Series, arch: dict) -> PopulationConfig:
    return PopulationConfig(
        architecture=arch["name"], arch_config=arch["config"], optimizer=str(row["optimizer"]),
        batch_size=int(row["batch_size"]), epochs=spec.epochs, checkpoint_epochs=spec.checkpoint_epochs,
        schedule=spec.schedule["name"], step_size=spec.schedule["step_size"], gamma=spec.schedule["gamma"],
        betas=tuple(spec.optimizer["betas"]), eps=spec.optimizer["eps"])


def train_and_write(z: Zoo, spec: PhaseGridSpec, pop: Population, task: TaskData,
                    on_epoch: Callable[[int], None] | None = None) -> dict[str, int]:
    """Train one population and write each member; returns its status counts."""
    models = z._planned.set_index("model_id")
    rows = [models.loc[i] for i in pop.model_ids]
    arch = z.architectures[str(rows[0]["arch_key"])]
    config = population_config(spec, rows[0], arch)
    members = [Member(int(r["init_seed"]), int(r["data_seed"]), float(r["lr"]), float(r["weight_decay"]),
                      float(r["momentum"])) for r in rows]
    versions = library_versions()
    counts = {"ok": 0, "diverged": 0, "failed": 0}
    try:
        result = train_population(config, members, task, on_epoch=on_epoch)
    except Exception as exc:  # a failed population is recorded, the rest of the zoo goes on
        err = f"{type(exc).__name__}: {exc}"
        for mid in pop.model_ids:
            z.write_model(mid, weights=None, metrics={}, status="failed",
                          record={"error": err, "traceback": traceback.format_exc(limit=5), "versions": versions})
        counts["failed"] = len(pop.model_ids)
        return counts
    per_model = result.wall_time_s / len(members)
    for j, mid in enumerate(pop.model_ids):
        w = result.weights[j]
        finite = bool(torch.isfinite(w[-1]).all())
        status = "ok" if finite and result.diverged_epoch[j] < 0 else "diverged"
        record = {"wall_time_s": per_model, "population_size": len(members), "versions": versions,
                  "diverged_epoch": int(result.diverged_epoch[j]) if result.diverged_epoch[j] >= 0 else None}
        z.write_model(mid, weights=w, metrics={k: v[j] for k, v in result.metrics.items()}, status=status,
                      record=record, curve=result.curve[j])
        counts[status] += 1
    return counts


def generate(spec: str | Path | PhaseGridSpec, out: str | Path, *, progress: bool = True,
             backend: str = "local") -> Zoo:
    """Create (or resume) the zoo of ``spec`` at ``out`` and train every model not yet complete."""
    if backend != "local":
        raise SpecError(f"backend {backend!r} is not available; this version has the 'local' backend")
    if not isinstance(spec, PhaseGridSpec):
        spec = load_spec(spec)
    z = create_or_resume(spec, out)
    status = z.status_codes()
    pending = set(np.flatnonzero(status == STATUS_CODES["pending"]).tolist())
    to_train = []
    for pop in populations(z._planned, spec.max_population):
        ids = [i for i in pop.model_ids if i in pending]
        if ids:
            to_train.append(Population(pop.key, ids))
    total = sum(len(p.model_ids) for p in to_train) * spec.epochs
    tasks: dict[str, TaskData] = {}
    bar = tqdm(total=total, desc=f"training {spec.name}", unit="model-epoch", disable=not progress or total == 0)
    try:
        for pop in to_train:
            task_key = pop.key[1]
            if task_key not in tasks:
                tasks[task_key] = build_task(z.tasks[task_key])
            train_and_write(z, spec, pop, tasks[task_key], on_epoch=lambda _e, n=len(pop.model_ids): bar.update(n))
    finally:
        bar.close()
    ensure_default_splits(z)
    ensure_default_norm_stats(z)
    return z


def ensure_default_norm_stats(z: Zoo) -> None:
    """Store the final-checkpoint normalisation statistics of the default split, once the zoo is
    complete, so read-only users of the zoo share them."""
    status = z.status_codes()
    if (status == STATUS_CODES["pending"]).any():
        return
    planned = z._planned
    usable = planned["model_id"].isin(z.split_ids("train", "default")) & (status == STATUS_CODES["ok"])
    for arch_key in z.architectures:
        if (usable & (planned["arch_key"] == arch_key)).any():
            norm_stats(z, arch_key, checkpoint=-1, split_name="default")


def ensure_default_splits(z: Zoo) -> None:
    """Write the standard splits once every model is complete (they never change afterwards)."""
    from zoo.splits import assign_split, ood_split

    existing = set(z.split_names)
    models = z._planned
    if "default" not in existing:
        z.write_split("default", assign_split(models, seed=0),
                      {"rule": "hash", "seed": 0, "fractions": [0.7, 0.15, 0.15], "group_by": None})
    if "by_cell" not in existing:
        z.write_split("by_cell", assign_split(models, seed=0, group_by=("grid_cell",)),
                      {"rule": "hash", "seed": 0, "fractions": [0.7, 0.15, 0.15], "group_by": ["grid_cell"]})
    if "ood_cells" not in existing and models["grid_cell"].nunique() >= 4:
        z.write_split("ood_cells", ood_split(models, holdout_fraction=0.25, seed=0),
                      {"rule": "ood", "holdout_fraction": 0.25, "columns": ["grid_load", "grid_temperature"],
                       "seed": 0, "val_fraction": 0.15})

