"""Generate any kind of zoo from its spec: plan, create or resume the store, train stage by stage, finish.

The driver knows nothing about phase grids or model trees: each spec ``kind`` supplies a
:class:`generators.kinds.ZooKind` (its plan, populations, training jobs and splits), found with
:func:`generators.kinds.get_zoo_kind`. The populations are the zoo's *plan*: it is stored with the
zoo (``attrs["plan"]``) and resumed from, and planned again only when the spec's ``population``
settings change (speed only: every model trains as it would alone, up to float rounding). Backends
(where a stage's populations train) are registered by name too: ``local`` here, ``ray`` in
:mod:`generators.ray_backend`.

:func:`generate` runs the stages in order; inside a stage the populations are independent, and
:func:`train_population_job` -- given only the store path, the spec and the model ids -- trains one of
them and writes its members, which is the unit a distributed backend (Ray) schedules. After the last
stage the steps of :data:`POST_GENERATION_STEPS` run in order (splits, normalisation statistics,
landscape metrics, phase labels; see :mod:`generators.analysis`).
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from generators.kinds import Population, TaskCache, TrainingJob, get_zoo_kind
from generators.landscape.runner import compute_landscape
from generators.phases import label_phases
from generators.population import train_population
from generators.spec import load_spec
from kernels.registry import Registry
from zoo.dataset import norm_stats
from zoo.errors import SpecError, UnknownNameError
from zoo.format import DEFAULT_METRICS, STATUS_CODES, library_versions, to_jsonable
from zoo.loader import DEFAULT_BUILDER, register_recipe_builder
from zoo.lock import locks_store
from zoo.store import Zoo, create_zoo, open_zoo


def as_spec(spec: Any) -> Any:
    """A loaded spec object from a spec object, a path, a shipped name or a dict (e.g. ``z.meta["spec"]``)."""
    return spec if hasattr(spec, "spec_hash") and hasattr(spec, "kind") else load_spec(spec)


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
            z.update_meta(spec=spec.raw)
        return z
    plan = get_zoo_kind(spec.kind).plan(spec)
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
    pops = get_zoo_kind(spec.kind).populations(spec, z.planned, z.architectures, z.tasks)
    if z.writable:
        z.update_meta(plan={"settings": settings, "populations": [
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
    kind = get_zoo_kind(spec.kind)
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
    ``only``; status counts. A diverged model's metrics are NaN from its ``diverged_epoch`` on (and
    wherever its weights are not finite): what non-finite weights "score" is no measurement."""
    versions = library_versions()
    counts = {"ok": 0, "diverged": 0, "failed": 0}
    per_model = result.wall_time_s / len(job.members)
    width = z.group["curves/train_loss"].shape[1]
    epochs = np.asarray(sorted({int(e) for e in job.config.checkpoint_epochs}))  # the metrics' checkpoint axis
    for j, mid in enumerate(job.model_ids):
        if only is not None and mid not in only:
            continue
        w = result.weights[j]
        finite = bool(torch.isfinite(w[-1]).all())
        status = "ok" if finite and result.diverged_epoch[j] < 0 else "diverged"
        record = {"wall_time_s": per_model, "population_size": len(job.members), "versions": versions,
                  "diverged_epoch": int(result.diverged_epoch[j]) if result.diverged_epoch[j] >= 0 else None}
        metrics = {k: np.array(v[j], dtype=np.float32) for k, v in result.metrics.items()}
        if status == "diverged":
            after = ~torch.isfinite(w).all(dim=1).numpy()
            if result.diverged_epoch[j] >= 0:
                after |= epochs >= int(result.diverged_epoch[j])
            for values in metrics.values():
                values[after] = np.nan
        curve = np.full(width, np.nan, dtype=np.float32)  # models trained for fewer epochs than the widest
        curve[:result.curve.shape[1]] = result.curve[j]
        z.write_model(mid, weights=w, metrics=metrics, status=status, record=record, curve=curve)
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
        job = get_zoo_kind(spec.kind).job(z, spec, ids, tasks)
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


