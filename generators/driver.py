"""Generate any kind of zoo from its spec: plan, create or resume the store, train stage by stage, finish.

The driver knows nothing about phase grids or model trees. Each spec ``kind`` supplies a
:class:`ZooKind` (registered in :data:`KINDS`):

* ``plan(spec) -> ZooPlan``: the models table, architectures, tasks and attributes, fixed before any
  training (each model has a slot; resuming trains exactly the ``pending`` ones);
* ``populations(spec, models, architectures, tasks) -> [Population]``: models that train together,
  each in a *stage* (a model-tree child trains in stage 1, after its parent in stage 0 is written);
  phase grids ask the planner (:mod:`generators.planner`). The populations are the zoo's *plan*: it
  is stored with the zoo (``attrs["plan"]``) and resumed from, and planned again only when the spec's
  ``population`` settings change (speed only: every model trains as it would alone, up to float
  rounding);
* ``job(z, spec, model_ids, tasks) -> TrainingJob``: what one population trains (configuration,
  members, one task per member, start weights), read from the store alone;
* ``splits(z, spec) -> [(name, codes, settings)]``: the kind's standard splits;
* ``describe(spec, plan) -> rich renderable`` (optional): the plan as ``weightzoo generate --plan``
  prints it.

:func:`generate` runs the stages in order; inside a stage the populations are independent, and
:func:`train_population_job` -- given only the store path, the spec and the model ids -- trains one of
them and writes its members, which is the unit a distributed backend (Ray) schedules. After the last
stage the steps of :data:`POST_GENERATION_STEPS` run in order (splits, normalisation statistics,
landscape metrics, phase labels; see :mod:`generators.analysis`).
"""

from __future__ import annotations

import contextlib
import importlib
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from zoo.dataset import norm_stats
from zoo.errors import SpecError
from zoo.format import DEFAULT_METRICS, STATUS_CODES, library_versions, to_jsonable
from zoo.store import Zoo, create_zoo, open_zoo
from zoo.tasks import TaskData, build_task

from generators.analysis import compute_landscape_step, label_phases_step
from generators.population import Member, PopulationConfig, train_population
from generators.spec import load_spec


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


@dataclass(frozen=True)
class ZooKind:
    """What a spec kind supplies to the driver (see the module docstring)."""

    plan: Callable[[Any], ZooPlan]
    populations: Callable[[Any, pd.DataFrame, Mapping[str, dict], Mapping[str, Any]], list[Population]]
    job: Callable[[Zoo, Any, Sequence[int], "TaskCache"], TrainingJob]
    splits: Callable[[Zoo, Any], list[SplitDef]]
    describe: Callable[[Any, ZooPlan], Any] | None = None


#: spec kind -> "module:attribute" of its :class:`ZooKind` (imported when first used).
KINDS: dict[str, str] = {"phase_grid": "generators.phase_grid:KIND", "model_tree": "generators.model_tree:KIND"}


def kind_of(spec: Any) -> ZooKind:
    """The :class:`ZooKind` of a loaded spec."""
    if spec.kind not in KINDS:
        raise SpecError(f"field 'kind': no generator for kind {spec.kind!r}; known kinds: {sorted(KINDS)}")
    module, attr = KINDS[spec.kind].split(":")
    return getattr(importlib.import_module(module), attr)


def as_spec(spec: Any) -> Any:
    """A loaded spec object from a spec object, a path, a shipped name or a dict (e.g. ``z.meta["spec"]``)."""
    return spec if hasattr(spec, "spec_hash") and hasattr(spec, "kind") else load_spec(spec)


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


def create_or_resume(spec: Any, out: str | Path) -> Zoo:
    """Open ``out`` to resume it (it must come from the same spec), or plan the zoo and create it."""
    out = Path(out)
    if out.exists():
        z = open_zoo(out, mode="r+")
        stored = z.meta.get("spec_hash")
        if stored != spec.spec_hash:
            raise SpecError(f"{out} was generated from a different spec (hash {stored}, this spec {spec.spec_hash});"
                            " use another --out or delete the store")
        if z.meta.get("spec") != spec.raw:  # same training, other analysis settings: record the new ones
            z._update_meta(spec=spec.raw)
        return z
    plan = kind_of(spec).plan(spec)
    attrs = {"kind": spec.kind, "name": spec.name, "spec": spec.raw, "spec_hash": spec.spec_hash, **plan.attrs}
    z = create_zoo(out, models=plan.models, architectures=plan.architectures, tasks=plan.tasks,
                   checkpoint_epochs=plan.checkpoint_epochs, metric_names=list(DEFAULT_METRICS),
                   n_epochs=plan.n_epochs, attrs=attrs)
    planned_populations(z, spec)  # the plan is stored with the zoo before anything trains
    return z


