"""Compute the landscape metrics of a store's complete models and write them into it.

:func:`compute_landscape` groups the ``ok`` models as they were trained -- by the populations of the
zoo's stored plan (``attrs["plan"]``: widths padded together, :mod:`generators.planner`), split by
task; by architecture and task for models the plan does not cover -- processes each group as a
population (chunks of ``max_population``), and writes every value with the settings that produced
it. Every value depends only on the model (or pair), never on its group. It is resumable: a model whose value already exists with the same settings and checkpoint is
skipped, and pair values already stored are kept, so a rerun after an interruption finishes the job
(values that came out NaN are retried). A chunk that fails is recomputed one model (or pair) at a
time; a model whose metric still fails gets NaN, and the rest goes on. Diverged and failed models
are never computed and stay NaN.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from generators.landscape.cka import pair_cka
from generators.landscape.connectivity import curve_values, linear_barrier, mc_from_curve, train_bends
from generators.landscape.hessian import hessian_metrics
from generators.landscape.names import DESCRIPTIONS, get_metric_family
from generators.landscape.pairs import cell_pairs
from generators.landscape.population_data import fixed_batch, population_of, stored_weights
from generators.landscape.settings import LandscapeSettings, load_settings
from generators.landscape.spectra import ALPHA_REASONS, SPREAD_TOL, layer_alpha_fits, n_weight_layers
from generators.population import PopulationModel
from zoo.errors import CorruptChunkError, ZooError
from zoo.format import STATUS_CODES, STATUS_NAMES, to_jsonable
from zoo.lock import locks_store
from zoo.store import Zoo
from zoo.tasks import TaskData, build_task

Values = dict[str, np.ndarray]


class _Tally:
    """Counts and first errors of one family, reported in the summary."""

    def __init__(self) -> None:
        self.computed = self.skipped = self.failed = 0
        self.errors: list[str] = []
        self.seconds = 0.0

    def as_dict(self, unit: str) -> dict[str, Any]:
        return {"unit": unit, "computed": self.computed, "skipped": self.skipped, "failed": self.failed,
                "errors": self.errors[:5], "seconds": round(self.seconds, 3)}


def _robust(fn: Callable[[list], Values], items: list, shapes: Mapping[str, tuple[int, ...]], tally: _Tally) -> Values:
    """``fn(items)``; if it raises, every item alone; an item that still fails gets NaN values
    (``shapes[name]`` is one item's value shape)."""
    try:
        return fn(items)
    except CorruptChunkError:  # a damaged store is not a metric that failed: stop with its error
        raise
    except Exception as exc:  # noqa: BLE001 - a failing chunk must not stop the zoo
        chunk_error = exc
    parts: list[Values] = []
    for item in items:
        try:
            if len(items) == 1:  # already tried alone
                raise chunk_error
            parts.append(fn([item]))
        except CorruptChunkError:
            raise
        except Exception as exc:  # noqa: BLE001
            tally.failed += 1
            tally.errors.append(f"{item}: {type(exc).__name__}: {exc}")
            parts.append({})
    return {name: np.concatenate([p[name] if p else np.full((1, *shape), np.nan) for p in parts])
            for name, shape in shapes.items()}


class _Run:
    """State of one :func:`compute_landscape` call."""

    def __init__(self, z: Zoo, settings: LandscapeSettings, checkpoint: int, planned: pd.DataFrame) -> None:
        self.z, self.s, self.c = z, settings, checkpoint
        self.tally = {f: _Tally() for f in settings.metrics}
        self.tables: dict[str, dict[tuple[int, int], np.ndarray]] = {}
        self.n_layers = max(n_weight_layers(z.layout(k)) for k in z.architectures)
        self.arch_key = dict(zip(planned["model_id"].astype(int), planned["arch_key"].astype(str)))

    def population(self, ids: Sequence[int]) -> tuple[PopulationModel, Any, torch.Tensor]:
        """:func:`population_of` ``ids`` at this run's checkpoint (widths padded together)."""
        return population_of(self.z, ids, self.c, [self.arch_key[int(i)] for i in ids])

    def _shapes(self, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
        """Shape of one model's (or pair's) value of each name."""
        def shape(name: str) -> tuple[int, ...]:
            if name in ("alpha_layers", "alpha_reason"):
                return (self.n_layers,)
            return (self.s.mc.n_points,) if name.endswith("_curve") else ()
        return {name: shape(name) for name in names}

    def record(self, family: str) -> dict[str, Any]:
        """The settings stored with ``family``'s values: :meth:`LandscapeSettings.record` and, for alpha, the
        fit's fixed tolerance and the reason codes of ``alpha_reason``."""
        rec = self.s.record(family)
        if family == "alpha":
            rec = {**rec, "spread_tol": SPREAD_TOL, "nan_reasons": list(ALPHA_REASONS),
                   "fit": "Clauset et al. 2009: MLE alpha per xmin, two-sided KS distance chooses xmin"}
        return rec

    # ------------------------------------------------------------------ per-model families
    def declare(self, families: Sequence[str]) -> None:
        for family in families:
            for name in get_metric_family(family).model_names:
                self.z.declare_landscape(name, self.record(family), checkpoint=self.c,
                                         shape=self._shapes([name])[name], description=DESCRIPTIONS[name])

    def per_model(self, family: str, ids: list[int], task: TaskData) -> None:
        """Compute ``family`` (``hessian`` or ``alpha``) for the models ``ids`` of one group that have
        no value yet."""
        tally = self.tally[family]
        names = get_metric_family(family).model_names
        if family == "alpha":  # done once its reasons are written: a NaN alpha with a reason is an answer
            missing = [i for i, row in zip(ids, self.z.landscape("alpha_reason", ids)) if np.isnan(row).all()]
        else:
            stored = np.stack([self.z.landscape(n, ids) for n in names if not n.endswith("_se")], axis=1)
            missing = [i for i, row in zip(ids, stored) if np.isnan(row).any()]
        tally.skipped += len(ids) - len(missing)
        fn = {"hessian": self._hessian, "alpha": self._alpha}[family]

        def write(chunk: list, values: Values) -> None:
            for name in names:
                self.z.write_landscape(name, chunk, values[name])

        self._compute(family, names, missing, lambda items: fn(items, task), write)

    def _compute(self, family: str, names: Sequence[str], missing: list, fn: Callable[[list], Values],
                 write: Callable[[list, Values], None]) -> None:
        """Run ``fn`` on chunks of ``missing`` (models or pairs) of at most ``max_population``, robustly,
        and ``write`` each chunk's values as soon as it is done."""
        tally = self.tally[family]
        for start in range(0, len(missing), self.s.max_population):
            chunk = missing[start:start + self.s.max_population]
            t0 = time.perf_counter()
            failed_before = tally.failed
            write(chunk, _robust(fn, chunk, self._shapes(names), tally))
            tally.computed += len(chunk) - (tally.failed - failed_before)
            tally.seconds += time.perf_counter() - t0

    def _hessian(self, ids: list[int], task: TaskData) -> Values:
        h = self.s.hessian
        model, layout, flat = self.population(ids)
        out: Values = {}
        for split, n in (("train", h.n_train), ("test", h.n_test)):
            x, y = fixed_batch(task, split, n, h.sample_rule, h.sample_seed)
            res = hessian_metrics(model, layout, flat, x, y, ids, iters=h.iters, tol=h.tol,
                                  trace_vectors=h.trace_vectors, trace_tol=h.trace_tol, seed=h.seed,
                                  batch_size=h.batch_size, group_bytes=self.s.group_bytes,
                                  trace_min_vectors=h.trace_min_vectors)
            out[f"hessian_top_eig_{split}"] = res["top_eig"]
            out[f"hessian_trace_{split}"] = res["trace"]
            out[f"hessian_trace_{split}_se"] = res["trace_se"]
        return out

    def _alpha(self, ids: list[int], task: TaskData) -> Values:
        a = self.s.alpha
        padded = np.full((len(ids), self.n_layers), np.nan)
        why = np.full((len(ids), self.n_layers), np.nan)
        keys = np.array([self.arch_key[int(i)] for i in ids])
        for key in dict.fromkeys(keys):  # spectra of each architecture's own (unpadded) matrices
            rows = np.flatnonzero(keys == key)
            flat = self.z.weights([ids[r] for r in rows], self.c)
            per_layer, reasons = layer_alpha_fits(
                self.z.layout(key), flat, min_eigs=a.min_eigs, min_tail=a.min_tail, zero_tol=a.zero_tol,
                farms=a.farms, farms_q=a.farms_q, farms_rows=a.farms_rows, farms_windows=a.farms_windows)
            padded[rows, :per_layer.shape[1]] = per_layer
            why[rows, :reasons.shape[1]] = reasons
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: mean is NaN
            mean = np.nanmean(padded, axis=1)
        return {"alpha": mean, "alpha_layers": padded, "alpha_reason": why}

    # ------------------------------------------------------------------ pair families
    def _table(self, name: str, family: str) -> dict[tuple[int, int], np.ndarray]:
        """Stored values of pair metric ``name`` if they were computed with these settings."""
        if name not in self.tables:
            table: dict[tuple[int, int], np.ndarray] = {}
            info = self.z.meta.get("pairs", {}).get(name)
            if (info is not None and info.get("checkpoint") == self.c
                    and info.get("settings") == to_jsonable(self.s.record(family))):
                df = self.z.pairs(name)
                for a, b, v in zip(df["model_a"], df["model_b"], df["value"]):
                    table[(int(a), int(b))] = np.asarray(v, dtype=np.float64)
            self.tables[name] = table
        return self.tables[name]

    def pairs(self, family: str, group: pd.DataFrame, task: TaskData) -> None:
        """Compute pair family ``family`` for the cell pairs of one group (rows of the models table)
        that have no finite value yet; write the pair tables and the per-model means."""
        tally = self.tally[family]
        names = get_metric_family(family).pair_names
        pairs = cell_pairs(group, self.s.pairs.max_per_cell, self.s.pairs.seed)
        tables = [self._table(name, family) for name in names]
        # a run interrupted between two tables leaves a pair in some only: it is missing until in all
        missing = [p for p in pairs if any(p not in t or not np.isfinite(t[p]).all() for t in tables)]
        tally.skipped += len(pairs) - len(missing)
        fn = {"cka": self._cka, "mc": self._curve, "barrier": self._straight}[family]

        def write(chunk: list, values: Values) -> None:
            for name in names:
                for k, pair in enumerate(chunk):
                    self.tables[name][pair] = np.asarray(values[name][k], dtype=np.float64)
            self._write_pairs(family)
            self._write_model_means(family, sorted({i for pair in chunk for i in pair}))  # only their means changed

        self._compute(family, names, missing, lambda items: fn(items, task), write)

    def _write_pairs(self, family: str) -> None:
        for name in get_metric_family(family).pair_names:
            table = self.tables[name]
            keys = sorted(table)
            values = np.stack([table[k] for k in keys]) if keys else np.zeros((0,))
            self.z.write_pairs(name, [k[0] for k in keys], [k[1] for k in keys], values, self.s.record(family),
                               checkpoint=self.c, description=DESCRIPTIONS[name])

    def _write_model_means(self, family: str, ids: list[int]) -> None:
        for name in get_metric_family(family).model_names:
            table = self.tables[name]
            by_model: dict[int, list[float]] = {i: [] for i in ids}
            for (a, b), v in table.items():
                for m in (a, b):
                    if m in by_model:
                        by_model[m].append(float(v))
            have = [i for i in ids if by_model[i]]
            if have:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    means = np.array([np.nanmean(by_model[i]) for i in have])
                self.z.write_landscape(name, have, means)

    def _endpoints(self, pairs: list[tuple[int, int]]) -> tuple[PopulationModel, Any, torch.Tensor, torch.Tensor]:
        model, layout, a = self.population([p[0] for p in pairs])
        second = [p[1] for p in pairs]  # a pair shares its cell's width
        b = model.embed(stored_weights(self.z, second, self.c, [self.arch_key[i] for i in second]))
        return model, layout, a, b

    def _cka(self, pairs: list[tuple[int, int]], task: TaskData) -> Values:
        s = self.s.cka
        x, _ = fixed_batch(task, s.split, s.n_samples, s.sample_rule, s.sample_seed)
        ids = sorted({i for p in pairs for i in p})
        model, layout, flat = self.population(ids)
        with torch.no_grad():
            logits = model.logits(layout.unflatten(flat), x, shared=True)
        row = {m: k for k, m in enumerate(ids)}
        a = np.array([row[p[0]] for p in pairs])
        b = np.array([row[p[1]] for p in pairs])
        return {"cka": pair_cka(logits, a, b)}

    def _eval_batch(self, task: TaskData) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.s.mc
        return fixed_batch(task, m.eval_split, m.eval_samples, m.sample_rule, m.sample_seed)

    def _curve(self, pairs: list[tuple[int, int]], task: TaskData) -> Values:
        m = self.s.mc
        model, layout, a, b = self._endpoints(pairs)
        bend = train_bends(model, layout, a, b, task.x_train, task.y_train, pairs, epochs=m.epochs, lr=m.lr,
                           momentum=m.momentum, weight_decay=m.weight_decay, batch_size=m.batch_size, seed=m.seed)
        x, y = self._eval_batch(task)
        loss, err, _ = curve_values(model, layout, a, bend, b, x, y, m.n_points)
        return {"mc_loss": mc_from_curve(loss), "mc_error": mc_from_curve(err), "mc_loss_curve": loss,
                "mc_error_curve": err}

    def _straight(self, pairs: list[tuple[int, int]], task: TaskData) -> Values:
        model, layout, a, b = self._endpoints(pairs)
        x, y = self._eval_batch(task)
        loss, err, ts = curve_values(model, layout, a, 0.5 * (a + b), b, x, y, self.s.mc.n_points)
        return {"barrier_loss": linear_barrier(loss, ts), "barrier_error": linear_barrier(err, ts),
                "barrier_loss_curve": loss, "barrier_error_curve": err}


def _training_groups(z: Zoo, rows: pd.DataFrame) -> pd.Series:
    """A group label per row of the models table: its population in the zoo's stored plan (``plan k``),
    else its architecture key. All models of a grid cell share the label of the cell's first model, so
    that every seed pair of the cell is in one group (a plan may cut a cell between populations)."""
    plan = z.meta.get("plan")
    population = {}
    if isinstance(plan, Mapping):
        for k, p in enumerate(plan.get("populations", [])):
            for i in p["model_ids"]:
                population[int(i)] = f"plan {k:04d}"
    labels = pd.Series([population.get(int(i), str(a)) for i, a in zip(rows["model_id"], rows["arch_key"])],
                       index=rows.index, name="group")
    if "grid_cell" in rows.columns:
        first = rows.sort_values("model_id").groupby("grid_cell")["model_id"].transform("first")
        by_id = dict(zip(rows["model_id"], labels))
        labels = pd.Series([by_id[int(i)] for i in first.reindex(rows.index)], index=rows.index, name="group")
    return labels


@locks_store("z")  # one writer per store (zoo.lock); re-entrant inside 'weightzoo generate'
def compute_landscape(z: Zoo, settings: LandscapeSettings | Mapping[str, Any] | str | Path | None = None, *,
                      model_ids: Sequence[int] | None = None, progress: bool = True) -> dict[str, Any]:
    """Compute every enabled landscape metric of the complete (``ok``) models of ``z`` (opened with
    ``mode="r+"``) and write them into the store; see the module docstring.

    ``settings``: :class:`LandscapeSettings`, a mapping, a YAML file or None (defaults).
    ``model_ids`` restricts the work to these models (pairs need both models among them).
    Returns a summary: ``checkpoint``, ``checkpoint_epoch``, ``n_models`` (selected), ``n_ok``,
    ``not_computed`` (status counts of the others), per family ``computed``/``skipped``/``failed``
    (models, or pairs for ``cka``/``mc``/``barrier``) with the first errors and seconds, ``notes``.
    """
    s = load_settings(settings)
    if not s.enabled or not s.metrics:
        return {"enabled": False, "metrics": {}, "notes": ["landscape metrics are switched off in the settings"]}
    if not z.writable:
        raise ZooError(f"{z.path} is open read-only; open it with zoo.open(path, mode='r+') to write landscape metrics")
    start = time.perf_counter()
    c = z.checkpoint_index(s.checkpoint)
    planned = z.planned
    status = z.status_codes()
    if model_ids is None:
        selected = planned["model_id"].to_numpy()
    else:
        selected = np.unique(np.asarray(list(model_ids), dtype=np.int64))
        n = z.n_models
        bad = [int(i) for i in selected if not 0 <= i < n]
        if bad:
            raise ZooError(f"{z.path}: no models {bad[:5]} (model ids are 0..{n - 1})")
    ok = [int(i) for i in selected if status[i] == STATUS_CODES["ok"]]
    not_ok: dict[str, int] = {}
    for i in selected:
        if status[i] != STATUS_CODES["ok"]:
            name = STATUS_NAMES.get(int(status[i]), "unknown")
            not_ok[name] = not_ok.get(name, 0) + 1
    notes: list[str] = []
    pair_families = [f for f in s.metrics if get_metric_family(f).on_pairs]
    if pair_families and "grid_cell" not in planned.columns:
        notes.append(f"no 'grid_cell' column in the models table: pair metrics {pair_families} skipped")
        pair_families = []

    bar = tqdm(total=len(ok), desc="landscape metrics", unit="model", disable=not progress or not ok)
    run = _Run(z, s, c, planned)
    run.declare([f for f in s.metrics if not get_metric_family(f).on_pairs or f in pair_families])
    tasks: dict[str, TaskData] = {}
    threads = torch.get_num_threads()
    if s.threads:
        torch.set_num_threads(s.threads)
    try:
        rows = planned[planned["model_id"].isin(ok)]
        for (label, task_key), group in rows.groupby([_training_groups(z, rows), "task"], sort=True):
            if task_key not in tasks:
                tasks[task_key] = build_task(z.tasks[task_key])
            ids = sorted(int(i) for i in group["model_id"])
            for family in s.metrics:
                bar.set_postfix_str(f"{label}: {family}")
                if not get_metric_family(family).on_pairs:
                    run.per_model(family, ids, tasks[task_key])
                elif family in pair_families:
                    run.pairs(family, group, tasks[task_key])
            bar.update(len(ids))
    finally:
        bar.close()
        torch.set_num_threads(threads)
    return {
        "enabled": True,
        "checkpoint": c,
        "checkpoint_epoch": z.checkpoint_epochs[c],
        "n_models": int(len(selected)),
        "n_ok": len(ok),
        "not_computed": not_ok,
        "metrics": {f: run.tally[f].as_dict("pairs" if get_metric_family(f).on_pairs else "models") for f in s.metrics},
        "notes": notes,
        "seconds": round(time.perf_counter() - start, 3),
    }

