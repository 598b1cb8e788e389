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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zoo.errors import ZooError
from zoo.format import STATUS_CODES, architecture_key, library_versions
from zoo.atomic import atomic_output
from kernels.layout import ParamLayout
from zoo.store import Zoo, create_zoo, open_zoo


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
    with atomic_output(out, stable=True) as tmp:
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
