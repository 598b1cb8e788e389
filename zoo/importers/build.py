"""Building a store from what an importer found: a planned table, architectures, and one result per model.

The store is built under a stable hidden name beside the target (``.<name>.partial``) and renamed into
place when every model is written, so an interrupted import never looks complete; rerunning the same
import on the same source resumes (models whose status is already written are skipped).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from kernels.layout import ParamLayout
from zoo.atomic import atomic_output
from zoo.errors import ZooError
from zoo.format import STATUS_CODES, architecture_key, library_versions
from zoo.lock import store_lock
from zoo.store import Zoo, create_zoo, open_zoo


class DuplicateRowsWarning(UserWarning):
    """A source log holds several rows for one iteration or epoch (a trial restored from a checkpoint
    re-runs some); the last occurrence of each is kept."""


def index_rows(rows: Sequence[Mapping[str, Any]], where: str, fields: Sequence[tuple[str, int]]
               ) -> list[Mapping[str, Any]]:
    """Log rows by their own iteration or epoch field: ``result[e]`` is the row of epoch ``e``.

    ``fields`` are ``(field, offset)`` candidates in order of preference; the first that every row has as
    an integer is used, epoch = value - offset (Ray Tune's ``training_iteration`` counts from 1, so
    ``("training_iteration", 1)`` makes its first row epoch 0). Rows repeating an epoch keep the last
    occurrence, with a :class:`DuplicateRowsWarning`; an epoch missing between 0 and the last is a
    :class:`ZooError` naming ``where``. Rows without any such field are returned in file order.
    """
    def integer(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and float(v).is_integer()

    for name, offset in fields:
        if rows and all(integer(r.get(name)) for r in rows):
            break
    else:
        return list(rows)
    by_epoch: dict[int, Mapping[str, Any]] = {}
    repeated: list[int] = []
    for r in rows:
        e = int(r[name]) - offset
        if e in by_epoch:
            repeated.append(e)
        by_epoch[e] = r
    if repeated:
        warnings.warn(f"{where}: {name} values {sorted(set(int(e) + offset for e in repeated))[:10]} appear more "
                      "than once (a trial restored from a checkpoint re-runs them); the last occurrence of each is "
                      "kept", DuplicateRowsWarning, stacklevel=2)
    if min(by_epoch) < 0:
        raise ZooError(f"{where}: field {name!r} has value {min(by_epoch) + offset}, below its first value {offset}")
    missing = [e + offset for e in range(max(by_epoch) + 1) if e not in by_epoch]
    if missing:
        raise ZooError(f"{where}: field {name!r} skips the values {missing[:10]}{' ...' if len(missing) > 10 else ''} "
                       f"(rows for {offset}..{max(by_epoch) + offset} are needed, one per epoch); the log is incomplete")
    return [by_epoch[e] for e in range(max(by_epoch) + 1)]


@dataclass
class ModelResult:
    """One imported model: ``weights [n_checkpoints, n_params]`` (NaN where a checkpoint is missing;
    None when none exists), ``metrics {name: [n_checkpoints]}``, ``curves {name: [n_epochs]}``."""

    weights: np.ndarray | None
    status: str
    record: dict = field(default_factory=dict)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    curves: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class ImportPlan:
    """Everything but the per-model results. ``models`` has one row per model with ``model_id``,
    ``arch_key`` and ``task``; ``curve_names`` are the per-epoch curves (``train_loss`` always exists)."""

    importer: str
    source: str
    models: pd.DataFrame
    architectures: dict[str, dict]
    tasks: dict[str, Any]
    checkpoint_epochs: list[int]
    metric_names: list[str]
    n_epochs: int
    curve_names: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""


def fingerprint_files(paths: Sequence[Path]) -> str:
    """A hash of file names, sizes and modification times: changes when the source changes."""
    h = hashlib.blake2b(digest_size=12)
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def generic_architecture(signature: Sequence[tuple[str, tuple[int, ...]]], source: str) -> tuple[str, dict, ParamLayout]:
    """A layout for parameters no registered architecture matches (``signature``: names and shapes in
    file order). Weights are stored and can be learned on; :meth:`Zoo.build_model` refuses these models."""
    layout = ParamLayout.from_shapes(signature)
    config = {"signature": hashlib.blake2b(json.dumps([[n, list(s)] for n, s in signature]).encode(),
                                           digest_size=8).hexdigest()}
    key = architecture_key("generic", config, [], 0)
    return key, {"name": "generic", "config": config, "input_shape": [], "n_classes": 0, "generic": True,
                 "source": source, "layout": layout.to_record()}, layout


def classify(weights: np.ndarray | None, missing: Sequence[int], error: str | None,
             checkpoint_epochs: Sequence[int]) -> tuple[str, dict]:
    """Status and record fields: ``failed`` for an error or missing checkpoints, ``diverged`` for
    non-finite weights (``diverged_epoch``: the epoch of the first checkpoint that is not finite, one of
    ``checkpoint_epochs``), else ``ok``."""
    record: dict[str, Any] = {}
    if error:
        record["error"] = error
        return "failed", record
    if weights is None or missing:
        record["error"] = f"checkpoints missing at epochs {list(missing)}" if weights is not None else "no checkpoints"
        return "failed", record
    if not np.isfinite(weights).all():
        bad = np.flatnonzero(~np.isfinite(weights).all(axis=1))
        record["diverged_epoch"] = int(checkpoint_epochs[int(bad[0])])
        return "diverged", record
    return "ok", record


def _planned_table(plan: ImportPlan) -> pd.DataFrame:
    df = plan.models.copy()
    for col in df.columns:
        if df[col].dtype == object or str(df[col].dtype) in ("str", "string"):
            df[col] = df[col].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    return df


def build_store(plan: ImportPlan, out: str | os.PathLike, load: Callable[[int], ModelResult],
                progress: bool = True) -> Zoo:
    """Create the store of ``plan`` at ``out`` and fill it with ``load(model_id)`` for every model."""
    out = Path(out)
    attrs = {"kind": "imported", "name": out.stem,
             "import": {"importer": plan.importer, "source": plan.source, "fingerprint": plan.fingerprint,
                        "versions": library_versions(), **plan.attrs}}
    with store_lock(out), atomic_output(out, stable=True) as tmp:  # one import into 'out' at a time
        z = _open_or_create(tmp, plan, attrs)
        codes = z.status_codes()
        todo = [i for i in range(z.n_models) if codes[i] == STATUS_CODES["pending"]]
        for i in tqdm(todo, desc=f"import {plan.importer}", unit="model", disable=not progress):
            result = load(i)
            z.write_model(i, weights=result.weights, metrics=result.metrics, status=result.status,
                          record=result.record, curves=result.curves)
    return open_zoo(out)


def _open_or_create(tmp: Path, plan: ImportPlan, attrs: dict) -> Zoo:
    if tmp.exists():
        try:
            z = open_zoo(tmp, mode="r+")
            if z.meta.get("import", {}).get("fingerprint") == plan.fingerprint and plan.fingerprint:
                return z
        except ZooError:
            pass
        shutil.rmtree(tmp)  # another source, or the source changed: start over
    z = create_zoo(tmp, models=_planned_table(plan), architectures=plan.architectures, tasks=plan.tasks,
                   checkpoint_epochs=plan.checkpoint_epochs, metric_names=plan.metric_names,
                   n_epochs=plan.n_epochs, attrs=attrs, curve_names=plan.curve_names)
    return z