#: ``run(z, spec, stages, bar, **options)`` trains the populations of every stage, stage by stage, and
#: returns when they are written.
Backend = Callable[..., None]
_BACKENDS: Registry[Backend] = Registry("backend", error=UnknownNameError)
register_backend = _BACKENDS.register
get_backend = _BACKENDS.get
backend_names = _BACKENDS.names
register_backend("local")(run_local)


def compute_landscape_step(z: Zoo, spec: Any, *, progress: bool = True) -> None:
    """Landscape metrics of the complete zoo, with the spec's settings (skipped when switched off)."""
    analysis = spec.analysis
    if analysis is None or not analysis.landscape.enabled or not _complete(z):
        return
    compute_landscape(z, analysis.landscape, progress=progress)


def label_phases_step(z: Zoo, spec: Any, *, progress: bool = True) -> None:
    """Phase labels of a complete phase-grid zoo whose mode connectivity was computed."""
    analysis = spec.analysis
    if analysis is None or analysis.phases is None or "grid" not in z.meta or not _complete(z):
        return
    if analysis.phases.mc_metric not in z.landscape_names:
        return
    label_phases(z, analysis.phases)


def _complete(z: Zoo) -> bool:
    return not (z.status_codes() == STATUS_CODES["pending"]).any()


def write_splits(z: Zoo, spec: Any, *, progress: bool = True) -> None:
    """Store the kind's standard splits that the store does not have yet (they never change)."""
    existing = set(z.split_names)
    for name, codes, settings in get_zoo_kind(spec.kind).splits(z, spec):
        if name not in existing:
            z.write_split(name, codes, settings)


def write_norm_stats(z: Zoo, spec: Any, *, progress: bool = True) -> None:
    """Once every model is complete, store the final-checkpoint normalisation statistics of the
    default split per architecture, so read-only users of the zoo share them."""
    status = z.status_codes()
    if (status == STATUS_CODES["pending"]).any() or "default" not in z.split_names:
        return
    planned = z.planned
    usable = planned["model_id"].isin(z.split_ids("train", "default")) & (status == STATUS_CODES["ok"])
    for arch_key in z.architectures:
        if (usable & (planned["arch_key"] == arch_key)).any():
            norm_stats(z, arch_key, checkpoint=-1, split_name="default")


#: What runs after the last stage, in order; each step takes ``(z, spec, *, progress)``.
POST_GENERATION_STEPS: list[Callable[..., None]] = [write_splits, write_norm_stats, compute_landscape_step,
                                                   label_phases_step]


@locks_store("out")
def generate(spec: str | Path | Mapping | Any, out: str | Path, *, progress: bool = True, backend: str = "local",
             stages: Sequence[int] | None = None, address: str | None = None,
             backend_options: Mapping[str, Any] | None = None, wait: bool = False) -> Zoo:
    """Create (or resume) the zoo of ``spec`` at ``out`` and train every model not yet complete.

    ``spec`` is a spec object, a YAML path, a shipped spec name or a dict, of any kind. Stages run in
    order (``stages`` restricts them, e.g. ``[0]`` trains only a tree's bases); then
    :data:`POST_GENERATION_STEPS`. ``backend`` (a :func:`backend_names` name) trains each stage; ``address``
    (the Ray cluster, ``auto`` or ``HOST:PORT``) and ``backend_options`` (e.g. ``cpus_per_task``) go to it.

    The whole run holds the store's writer lock (:func:`zoo.lock.store_lock`): a second generation of
    the same ``out`` raises :class:`~zoo.errors.StoreLockedError` naming this one, or with ``wait``
    waits for it (and then finds the zoo complete, or resumes it).
    """
    run = get_backend(backend)
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
        run(z, spec, stages, bar, **options)
    finally:
        bar.close()
    for step in POST_GENERATION_STEPS:
        step(z, spec, progress=progress)
    return z


# zoo.load(name, build=True) rebuilds a catalog zoo from its recipe with this builder
register_recipe_builder(DEFAULT_BUILDER)(generate)
