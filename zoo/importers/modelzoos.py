"""Importer for Ray Tune trial directories of the Model Zoos (Schürholt et al., NeurIPS 2022) and the
Phase-Transition Model Zoo releases.

A trial directory holds ``params.json`` (the trial's config, keys such as ``model::type``,
``optim::lr``, ``training::batchsize``), ``result.json`` (one JSON object per line, indexed by Ray Tune's
``training_iteration``, which counts from 1: iteration 1 is epoch 0,
the evaluation at initialisation; a trial restored from a checkpoint repeats iterations, of which the
last occurrence is kept with a warning; a skipped iteration is an error naming the file; a log without ``training_iteration`` is
indexed by a 0-based ``epoch`` field, else by line order) and ``checkpoint_<epoch, 6 digits>/checkpoints`` (a
``torch.save``d state dict of the model, keys possibly prefixed ``module.``). Mapping:

* models table: every ``params.json`` key, nested dicts flattened with ``.`` and ``::`` written ``.``;
  known keys renamed (:data:`COLUMN_MAP`), the rest kept under their flattened name; ``trial``
  (directory relative to the source); the last ``result.json`` line's non-numeric values as
  ``result.<key>`` (Ray's ``trial_id``, ``hostname``, ``date``...);
* checkpoints: one per ``checkpoint_XYZ`` directory (epoch ``XYZ``), over the union of all trials'
  epochs; state dicts are read with ``torch.load(..., weights_only=True)`` (pickled objects other than
  tensors and plain containers are refused);
* metrics: every numeric ``result.json`` key at each checkpoint epoch, and per epoch as
  ``curves/<key>`` (``curves/train_loss`` is the per-epoch training loss); ``-999`` — the Model Zoos
  code's "not computed" marker for the training metrics at initialisation — becomes NaN;
* status: ``failed`` for a trial with an ``error.txt``, no checkpoints, or checkpoints missing that
  other trials have; ``diverged`` for non-finite weights; ``ok`` otherwise;
* architectures (``model::type``): ``CNN``, ``CNN2`` (28x28 inputs) and ``CNN3`` (32x32) become
  ``cnn2d`` with the source's channels, kernels and pooling, and ``pool_first`` (the source applies
  max-pool before the nonlinearity); ``MLP`` becomes ``mlp`` when every hidden layer has the same width
  and biases are used. Any other type is refused with the file and key named.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from kernels.layout import ParamLayout
from zoo.architectures import architecture_record
from zoo.errors import ZooError
from zoo.importers.build import ImportPlan, ModelResult, build_store, classify, fingerprint_files, index_rows
from zoo.importers.torch_state import load_state_dict
from zoo.store import Zoo

CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")
NOT_COMPUTED = -999.0

# params.json key -> models-table column
COLUMN_MAP = {
    "optim::lr": "lr",
    "optim::wd": "weight_decay",
    "optim::optimizer": "optimizer",
    "optim::momentum": "momentum",
    "optim::nesterov": "nesterov",
    "seed": "seed",
    "training::batchsize": "batch_size",
    "training::epochs_train": "epochs",
    "model::type": "source_model_type",
    "model::nlin": "activation",
    "model::dropout": "dropout",
    "model::init_type": "init",
    "model::channels_in": "channels_in",
    "model::width": "width",
    "dataset::dump": "dataset",
}

NONLINEARITIES = {"tanh": "tanh", "relu": "relu", "leakyrelu": "leaky_relu", "sigmoid": "sigmoid",
                  "silu": "silu", "gelu": "gelu"}

# model::type -> (cnn2d options, input height = width)
CNN_TYPES = {
    "CNN": ({"channels": [8, 6, 4], "kernels": [5, 5, 2], "pools": [2, 2, 1], "hidden": 20}, 28),
    "CNN2": ({"channels": [6, 9, 6], "kernels": [5, 5, 2], "pools": [2, 2, 1], "hidden": 20}, 28),
    "CNN3": ({"channels": [16, 32, 15], "kernels": [3, 3, 3], "pools": [2, 2, 2], "hidden": 20}, 32),
}


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out


def _column(key: str) -> str:
    return COLUMN_MAP.get(key, key.replace("::", "."))


def _metric(key: str) -> str:
    """A result key as a store array name (no ``/``)."""
    return str(key).replace("/", ".")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ZooError(f"{path}: file is missing") from None
    except ValueError as exc:
        raise ZooError(f"{path}: not valid JSON ({exc})") from exc


#: result.json fields that index its rows, in order of preference, with the value of epoch 0
EPOCH_FIELDS = (("training_iteration", 1), ("epoch", 0))


def _read_results(path: Path) -> list[dict]:
    """``result.json`` rows by epoch (``index_rows``: by Ray's ``training_iteration``, else an ``epoch`` field;
    the last of repeated iterations kept); empty when the file is missing."""
    if not path.is_file():
        return []
    lines = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ZooError(f"{path}: line {n} is not valid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise ZooError(f"{path}: line {n} is not a JSON object")
        lines.append(obj)
    return index_rows(lines, str(path), EPOCH_FIELDS)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _architecture(config: Mapping[str, Any], where: Path) -> tuple[str, dict, tuple[int, ...], int]:
    """``(name, config, input_shape, n_classes)`` of the registered architecture that computes the trial's model."""
    def need(key: str) -> Any:
        if key not in config:
            raise ZooError(f"{where}: key {key!r} is missing")
        return config[key]

    mtype = need("model::type")
    nlin = str(config.get("model::nlin", "tanh" if mtype in CNN_TYPES else "leakyrelu"))
    if nlin not in NONLINEARITIES:
        raise ZooError(f"{where}: key 'model::nlin' is {nlin!r}, which weightzoo's architectures do not "
                       f"implement (supported: {sorted(NONLINEARITIES)})")
    act = NONLINEARITIES[nlin]
    if mtype in CNN_TYPES:
        options, side = CNN_TYPES[mtype]
        channels_in = int(need("model::channels_in"))
        return "cnn2d", {**options, "activation": act, "pool_first": True}, (channels_in, side, side), 10
    if mtype == "MLP":
        h_dim = need("model::h_dim")
        widths = [int(h) for h in (h_dim if isinstance(h_dim, list) else [h_dim])]
        if len(set(widths)) != 1:
            raise ZooError(f"{where}: key 'model::h_dim' is {widths}; the registered 'mlp' needs equal hidden widths")
        if not config.get("model::use_bias", True):
            raise ZooError(f"{where}: key 'model::use_bias' is false; the registered 'mlp' always has biases")
        return "mlp", {"width": widths[0], "depth": len(widths), "activation": act}, \
            (int(need("model::i_dim")),), int(need("model::o_dim"))
    raise ZooError(f"{where}: key 'model::type' is {mtype!r}, an architecture weightzoo does not support "
                   f"(supported: {sorted([*CNN_TYPES, 'MLP'])})")


