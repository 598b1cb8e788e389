"""Sampling a trained generator for tasks of a zoo, evaluating the samples, writing them into a store.

What ``weightzoo sample CKPT --store STORE --tasks unseen|seen|IDS|classes:... --n N --out GEN.zarr`` runs:

1. :func:`resolve_requests` turns ``--tasks`` into requests (a base and a task each): ``unseen`` — every
   child of the store (of the generator's architecture, bases and families) whose task is in the test part
   of the generator's split, i.e. a class set never seen in training; ``seen`` — children whose task was
   in the training part; ``IDS`` — comma-separated model ids of children (their base and task);
   ``classes:2,5,7;1,3`` — new class-subset tasks of the source task, for every base. Each request
   remembers the real child of that base and task, if the store has one, as its reference.
2. :func:`generate_requests` draws ``n`` samples per request (one batch per request) and evaluates them,
   with the base and the reference, in one batched pass per task and split
   (:func:`weightnets.evaluate.evaluate_weights`, i.e. ``kernels.population_forward``): test accuracy and
   loss, and the accuracy on the task's validation examples (:func:`weightnets.evaluate.task_examples`),
   which is what best-of-N selects on — never the test split.
3. :func:`write_generated_store` writes a zoo store: the bases (copied, ``generator = "copy"``) and every
   sample (``generator = "latent_diffusion"``) with its status, task spec (so ``task_data`` works),
   ``parent_id`` (its base), class columns, the request it answers, its metrics and the generation
   settings in the attribute ``generated``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from weightnets.evaluate import evaluate_weights, task_examples, validation_split
from weightnets.generative.data import GenerationContext, descriptor_of
from weightnets.generative.diffusion import LatentDiffusion, load_generator
from zoo import Zoo, ZooError, create_zoo, open_zoo
from zoo.atomic import atomic_output
from zoo.format import library_versions
from zoo.lock import store_lock
from zoo.tasks import TaskData, build_task, normalize_task_spec, task_hash

GENERATOR_NAME = "latent_diffusion"
METRICS = ("test_acc", "test_loss", "val_acc", "val_loss")


@dataclass
class Request:
    """One (base, task) to generate weights for. ``base`` is the position in the generator's bases (0
    without bases), ``base_id`` its model id in the store (-1 without), ``reference_id`` the store's real
    model of that base and task (-1 if none)."""

    base: int
    base_id: int
    task_key: str
    spec: dict
    reference_id: int
    label: str


@dataclass
class RequestResult:
    """Samples of one request: ``weights [n, n_params]``, per-sample metrics ``[n]`` (NaN for non-finite
    weights), and the base's and reference's metrics on the same examples (NaN where absent)."""

    request: Request
    weights: torch.Tensor
    metrics: dict[str, np.ndarray]
    base_metrics: dict[str, float]
    reference_metrics: dict[str, float]
    seed: int
    wall_time_s: float
    support: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    def best_of_n(self) -> int:
        """Index of the sample with the highest validation accuracy (first on ties; -1 if none is finite)."""
        val = self.metrics["val_acc"]
        return -1 if np.isnan(val).all() else int(np.nanargmax(val))


def check_store(gen: LatentDiffusion, z: Zoo, checkpoint: str) -> None:
    """The store must hold the generator's architecture and, for task-vector generators, its bases with the
    same weights. Raises :class:`zoo.ZooError` naming both architectures / the base that differs."""
    ctx = gen.context
    if ctx.arch_key not in z.architectures:
        have = ", ".join(f"{k} ({a['name']} {a['config']})" for k, a in sorted(z.architectures.items()))
        raise ZooError(f"{checkpoint}: the generator is for architecture {ctx.arch_key} ({ctx.arch['name']} "
                       f"{ctx.arch['config']}), but store {z.path} has {have}")
    if not ctx.base_ids:
        return
    models = z.models.set_index("model_id")
    for pos, bid in enumerate(ctx.base_ids):
        if bid not in models.index or str(models.loc[bid, "arch_key"]) != ctx.arch_key:
            raise ZooError(f"{checkpoint}: the generator's base model {bid} ({ctx.arch_key}) is not in store {z.path}")
        w = z.weights([bid], -1)[0]
        if not torch.allclose(w, ctx.base_weights[pos], rtol=0, atol=1e-6):
            raise ZooError(f"{checkpoint}: model {bid} of store {z.path} is not the base the generator was trained "
                           f"with (its weights differ); sample from the store the generator was trained on")


def parse_class_sets(text: str) -> list[list[int]]:
    """``"2,5,7;1,3"`` → ``[[2, 5, 7], [1, 3]]`` (errors name the bad item)."""
    out = []
    for part in text.split(";"):
        try:
            ids = [int(c) for c in part.split(",") if c.strip()]
        except ValueError:
            raise ZooError(f"--tasks classes:{text}: {part!r} is not a comma-separated list of class ids") from None
        if len(ids) < 2 or len(set(ids)) != len(ids):
            raise ZooError(f"--tasks classes:{text}: a task needs at least two distinct classes, got {part!r}")
        out.append(sorted(ids))
    return out


def resolve_requests(gen: LatentDiffusion, z: Zoo, tasks: str) -> list[Request]:
    """The requests ``tasks`` names (see the module docstring), in (task, base) order."""
    ctx = gen.context
    models = z.models
    ok = models[(models["arch_key"] == ctx.arch_key) & (models["status"] == "ok")]
    if ctx.base_ids:
        ok = ok[ok["parent_id"].isin(ctx.base_ids)]
        if ctx.families and "derivation" in ok.columns:
            ok = ok[ok["derivation"].isin(ctx.families)]
    elif ctx.task_filter is not None:
        ok = ok[ok["task"] == ctx.task_filter]

    def of_rows(rows: pd.DataFrame) -> list[Request]:
        out = []
        rows = rows.sort_values(["task", "model_id"])
        if not ctx.base_ids:  # one request per task; its first model is the reference
            rows = rows.drop_duplicates("task")
        for r in rows.itertuples():
            base = ctx.base_ids.index(int(r.parent_id)) if ctx.base_ids else 0
            out.append(Request(base, int(r.parent_id) if ctx.base_ids else -1, str(r.task), dict(z.tasks[str(r.task)]),
                               int(r.model_id), f"model {int(r.model_id)}"))
        return out

    if tasks in ("unseen", "seen"):
        keys = set(ctx.test_tasks) - set(ctx.train_tasks) if tasks == "unseen" else set(ctx.train_tasks)
        requests = of_rows(ok[ok["task"].isin(keys)])
        if not requests:
            raise ZooError(f"store {z.path} has no {tasks} tasks for this generator (split {ctx.split_name!r}, "
                           f"architecture {ctx.arch_key})")
        return requests
    if tasks.startswith("classes:"):
        if ctx.source_task is None:
            raise ZooError("--tasks classes:... needs a generator trained on a model tree (with a source task)")
        requests = []
        for ids in parse_class_sets(tasks[len("classes:"):]):
            spec = normalize_task_spec({**ctx.source_task, "class_subset": ids})
            key = "task-" + task_hash(spec)
            for pos, bid in enumerate(ctx.base_ids or [-1]):
                ref = ok[(ok["task"] == key) & (ok["parent_id"] == bid)] if ctx.base_ids else ok[ok["task"] == key]
                requests.append(Request(pos, bid, key, spec, int(ref["model_id"].iloc[0]) if len(ref) else -1,
                                        "classes " + ",".join(map(str, ids))))
        return requests
    try:
        ids = [int(t) for t in tasks.split(",") if t.strip()]
    except ValueError:
        raise ZooError(f"--tasks {tasks!r}: expected unseen, seen, comma-separated model ids or "
                       "classes:C1,C2,...[;...]") from None
    if not ids:
        raise ZooError("--tasks: no model ids given")
    by_id = models.set_index("model_id")
    for i in ids:
        if i not in by_id.index:
            raise ZooError(f"--tasks: store {z.path} has no model {i} (model ids are 0..{z.n_models - 1})")
        key = str(by_id.loc[i, "arch_key"])
        if key != ctx.arch_key:
            raise ZooError(f"--tasks: model {i} has architecture {key}, but the generator is for {ctx.arch_key}")
        if ctx.base_ids and int(by_id.loc[i, "parent_id"]) not in ctx.base_ids:
            raise ZooError(f"--tasks: model {i} is not a child of the generator's bases {ctx.base_ids}")
    return of_rows(models[models["model_id"].isin(ids)])


def _metrics(weights: torch.Tensor, arch: torch.nn.Module, test: tuple, val: tuple) -> dict[str, np.ndarray]:
    t = evaluate_weights(weights, arch, *test)
    v = evaluate_weights(weights, arch, *val)
    return {"test_acc": t.acc, "test_loss": t.loss, "val_acc": v.acc, "val_loss": v.loss}


def support_set(task: TaskData, k: int, seed: int, label: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` labelled examples of ``task``'s training examples outside its validation split (seeded).
    Raises :class:`zoo.ZooError` when ``k`` exceeds them."""
    fit_x, fit_y = validation_split(task)[0]
    if k > len(fit_y):
        raise ZooError(f"--support {k} is larger than the training set of {label or 'the task'}: {len(fit_y)} "
                       f"examples can be support examples ({len(task.y_train)} training examples minus the "
                       "validation split)")
    pick = torch.randperm(len(fit_y), generator=torch.Generator().manual_seed(int(seed)))[:k]
    return fit_x[pick], fit_y[pick]