def _plan_settings(spec: Any) -> dict:
    """The spec's population settings the plan depends on (``generators.planner.PopulationSettings``)."""
    settings = getattr(spec, "population", None)
    return {} if settings is None else settings.plan_record()


def planned_populations(z: Zoo, spec: Any) -> list[Population]:
    """The zoo's plan: every population, by stage. Read from the store (``attrs["plan"]``) when it was
    made with the spec's current population settings; else planned now and stored (a store opened
    read-only is planned without storing)."""
    settings = to_jsonable(_plan_settings(spec))
    stored = z.meta.get("plan")
    if isinstance(stored, Mapping) and stored.get("settings") == settings:
        return [Population(tuple(p["key"]), [int(i) for i in p["model_ids"]], int(p["stage"]), int(p["epochs"]))
                for p in stored["populations"]]
    pops = kind_of(spec).populations(spec, z._planned, z.architectures, z.tasks)
    if z.writable:
        z._update_meta(plan={"settings": settings, "populations": [
            {"key": [str(k) for k in p.key], "model_ids": [int(i) for i in p.model_ids], "stage": p.stage,
             "epochs": p.epochs} for p in pops]})
    return pops


def pending_populations(z: Zoo, spec: Any) -> list[Population]:
    """The populations of the plan that still have ``pending`` models, whole, by stage.

    A population is trained as planned even when some of its models were written before an interruption
    (:func:`train_population_job` writes only the pending ones): the same members in the same calls give
    every model the same bits as an uninterrupted run, whatever the padding and batch sharing."""
    pending = set(np.flatnonzero(z.status_codes() == STATUS_CODES["pending"]).tolist())
    out = [pop for pop in planned_populations(z, spec) if any(i in pending for i in pop.model_ids)]
    return sorted(out, key=lambda p: p.stage)


def describe_plan(spec: str | Path | Mapping | Any, out: str | Path | None = None) -> Any:
    """What ``weightzoo generate SPEC --out OUT --plan`` prints, without training: the kind's description
    of the plan (populations, sizes, estimated cost), or, for a store ``out`` that exists, the stored
    plan's populations still pending. Returns a ``rich`` renderable."""
    from rich.table import Table

    spec = as_spec(spec)
    kind = kind_of(spec)
    if out is not None and Path(out).exists():
        z = open_zoo(out)
        if z.meta.get("spec_hash") != spec.spec_hash:
            raise SpecError(f"{out} was generated from a different spec (hash {z.meta.get('spec_hash')}, this spec "
                            f"{spec.spec_hash})")
        pops = pending_populations(z, spec)
        n_pending = int((z.status_codes() == STATUS_CODES["pending"]).sum())
        table = Table(title=f"{out}: {len(pops)} populations with pending models ({n_pending} of {z.n_models} "
                            f"models pending; a population trains whole, only its pending models are written)")
        for col in ("stage", "models", "first ids", "epochs"):
            table.add_column(col, justify="right")
        for p in pops:
            table.add_row(str(p.stage), str(len(p.model_ids)), ", ".join(map(str, p.model_ids[:6])) +
                          (", ..." if len(p.model_ids) > 6 else ""), str(p.epochs))
        return table
    plan = kind.plan(spec)
    if kind.describe is not None:
        return kind.describe(spec, plan)
    pops = kind.populations(spec, plan.models, plan.architectures, plan.tasks)
    table = Table(title=f"training plan: {len(pops)} populations, {len(plan.models)} models")
    for col in ("stage", "models", "group", "epochs"):
        table.add_column(col, justify="right")
    for p in pops:
        table.add_row(str(p.stage), str(len(p.model_ids)), " ".join(map(str, p.key)), str(p.epochs))
    return table


