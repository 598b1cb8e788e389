"""The Ray backend: every population of a stage is one Ray task that trains it and writes its members.

:func:`generators.driver.generate` calls :func:`run_ray` once per stage, so all tasks of stage k have
finished before stage k+1 is submitted (a model-tree child reads its parent's final weights from the
store). Each task runs :func:`generators.driver.train_population_job` with nothing but the store's
absolute path, the spec's canonical dict (``spec.raw``) and the population's model ids; every model owns
distinct chunks of the store and writes its status chunk last, so tasks on any node write the same store
concurrently without locks and a task killed part-way leaves its models ``pending`` for a rerun.

What Ray relies on: the store path names the same directory on the driver and on every node (a shared
filesystem); weightzoo (and the same torch) is importable on every node. Ray is an optional extra and is
imported only here, when this backend runs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from generators.driver import register_backend, train_population_job
from generators.kinds import Population
from zoo.errors import ZooError
from zoo.format import STATUS_CODES
from zoo.store import Zoo

INSTALL_HINT = 'pip install "weightzoo[ray]"'

#: Seconds between two reads of the progress counter while tasks run.
POLL_S = 0.5


class PopulationsLostError(ZooError):
    """Ray tasks of a stage died (worker or node crash, or an error outside the training job); their models
    stay ``pending``. ``model_ids`` lists them; rerunning the same command trains exactly those."""

    def __init__(self, message: str, model_ids: Sequence[int]) -> None:
        super().__init__(message)
        self.model_ids = [int(i) for i in model_ids]


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`ZooError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ZooError(f"the Ray backend needs Ray, which is not installed ({exc}); install the extra: "
                       f"{INSTALL_HINT}") from exc
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray, connected for the duration of the block.

    ``address`` is ``"auto"`` (the cluster this machine belongs to), ``"HOST:PORT"`` (a head's GCS
    address) or ``"ray://HOST:PORT"`` (Ray Client); None starts a local instance with this machine's
    CPUs. A connection the caller already opened (``ray.is_initialized()``) is used as it is and left
    open; otherwise the block ends with ``ray.shutdown()``, which stops a local instance it started and
    only disconnects from a cluster.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        if address is None:
            ray.init(include_dashboard=False)
        else:
            ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = "a local Ray instance" if address is None else f"the Ray cluster at {address!r}"
        hint = "" if address is None else (
            " (is its head running? A head with token authentication needs RAY_AUTH_MODE=token and its token,"
            " in RAY_AUTH_TOKEN or ~/.ray/auth_token, in this process's environment)")
        raise ZooError(f"cannot start or connect to {where}: {type(exc).__name__}: {exc}{hint}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


class ProgressCounter:
    """Model-epochs reported by the tasks of one stage, by population index, until the driver takes them
    (a Ray actor; tasks call ``add`` without waiting)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, index: int, n: int) -> None:
        self.counts[index] = self.counts.get(index, 0) + n

    def take(self) -> dict[int, int]:
        counts, self.counts = self.counts, {}
        return counts


def train_population_task(store: str, spec: Mapping, model_ids: list[int], *, threads: int, index: int,
                          progress: Any | None, job: Callable[..., dict[str, int]]) -> dict[str, int]:
    """What one Ray task runs: ``job`` (normally :func:`train_population_job`) on one population, with
    ``threads`` torch threads (the task's CPU request); reports each epoch's ``len(model_ids)`` model-epochs
    to ``progress``. Returns the status counts written."""
    import torch

    torch.set_num_threads(threads)
    on_epoch = None if progress is None else (lambda _epoch: progress.add.remote(index, len(model_ids)))
    return job(store, spec, model_ids, on_epoch=on_epoch)


class _StageBar:
    """Advances ``bar`` by what tasks report, never past a population's own share (a retried task
    reports its epochs again)."""

    def __init__(self, bar: tqdm, populations: Sequence[Population]) -> None:
        self.bar = bar
        self.left = [len(p.model_ids) * p.epochs for p in populations]

    def advance(self, counts: Mapping[int, int]) -> None:
        for index, n in counts.items():
            step = min(int(n), self.left[index])
            self.left[index] -= step
            if step:
                self.bar.update(step)

    def finish(self, index: int) -> None:
        self.advance({index: self.left[index]})