def generate_requests(gen: LatentDiffusion, z: Zoo, requests: Sequence[Request], n: int, *,
                      guidance: float | None = None, support: int | None = None, seed: int = 0,
                      steps: int | None = None, progress: bool = False) -> list[RequestResult]:
    """``n`` samples per request, evaluated on the task's test and validation examples (see module doc)."""
    if int(n) < 1:
        raise ZooError(f"--n must be >= 1, got {n}")
    ctx = gen.context
    mode = gen.hparams.conditioning
    if support is not None and mode != "support":
        raise ZooError(f"--support: this generator is conditioned on {'task descriptors' if mode == 'descriptor' else 'nothing'}"
                       ", not on support sets")
    if guidance is not None and mode == "none":
        raise ZooError("--guidance: this generator is unconditional (p-diff mode); guidance needs a condition")
    k = int(support if support is not None else gen.support_k) if mode == "support" else 0
    if mode == "support" and k < 1:
        raise ZooError(f"--support must be >= 1, got {k}")
    arch = ctx.architecture()
    tasks: dict[str, TaskData] = {}
    descriptors = {r.task_key: descriptor_of(ctx, r.spec) for r in requests}  # checks every task first
    for r in requests:
        if r.task_key not in tasks:
            tasks[r.task_key] = build_task(r.spec)
            if k:
                support_set(tasks[r.task_key], k, 0, f"task {r.task_key} ({r.label})")
    results = []
    iterator: Any = requests
    if progress:
        from tqdm import tqdm

        iterator = tqdm(requests, desc="sampling", unit="task")
    for i, r in enumerate(iterator):
        start = time.perf_counter()
        task = tasks[r.task_key]
        s = int(seed) * 1_000_003 + i
        sup = support_set(task, k, s, r.label) if k else None
        weights = gen.generate(base=torch.full((n,), r.base, dtype=torch.long),
                               descriptor=descriptors[r.task_key].expand(n, -1),
                               support_x=None if sup is None else sup[0].expand(n, *sup[0].shape),
                               support_y=None if sup is None else sup[1].expand(n, -1),
                               guidance=guidance, steps=steps, seed=s).detach().cpu().float()
        test, val = task.split("test"), task_examples(task, "val")
        metrics = _metrics(weights, arch, test, val)
        others = {}
        for name, mid in (("base", r.base_id), ("reference", r.reference_id)):
            m = _metrics(z.weights([mid], -1), arch, test, val) if mid >= 0 else {k2: np.array([np.nan]) for k2 in METRICS}
            others[name] = {k2: float(v[0]) for k2, v in m.items()}
        results.append(RequestResult(r, weights, metrics, others["base"], others["reference"], s,
                                     time.perf_counter() - start, sup))
    return results