def _map_state(state: Mapping[str, torch.Tensor], layout: ParamLayout, where: Path) -> dict[str, torch.Tensor]:
    """Source parameter names (``module_list.<i>.weight``...) to the architecture's, in registration order
    (the order ``torch.save`` keeps), checking every shape."""
    names = list(state)
    if len(names) != len(layout.entries):
        raise ZooError(f"{where}: state dict has {len(names)} tensors {names[:6]}, the architecture has "
                       f"{len(layout.entries)} parameters {layout.names}")
    mapped = {}
    for src, entry in zip(names, layout.entries):
        if tuple(state[src].shape) != entry.shape:
            raise ZooError(f"{where}: tensor {src!r} has shape {list(state[src].shape)} but architecture "
                           f"parameter {entry.name!r} expects {list(entry.shape)}")
        mapped[entry.name] = state[src]
    return mapped


class _Trial:
    def __init__(self, directory: Path, root: Path) -> None:
        self.dir = directory
        self.name = str(directory.relative_to(root))
        raw = _read_json(directory / "params.json")
        if not isinstance(raw, dict):
            raise ZooError(f"{directory / 'params.json'}: expected a JSON object of config keys")
        self.config = raw
        self.results = _read_results(directory / "result.json")
        self.checkpoints: dict[int, Path] = {}
        for sub in directory.iterdir():
            m = CHECKPOINT_DIR.match(sub.name)
            if m and sub.is_dir():
                self.checkpoints[int(m.group(1))] = sub / "checkpoints"
        error = directory / "error.txt"
        self.error = error.read_text(errors="replace").strip().splitlines()[-1][:500] if error.is_file() else None