@contextlib.contextmanager
def training_threads(threads: int) -> Iterator[None]:
    """torch intra-op threads set to ``threads`` for the block (0: leave torch's setting), then restored."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_results(z: Zoo, job: TrainingJob, result: Any, only: set[int] | None = None) -> dict[str, int]:
    """Write every trained member of ``job`` (``result``: its :class:`PopulationResult`), or those in
    ``only``; status counts."""
    versions = library_versions()
    counts = {"ok": 0, "diverged": 0, "failed": 0}
    per_model = result.wall_time_s / len(job.members)
    width = z._root["curves/train_loss"].shape[1]
    for j, mid in enumerate(job.model_ids):
        if only is not None and mid not in only:
            continue
        w = result.weights[j]
        finite = bool(torch.isfinite(w[-1]).all())
        status = "ok" if finite and result.diverged_epoch[j] < 0 else "diverged"
        record = {"wall_time_s": per_model, "population_size": len(job.members), "versions": versions,
                  "diverged_epoch": int(result.diverged_epoch[j]) if result.diverged_epoch[j] >= 0 else None}
        curve = np.full(width, np.nan, dtype=np.float32)  # models trained for fewer epochs than the widest
        curve[:result.curve.shape[1]] = result.curve[j]
        z.write_model(mid, weights=w, metrics={k: v[j] for k, v in result.metrics.items()}, status=status,
                      record=record, curve=curve)
        counts[status] += 1
    return counts


def write_failed(z: Zoo, model_ids: Sequence[int], errors: str | Mapping[int, str], tb: str | None = None
                 ) -> dict[str, int]:
    """Mark ``model_ids`` failed with their error text (one string, or one per model)."""
    versions = library_versions()
    for mid in model_ids:
        err = errors if isinstance(errors, str) else errors[mid]
        record = {"error": err, "versions": versions}
        if tb:
            record["traceback"] = tb
        z.write_model(mid, weights=None, metrics={}, status="failed", record=record)
    return {"ok": 0, "diverged": 0, "failed": len(model_ids)}


def train_population_job(store: str | Path | Zoo, spec: Any, model_ids: Sequence[int], *,
                         on_epoch: Callable[[int], None] | None = None, tasks: TaskCache | None = None
                         ) -> dict[str, int]:
    """Train the population ``model_ids`` of ``spec`` and write its members that are still ``pending``
    into ``store`` (all of them are trained: see :func:`pending_populations`).

    Needs only the store path, the spec (object, path or dict) and the ids, so any process can run it;
    models of the population that cannot train (``TrainingJob.blocked``) and, if training raises, all of
    them are marked ``failed`` with the error. Returns the status counts written, and under
    ``"pending"`` how many models the job left pending on purpose (e.g. children of a parent still pending).
    """
    z = store if isinstance(store, Zoo) else open_zoo(store, mode="r+")
    spec = as_spec(spec)
    tasks = tasks if tasks is not None else TaskCache(z)
    ids = [int(i) for i in model_ids]
    pending = {i for i, code in zip(ids, z.status_codes(ids)) if code == STATUS_CODES["pending"]}
    try:
        job = kind_of(spec).job(z, spec, ids, tasks)
    except Exception as exc:  # a population that cannot even be set up is recorded, the zoo goes on
        return write_failed(z, [i for i in ids if i in pending], f"{type(exc).__name__}: {exc}",
                            traceback.format_exc(limit=5))
    counts = {"ok": 0, "diverged": 0, "failed": 0,
              "pending": len(pending - set(job.model_ids) - set(job.blocked))}
    blocked = {i: why for i, why in job.blocked.items() if i in pending}
    if blocked:
        counts["failed"] += write_failed(z, list(blocked), blocked)["failed"]
    if not pending.intersection(job.model_ids):
        return counts
    try:
        result = train_population(job.config, job.members, job.tasks, on_epoch=on_epoch,
                                  start_weights=job.start_weights)
    except Exception as exc:  # a failed population is recorded, the rest of the zoo goes on
        counts["failed"] += write_failed(z, [i for i in job.model_ids if i in pending],
                                         f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=5))["failed"]
        return counts
    for k, v in write_results(z, job, result, only=pending).items():
        counts[k] += v
    return counts


def run_local(z: Zoo, spec: Any, stages: Sequence[Sequence[Population]], bar: tqdm) -> None:
    """The local backend: stage by stage, the populations one after another in this process, with the
    spec's ``population.threads`` torch threads."""
    tasks = TaskCache(z)
    settings = getattr(spec, "population", None)
    with training_threads(settings.threads if settings is not None else 0):
        for populations in stages:
            for pop in populations:
                train_population_job(z, spec, pop.model_ids, tasks=tasks,
                                     on_epoch=lambda _e, n=len(pop.model_ids): bar.update(n))


