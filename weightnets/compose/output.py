"""Write a composed model into a zoo store (``docs/COMPOSE.md``, "The output store").

The store (``kind: "composition"``, one checkpoint) holds two models of the base's architecture:
model 0 is a copy of the base (``source_model_id`` = its id in the source store) and model 1 the
composed model, whose ``parent_id`` is 0, so ``z.task_vector(1)`` is the composed model minus the base.
Columns: ``role`` (``base`` / ``composed``), ``method``, ``task_ids`` (the children composed, in the
source store), ``eval_tasks`` (the task keys it is evaluated on), ``coefficients`` (JSON), ``shots``
(−1 without), ``seed``, ``source_store``, ``source_model_id``. Metrics: ``test_acc`` and
``normalized_acc`` (means over the evaluated tasks) and ``acc_<task key>`` per task. The attribute
``composition`` repeats the per-task table (child accuracy, base accuracy, normalised accuracy), the
method's options, what was selected on which data, and what the coefficients were fitted on.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import zoo
from weightnets.compose.run import Composition, TaskReport
from weightnets.compose.taskset import CompositionError, CompositionProblem


def metric_name(task_key: str) -> str:
    """The per-task metric column of ``task_key`` (``acc_<task key>``)."""
    return f"acc_{task_key}"


def write_composition(out: str | Path, source: zoo.Zoo, problem: CompositionProblem, composition: Composition,
                      report: TaskReport, *, shots: int | None, seed: int) -> zoo.Zoo:
    """Create the output store ``out`` (it must not exist: :class:`zoo.ZooError`) and write the base and
    the composed model with their evaluation; returns the store opened read-only."""
    if problem.base_id is None or not problem.task_keys:
        raise CompositionError("write_composition needs a problem loaded from a zoo (load_problem)")
    arch_key = source.arch_of([problem.base_id])
    eval_keys = list(dict.fromkeys(problem.task_keys))
    tasks = {k: source.tasks[k] for k in [problem.base_task_key, *eval_keys]}
    per_task = [{"child_id": int(c), "task_key": k, "derivation": d, "acc": float(a), "base_acc": float(b),
                 "child_acc": float(ch), "normalized_acc": float(a / ch)}
                for c, k, d, a, b, ch in zip(problem.child_ids, problem.task_keys, problem.derivations, report.acc,
                                             report.base_acc, report.child_acc)]
    models = pd.DataFrame({
        "model_id": [0, 1],
        "arch_key": [arch_key, arch_key],
        "task": [problem.base_task_key, problem.base_task_key],
        "parent_id": [-1, 0],
        "role": ["base", "composed"],
        "method": ["none", composition.method],
        "task_ids": ["", ",".join(str(c) for c in problem.child_ids)],
        "eval_tasks": ["", ",".join(problem.task_keys)],
        "coefficients": ["", json.dumps(composition.coefficients, sort_keys=True)],
        "shots": [-1, -1 if shots is None else int(shots)],
        "seed": [int(seed), int(seed)],
        "source_store": [str(source.path)] * 2,
        "source_model_id": [int(problem.base_id), -1],
    })
    metric_names = ["test_acc", "normalized_acc"] + [metric_name(k) for k in eval_keys]
    attrs = {"kind": "composition", "composition": {
        "method": composition.method, "base_id": int(problem.base_id), "source_store": str(source.path),
        "tasks": per_task, "coefficients": composition.coefficients, "data": composition.data,
        "selection": {k: v for k, v in composition.selection.items() if k != "grid"}, "shots": shots,
        "seed": int(seed), "summary": report.summary()}}
    z = zoo.create_zoo(out, models=models, architectures={arch_key: source.architectures[arch_key]}, tasks=tasks,
                       checkpoint_epochs=[0], metric_names=metric_names, n_epochs=1, attrs=attrs)
    versions = {"torch": torch.__version__, "weightzoo": zoo.__version__, "python": platform.python_version()}
    rows = [(report.base_acc, report.base_acc / report.child_acc), (report.acc, report.normalized)]
    weights = [problem.vectors.base.float(), composition.flat.float()]
    for mid, ((acc, norm), w) in enumerate(zip(rows, weights)):
        metrics: dict[str, Any] = {"test_acc": np.array([np.mean(acc)]), "normalized_acc": np.array([np.mean(norm)])}
        for k in eval_keys:
            idx = [t for t, key in enumerate(problem.task_keys) if key == k]
            metrics[metric_name(k)] = np.array([np.mean(acc[idx])])
        z.write_model(mid, weights=w[None], metrics=metrics, status="ok",
                      record={"versions": versions, "role": "base" if mid == 0 else "composed"})
    return zoo.open(out)