def _plan(src: Path) -> tuple[ImportPlan, list[_Trial], dict[str, ParamLayout]]:
    trial_dirs = sorted({p.parent for p in src.rglob("params.json")})
    if not trial_dirs:
        raise ZooError(f"{src}: no trial directories (directories holding a params.json) found")
    trials = [_Trial(d, src) for d in trial_dirs]
    epochs = sorted({e for t in trials for e in t.checkpoints})
    rows, archs, layouts = [], {}, {}
    metric_names: set[str] = set()
    for i, t in enumerate(trials):
        name, config, input_shape, n_classes = _architecture(t.config, t.dir / "params.json")
        key, record = architecture_record(name, input_shape, n_classes, config)
        archs[key], layouts[key] = record, ParamLayout.from_record(record["layout"])
        row = {"model_id": i, "arch_key": key, "task": "t0", "architecture": name, "trial": t.name}
        for k, v in _flatten(t.config).items():
            row[_column(k)] = v
        for k, v in (t.results[-1].items() if t.results else ()):
            if not _is_number(v) and not isinstance(v, dict):
                row[f"result.{k}"] = v
        metric_names |= {_metric(k) for line in t.results for k, v in line.items() if _is_number(v)}
        rows.append(row)
    models = pd.DataFrame(rows)
    n_epochs = max([len(t.results) - 1 for t in trials] + [max(epochs, default=0)])
    dataset = str(trials[0].config.get("dataset::dump", trials[0].config.get("training::data_path", "unknown")))
    plan = ImportPlan(
        importer="modelzoos", source=str(src), models=models, architectures=archs,
        tasks={"t0": {"source": "imported", "importer": "modelzoos", "dataset": dataset,
                      "note": "task data is not shipped with the zoo; see the source release"}},
        checkpoint_epochs=epochs or [0], metric_names=sorted(metric_names), n_epochs=max(n_epochs, 1),
        curve_names=sorted(metric_names | {"train_loss"}),
        attrs={"column_map": COLUMN_MAP, "n_trials": len(trials)},
        fingerprint=fingerprint_files([p for t in trials for p in
                                       [t.dir / "params.json", *t.checkpoints.values()] if p.exists()]))
    return plan, trials, layouts


def _metric_value(v: Any) -> float:
    if not _is_number(v):
        return math.nan
    return math.nan if float(v) == NOT_COMPUTED else float(v)


def import_modelzoos(src: str | Path, out: str | Path, progress: bool = True) -> Zoo:
    """Import a directory tree of Model Zoos / PTMZ trial directories into a new store at ``out``."""
    src = Path(src)
    if not src.is_dir():
        raise ZooError(f"{src}: not a directory of trial directories")
    plan, trials, layouts = _plan(src)
    epochs = plan.checkpoint_epochs

    def load(i: int) -> ModelResult:
        t = trials[i]
        key = str(plan.models.loc[i, "arch_key"])
        layout = layouts[key]
        weights = np.full((len(epochs), layout.n_params), np.nan, dtype=np.float32)
        for c, e in enumerate(epochs):
            if e in t.checkpoints:
                state = load_state_dict(t.checkpoints[e])
                mapped = _map_state(state, layout, t.checkpoints[e])
                weights[c] = layout.flatten({k: v.float() for k, v in mapped.items()}).numpy()
        missing = [e for e in epochs if e not in t.checkpoints]
        status, record = classify(weights if t.checkpoints else None, missing, t.error, epochs)
        metrics, curves = {}, {}
        lines = [{_metric(k): v for k, v in line.items()} for line in t.results]
        for name in plan.metric_names:
            per_epoch = [_metric_value(line.get(name)) for line in lines]
            metrics[name] = np.array([per_epoch[e] if e < len(per_epoch) else math.nan for e in epochs])
            curve = np.full(plan.n_epochs, math.nan)
            curve[:max(len(per_epoch) - 1, 0)] = per_epoch[1:plan.n_epochs + 1]
            curves[name] = curve
        record["trial"] = t.name
        return ModelResult(weights=weights if t.checkpoints else None, status=status, record=record,
                           metrics=metrics, curves=curves)

    return build_store(plan, out, load, progress=progress)