@register_backend("ray")
def run_ray(z: Zoo, spec: Any, stages: Sequence[Sequence[Population]], bar: tqdm, address: str | None = None, *,
            cpus_per_task: int = 1, max_retries: int = 1,
            job: Callable[..., dict[str, int]] = train_population_job) -> None:
    """The Ray backend: stage by stage, the populations of a stage as concurrent Ray tasks.

    One Ray session serves every stage (a local instance is started once). Each task requests
    ``cpus_per_task`` CPUs and trains with that many torch threads (results do not depend on the thread
    count; see ``docs/BACKENDS.md``). A task whose worker dies is retried up to ``max_retries`` times; a
    population that raises inside training is written ``failed`` by the job itself. Tasks that still end
    without writing their models (worker or node lost, store not reachable) do not stop the others of
    their stage; once it has ended, :class:`PopulationsLostError` names their models, which stay
    ``pending`` for a rerun, and no later stage starts.
    """
    stages = [list(s) for s in stages if s]
    if not stages:
        return
    if cpus_per_task < 1:
        raise ZooError(f"cpus_per_task must be >= 1, got {cpus_per_task}")
    store = str(Path(z.path).resolve())
    with ray_session(address) as ray:
        progress = None if bar.disable else ray.remote(num_cpus=0)(ProgressCounter).remote()
        task = ray.remote(train_population_task).options(num_cpus=cpus_per_task, max_retries=max_retries)
        try:
            for populations in stages:
                progress = _run_stage(ray, task, job, z, store, spec, populations, bar, progress, cpus_per_task)
        finally:
            if progress is not None:
                ray.kill(progress)


def _run_stage(ray: Any, task: Any, job: Callable[..., dict[str, int]], z: Zoo, store: str, spec: Any,
               populations: Sequence[Population], bar: tqdm, progress: Any | None, cpus_per_task: int) -> Any | None:
    """Run one stage's tasks until all have ended, then check what they wrote; returns the progress
    counter (None once it is gone)."""
    stage_bar = _StageBar(bar, populations)
    refs = {task.remote(store, spec.raw, [int(i) for i in pop.model_ids], threads=cpus_per_task, index=i,
                        progress=progress, job=job): i
            for i, pop in enumerate(populations)}
    waiting, lost, written, left_pending = list(refs), {}, [], 0
    try:
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=POLL_S)
            if progress is not None:
                try:
                    stage_bar.advance(ray.get(progress.take.remote()))
                except ray.exceptions.RayError:  # the counter's node went away: count finished populations
                    progress = None
            for ref in done:
                index = refs[ref]
                try:
                    counts = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    lost[index] = exc
                    continue
                written.append(index)
                left_pending += int(counts.get("pending", 0))
                stage_bar.finish(index)
    except BaseException:  # Ctrl-C: stop the tasks; what they had not written stays pending
        for ref in waiting:
            ray.cancel(ref, force=True)
        raise
    _check_written(z, [populations[i] for i in sorted(written)], left_pending)
    if lost:
        _raise_lost(z, populations, lost)
    return progress


def _check_written(z: Zoo, populations: Sequence[Population], left_pending: int) -> None:
    """Tasks that returned wrote every model of their population but the ``left_pending`` they report
    left pending on purpose; if this process sees more of them ``pending``, the workers wrote another
    directory under the same path (no shared filesystem)."""
    ids = [int(i) for p in populations for i in p.model_ids]
    if not ids:
        return
    pending = np.asarray(ids)[z.status_codes(ids) == STATUS_CODES["pending"]]
    if len(pending) > left_pending:
        raise ZooError(f"Ray tasks reported models {pending.tolist()[:10]} written, but {z.path} still has them "
                       "pending: the workers wrote to another directory at that path. The store must be on a "
                       "filesystem that the driver and every Ray node share, at the same absolute path.")


def _raise_lost(z: Zoo, populations: Sequence[Population], lost: Mapping[int, Exception]) -> None:
    ids = sorted(int(i) for index in lost for i in populations[index].model_ids)
    pending = [i for i, code in zip(ids, z.status_codes(ids)) if code == STATUS_CODES["pending"]]
    first = lost[min(lost)]
    reason = f"{type(first).__name__}: {str(first).strip().splitlines()[-1] if str(first).strip() else ''}"
    raise PopulationsLostError(
        f"{len(lost)} of {len(populations)} Ray tasks of this stage ended without writing their models "
        f"(first: {reason}); models {pending[:20]}{' ...' if len(pending) > 20 else ''} ({len(pending)} in all) "
        f"stay pending in {z.path} and later stages were not started. Rerun the same command to train them.",
        pending)