def summary_table(results: Sequence[RequestResult]) -> pd.DataFrame:
    """One row per request: test accuracy of the samples (mean, median, max), of the best of N chosen on
    validation accuracy, of the base and of the reference child; failed samples counted."""
    rows = []
    for i, res in enumerate(results):
        acc = res.metrics["test_acc"]
        best = res.best_of_n()
        spec = res.request.spec
        classes = spec.get("class_subset")
        rows.append({"request": i, "target": res.request.label, "base_id": res.request.base_id,
                     "task": res.request.task_key, "classes": ",".join(map(str, classes)) if classes else "",
                     "n": len(acc), "failed": int(np.isnan(acc).sum()),
                     "mean": float(np.nanmean(acc)) if np.isfinite(acc).any() else np.nan,
                     "median": float(np.nanmedian(acc)) if np.isfinite(acc).any() else np.nan,
                     "max": float(np.nanmax(acc)) if np.isfinite(acc).any() else np.nan,
                     "best_of_n_val": float(acc[best]) if best >= 0 else np.nan,
                     "base": res.base_metrics["test_acc"], "reference": res.reference_metrics["test_acc"]})
    return pd.DataFrame(rows)


def print_table(table: pd.DataFrame, title: str) -> None:
    """Print :func:`summary_table` with rich, plus a mean row."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    cols = ["target", "base_id", "classes", "n", "failed", "mean", "median", "max", "best_of_n_val", "base", "reference"]
    for c in cols:
        t.add_column(c, justify="right" if c not in ("target", "classes") else "left")

    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    for _, row in table.head(40).iterrows():
        t.add_row(*(fmt(row[c]) for c in cols))
    if len(table) > 40:
        t.add_row(f"... {len(table) - 40} more", *[""] * (len(cols) - 1))
    means = table[["mean", "median", "max", "best_of_n_val", "base", "reference"]].mean()
    t.add_row("mean of requests", "", "", str(int(table["n"].sum())), str(int(table["failed"].sum())),
              *(fmt(float(means[c])) for c in ["mean", "median", "max", "best_of_n_val", "base", "reference"]))
    Console(width=max(Console().width, 150)).print(t)


def write_generated_store(out: str | Path, gen: LatentDiffusion, z: Zoo, results: Sequence[RequestResult], *,
                          checkpoint: str, settings: dict[str, Any]) -> Zoo:
    """Write the bases and every sample of ``results`` into a new store ``out`` (see module doc)."""
    ctx: GenerationContext = gen.context
    arch_cfg = dict(ctx.arch["config"])
    class_cols = [f"class_{c}" for c in ctx.class_ids]
    tasks: dict[str, dict] = {}
    rows: list[dict[str, Any]] = []

    def row(**values: Any) -> dict[str, Any]:
        spec = values.pop("spec")
        classes = set(spec.get("class_subset") or spec.get("classes") or ctx.class_ids)
        corruption = spec.get("corruption") or {}
        base = {"model_id": len(rows), "arch_key": ctx.arch_key, "architecture": ctx.arch["name"], **arch_cfg,
                "n_params": ctx.n_params, "tree_depth": 0 if values["tree_role"] == "base" else 1,
                "derivation": ("class_subset" if spec.get("class_subset") else "corruption" if corruption else "none"),
                **{c: int(i) in classes for c, i in zip(class_cols, ctx.class_ids)},
                "class_subset": ",".join(map(str, spec["class_subset"])) if spec.get("class_subset") else "",
                "n_classes_trained": len(classes), "corruption": corruption.get("kind", "none"),
                "corruption_level": float(corruption.get("level", np.nan))}
        base.update(values)
        return base

    source_key = None
    if ctx.source_task is not None:
        source_key = "task-" + task_hash(ctx.source_task)
        tasks[source_key] = dict(ctx.source_task)
    base_rows: dict[int, int] = {}
    for pos, bid in enumerate(ctx.base_ids):
        base_rows[pos] = len(rows)
        rows.append(row(spec=ctx.source_task or {}, task=source_key, parent_id=-1, tree_id=len(rows), tree_role="base",
                        generator="copy", source_model_id=bid, request=-1, sample_index=-1, guidance=np.nan,
                        support_k=0, sample_seed=-1))
    for i, res in enumerate(results):
        r = res.request
        tasks[r.task_key] = dict(r.spec)
        parent = base_rows.get(r.base, -1) if ctx.base_ids else -1
        for s in range(len(res.weights)):
            rows.append(row(spec=r.spec, task=r.task_key, parent_id=parent, tree_id=parent, tree_role="child",
                            generator=GENERATOR_NAME, source_model_id=r.reference_id, request=i, sample_index=s,
                            guidance=float(settings.get("guidance") if settings.get("guidance") is not None
                                           else gen.hparams.guidance),
                            support_k=0 if res.support is None else len(res.support[1]), sample_seed=res.seed))
    table = pd.DataFrame(rows)
    for col in table.columns:
        if table[col].dtype == object:
            table[col] = table[col].fillna("").astype(str)
    attrs: dict[str, Any] = {
        "kind": "generated", "name": Path(out).stem,
        "generated": {"generator": GENERATOR_NAME, "checkpoint": str(checkpoint), "source_store": str(z.path),
                      "trained_on": {"store": ctx.store, "arch_key": ctx.arch_key, "split": ctx.split_name,
                                     "families": ctx.families, "target": ctx.target},
                      "conditioning": gen.hparams.conditioning, **settings},
    }
    if ctx.base_ids:
        n_children = len(table) - len(ctx.base_ids)
        attrs["tree"] = {"n_bases": len(ctx.base_ids), "n_children": n_children,
                         "children_per_base": {f: int((table["derivation"] == f).sum()) // max(len(ctx.base_ids), 1)
                                               for f in ctx.families},
                         "families": list(ctx.families), "class_ids": list(ctx.class_ids), "class_columns": class_cols,
                         "source_task": source_key, "shared_tasks": False,
                         "checkpoint_epochs": {"base": [ctx.base_epoch], "child": [0]}}
    with store_lock(out), atomic_output(out) as tmp:  # an interrupted write leaves nothing under 'out'
        gz = create_zoo(tmp, models=table, architectures={ctx.arch_key: ctx.arch}, tasks=tasks, checkpoint_epochs=[0],
                        metric_names=list(METRICS), n_epochs=0, attrs=attrs)
        versions = library_versions()
        for pos, bid in enumerate(ctx.base_ids):
            w = ctx.base_weights[pos][None]
            m = _metrics(w, ctx.architecture(), *_source_examples(ctx))
            gz.write_model(base_rows[pos], weights=w, metrics={k: v for k, v in m.items()}, status="ok",
                           record={"versions": versions, "copied_from": {"store": str(z.path), "model_id": bid}})
        mid = len(ctx.base_ids)
        for res in results:
            per = res.wall_time_s / max(len(res.weights), 1)
            for s in range(len(res.weights)):
                w = res.weights[s]
                finite = bool(torch.isfinite(w).all())
                gz.write_model(mid, weights=w[None] if finite else None,
                               metrics={k: v[s:s + 1] for k, v in res.metrics.items()},
                               status="ok" if finite else "failed",
                               record={"wall_time_s": per, "versions": versions,
                                       **({} if finite else {"error": "the generator produced non-finite weights"})})
                mid += 1
    return open_zoo(out)


def _source_examples(ctx: GenerationContext) -> tuple[tuple, tuple]:
    task = build_task(ctx.source_task) if ctx.source_task is not None else None
    if task is None:
        raise ZooError("a generator with bases must know its source task")
    return task.split("test"), task_examples(task, "val")


def sample_to_store(checkpoint: str, store: str, tasks: str = "unseen", n: int = 50, out: str | None = None, *,
                    guidance: float | None = None, support: int | None = None, seed: int = 0,
                    steps: int | None = None, progress: bool = False) -> tuple[Zoo | None, pd.DataFrame]:
    """What ``weightzoo sample`` runs: load, check, resolve, generate, evaluate, write (if ``out``), summarise.

    Checks happen before anything is generated or written: ``n >= 1``, the store holds the generator's
    architecture and bases, every task derives from the generator's source task with class ids inside it,
    and ``support`` fits every task's training set. Each raises :class:`zoo.ZooError`.
    """
    if int(n) < 1:
        raise ZooError(f"--n must be >= 1, got {n}")
    if steps is not None and int(steps) < 1:
        raise ZooError(f"--steps must be >= 1, got {steps}")
    if guidance is not None and not np.isfinite(guidance):
        raise ZooError(f"--guidance must be a finite number, got {guidance}")
    if out is not None and Path(out).exists():
        raise ZooError(f"--out {out} already exists; choose another path")
    gen = load_generator(checkpoint)
    z = open_zoo(store)
    check_store(gen, z, checkpoint)
    requests = resolve_requests(gen, z, tasks)
    results = generate_requests(gen, z, requests, n, guidance=guidance, support=support, seed=seed, steps=steps,
                                progress=progress)
    settings = {"tasks": tasks, "n": int(n), "guidance": guidance, "support": support, "seed": int(seed),
                "steps": int(steps or gen.hparams.sample_steps)}
    gz = write_generated_store(out, gen, z, results, checkpoint=str(checkpoint), settings=settings) if out else None
    return gz, summary_table(results)