def run_ray(z: Zoo, spec: Any, stages: Sequence[Sequence[Population]], bar: tqdm, **options: Any) -> None:
    """The Ray backend (:func:`generators.ray_backend.run_ray`), imported only when it runs."""
    from generators.ray_backend import run_ray as run

    run(z, spec, stages, bar, **options)


#: backend name -> ``run(z, spec, populations_of_one_stage, bar, **options)``; it returns when the stage is written.
BACKENDS: dict[str, Callable[..., None]] = {"local": run_local, "ray": run_ray}


def write_splits(z: Zoo, spec: Any, *, progress: bool = True) -> None:
    """Store the kind's standard splits that the store does not have yet (they never change)."""
    existing = set(z.split_names)
    for name, codes, settings in kind_of(spec).splits(z, spec):
        if name not in existing:
            z.write_split(name, codes, settings)


def write_norm_stats(z: Zoo, spec: Any, *, progress: bool = True) -> None:
    """Once every model is complete, store the final-checkpoint normalisation statistics of the
    default split per architecture, so read-only users of the zoo share them."""
    status = z.status_codes()
    if (status == STATUS_CODES["pending"]).any() or "default" not in z.split_names:
        return
    planned = z._planned
    usable = planned["model_id"].isin(z.split_ids("train", "default")) & (status == STATUS_CODES["ok"])
    for arch_key in z.architectures:
        if (usable & (planned["arch_key"] == arch_key)).any():
            norm_stats(z, arch_key, checkpoint=-1, split_name="default")


#: What runs after the last stage, in order; each step takes ``(z, spec, *, progress)``.
POST_GENERATION_STEPS: list[Callable[..., None]] = [write_splits, write_norm_stats, compute_landscape_step,
                                                   label_phases_step]


def generate(spec: str | Path | Mapping | Any, out: str | Path, *, progress: bool = True, backend: str = "local",
             stages: Sequence[int] | None = None, address: str | None = None,
             backend_options: Mapping[str, Any] | None = None) -> Zoo:
    """Create (or resume) the zoo of ``spec`` at ``out`` and train every model not yet complete.

    ``spec`` is a spec object, a YAML path, a shipped spec name or a dict, of any kind. Stages run in
    order (``stages`` restricts them, e.g. ``[0]`` trains only a tree's bases); then
    :data:`POST_GENERATION_STEPS`. ``backend`` (a :data:`BACKENDS` name) trains each stage; ``address``
    (the Ray cluster, ``auto`` or ``HOST:PORT``) and ``backend_options`` (e.g. ``cpus_per_task``) go to it.
    """
    if backend not in BACKENDS:
        raise SpecError(f"backend {backend!r} is not available; this version has {sorted(BACKENDS)}")
    options = dict(backend_options or {}, **({} if address is None else {"address": address}))
    if backend == "local" and options:
        raise SpecError(f"the local backend takes no options, got {sorted(options)} (--address is for --backend ray)")
    if "://" in str(out):
        raise SpecError(f"--out {out}: generation writes a local (or shared-filesystem) directory; URL stores are "
                        "read-only")
    spec = as_spec(spec)
    z = create_or_resume(spec, out)
    to_train = [p for p in pending_populations(z, spec) if stages is None or p.stage in stages]
    total = sum(len(p.model_ids) * p.epochs for p in to_train)
    bar = tqdm(total=total, desc=f"training {spec.name}", unit="model-epoch", disable=not progress or total == 0)
    try:
        stages = [[p for p in to_train if p.stage == stage] for stage in sorted({p.stage for p in to_train})]
        BACKENDS[backend](z, spec, stages, bar, **options)
    finally:
        bar.close()
    for step in POST_GENERATION_STEPS:
        step(z, spec, progress=progress)
    return z
