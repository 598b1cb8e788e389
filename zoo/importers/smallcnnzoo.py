"""Importer for the Small CNN Zoo of Unterthiner et al. 2020 ("Predicting Neural Network Accuracy from
Weights", google-research ``dnn_predict_accuracy``).

A release directory (one per dataset) holds:

* ``weights.npy`` — ``[n_rows, n_params]`` float32, one row per *checkpoint* (each network at epochs
  0, 1, 2, 3, 20, 40, 60, 80, 86; crashed runs have fewer rows). Read with ``allow_pickle=False``,
  memory-mapped;
* ``metrics.csv`` (or ``metrics.csv.gz``) — one row per weights row: ``config.*`` hyperparameters,
  ``modeldir``, ``step``, ``train_accuracy``, ``train_loss``, ``test_accuracy``, ``test_loss``; the
  first, unnamed column is the checkpoint path ``.../<run>/permanent_ckpt-<epoch>``;
* ``layout.csv`` — ``varname, start_idx, end_idx, shape``: where each TF variable
  (``sequential/conv2d/kernel:0``, ``.../bias:0``, ``sequential/dense/kernel:0``...) lives in a row.

Mapping: rows are grouped into models by ``modeldir`` (else the checkpoint path's directory) in order
of first appearance; the epoch comes from the checkpoint path (``permanent_ckpt-<epoch>``) or an
``epoch`` column, and indexes the rows (of several rows for one epoch of a model, the last is kept,
with a warning). Columns constant within a model go to the models table (``config.learning_rate``
→ ``lr``, see :data:`COLUMN_MAP`; other ``config.*`` columns keep their names); numeric columns that
vary go to metrics (``test_accuracy`` → ``test_acc``...); the checkpoint paths go to each model's
record. The network (3 Keras ``Conv2D`` of 16 channels, 3x3, stride 2, ``valid`` padding, global
average pooling, ``Dense``) is the registered ``smallcnn``; TF kernels are converted from HWIO to
PyTorch's OIHW and dense kernels from ``[in, out]`` to ``[out, in]``. Input: one grayscale channel,
28x28 (MNIST, Fashion-MNIST) or 32x32 (CIFAR-10, SVHN).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from kernels.layout import ParamLayout
from zoo.architectures import architecture_record
from zoo.errors import ZooError
from zoo.importers.build import (
    DuplicateRowsWarning,
    ImportPlan,
    ModelResult,
    build_store,
    classify,
    fingerprint_files,
)
from zoo.store import Zoo

WEIGHTS_FILES = ("weights.npy", "all_weights.npy")
METRICS_FILES = ("metrics.csv", "metrics.csv.gz", "all_metrics.csv", "all_metrics.csv.gz")
LAYOUT_FILE = "layout.csv"
CKPT_EPOCH = re.compile(r"-(\d+)$")
VARNAME = re.compile(r"^(?:.*/)?(conv2d|dense)(?:_(\d+))?/(kernel|bias)(?::\d+)?$")

COLUMN_MAP = {
    "config.learning_rate": "lr",
    "config.l2reg": "weight_decay",
    "config.optimizer": "optimizer",
    "config.activation": "activation",
    "config.dropout": "dropout",
    "config.epochs": "epochs",
    "config.train_fraction": "train_fraction",
    "config.random_seed": "seed",
    "config.batchsize": "batch_size",
    "config.dataset": "dataset",
    "config.w_init": "w_init",
    "config.b_init": "b_init",
    "config.init_std": "init_std",
}
METRIC_MAP = {"test_accuracy": "test_acc", "train_accuracy": "train_acc"}
INPUT_SIDE = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32, "svhn_cropped": 32}


def _find(src: Path, names: tuple[str, ...], what: str) -> Path:
    for n in names:
        if (src / n).is_file():
            return src / n
    raise ZooError(f"{src}: no {what} file (looked for {', '.join(names)})")


def read_layout(path: Path) -> list[dict]:
    """``layout.csv`` rows: ``{varname, start, end, shape}``; shapes are parsed as integers, never evaluated."""
    try:
        df = pd.read_csv(path)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ZooError(f"{path}: not a readable CSV ({exc})") from exc
    missing = [c for c in ("varname", "start_idx", "end_idx", "shape") if c not in df.columns]
    if missing:
        raise ZooError(f"{path}: columns {missing} are missing (has {list(df.columns)})")
    rows = []
    for n, r in enumerate(df.itertuples(index=False), start=2):
        shape = tuple(int(s) for s in re.findall(r"\d+", str(r.shape)))
        start, end = int(r.start_idx), int(r.end_idx)
        if end - start != math.prod(shape):
            raise ZooError(f"{path}: line {n} ({r.varname}): end_idx - start_idx = {end - start} but shape "
                           f"{list(shape)} has {math.prod(shape)} values")
        rows.append({"varname": str(r.varname), "start": start, "end": end, "shape": shape})
    return rows


def conversion_index(layout_rows: list[dict], layout: ParamLayout, where: Path) -> np.ndarray:
    """Gather index ``[n_params]``: ``row[index]`` is a source row in ``layout``'s (PyTorch) order, with conv
    kernels HWIO → OIHW and dense kernels ``[in, out]`` → ``[out, in]``."""
    convs, dense = {}, None
    for r in layout_rows:
        m = VARNAME.match(r["varname"])
        if m is None:
            raise ZooError(f"{where}: variable {r['varname']!r} is not a Conv2D or Dense kernel/bias of the "
                           "Small CNN Zoo's 'cnn' architecture")
        kind, idx, part = m.group(1), int(m.group(2) or 0), m.group(3)
        if kind == "conv2d":
            convs.setdefault(idx, {})[part] = r
        else:
            if idx != 0:
                raise ZooError(f"{where}: variable {r['varname']!r}: more than one Dense layer (an 'fcn' "
                               "network?); only the 'cnn' architecture is supported")
            dense = dense or {}
            dense[part] = r
    if dense is None or sorted(convs) != list(range(len(convs))):
        raise ZooError(f"{where}: expected conv2d, conv2d_1, ... and one dense layer; found conv layers "
                       f"{sorted(convs)} and {'a' if dense else 'no'} dense layer")
    sources = [(f"convs.{i}", convs[i]) for i in sorted(convs)] + [("head", dense)]
    pieces = {}
    for prefix, parts in sources:
        for part in ("kernel", "bias"):
            if part not in parts:
                raise ZooError(f"{where}: layer {prefix} has no {part} variable")
            r = parts[part]
            idx = np.arange(r["start"], r["end"]).reshape(r["shape"])
            if part == "kernel":
                idx = idx.transpose(3, 2, 0, 1) if idx.ndim == 4 else idx.T
            pieces[f"{prefix}.{'weight' if part == 'kernel' else 'bias'}"] = idx
    out = np.empty(layout.n_params, dtype=np.int64)
    for e in layout.entries:
        if e.name not in pieces or pieces[e.name].shape != e.shape:
            got = list(pieces[e.name].shape) if e.name in pieces else None
            raise ZooError(f"{where}: parameter {e.name!r} needs shape {list(e.shape)}, the layout gives {got}")
        out[e.offset:e.offset + e.numel] = pieces[e.name].reshape(-1)
    return out


def _epochs_of(metrics: pd.DataFrame, path: Path) -> np.ndarray:
    index = metrics.index.astype(str)
    parsed = [CKPT_EPOCH.search(s) for s in index]
    if all(parsed):
        return np.array([int(m.group(1)) for m in parsed], dtype=np.int64)
    if "epoch" in metrics.columns:
        return metrics["epoch"].to_numpy(dtype=np.int64)
    raise ZooError(f"{path}: cannot tell each row's epoch: the first column is not a checkpoint path ending in "
                   "'-<epoch>' and there is no 'epoch' column")


def _model_keys(metrics: pd.DataFrame) -> np.ndarray:
    if "modeldir" in metrics.columns:
        return metrics["modeldir"].astype(str).to_numpy()
    return np.array([s.rsplit("/", 1)[0] for s in metrics.index.astype(str)], dtype=object)


def _last_row_per_epoch(rows: np.ndarray, epochs: np.ndarray, where: str) -> np.ndarray:
    """``rows`` (positions in the CSV, in file order) with one row per epoch: of rows repeating an epoch
    the last is kept, with a :class:`~zoo.importers.build.DuplicateRowsWarning`."""
    last: dict[int, int] = {}
    for r in rows:
        last[int(epochs[r])] = int(r)
    if len(last) < len(rows):
        repeated = sorted({int(epochs[r]) for r in rows if last[int(epochs[r])] != r})
        warnings.warn(f"{where}: epochs {repeated} have several rows (a run restored from a checkpoint re-runs "
                      "them); the last row of each is kept", DuplicateRowsWarning, stacklevel=2)
    return np.asarray(sorted(last.values()), dtype=np.int64)


def import_smallcnnzoo(src: str | Path, out: str | Path, progress: bool = True) -> Zoo:
    """Import one Small CNN Zoo release directory (``weights.npy``, ``metrics.csv``, ``layout.csv``)."""
    src = Path(src)
    if not src.is_dir():
        raise ZooError(f"{src}: not a Small CNN Zoo directory")
    wpath, mpath, lpath = _find(src, WEIGHTS_FILES, "weights"), _find(src, METRICS_FILES, "metrics"), src / LAYOUT_FILE
    if not lpath.is_file():
        raise ZooError(f"{src}: no {LAYOUT_FILE}")
    try:
        weights = np.load(wpath, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise ZooError(f"{wpath}: not a plain .npy array (object arrays are refused: {exc})") from exc
    if weights.ndim != 2:
        raise ZooError(f"{wpath}: expected a [rows, params] matrix, got shape {list(weights.shape)}")
    try:
        metrics = pd.read_csv(mpath)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ZooError(f"{mpath}: not a readable CSV ({exc})") from exc
    first = str(metrics.columns[0]) if len(metrics.columns) else ""
    if first.startswith("Unnamed") or first in ("", "checkpoint", "ckpt"):  # the checkpoint-path column
        metrics = metrics.set_index(metrics.columns[0])
    if len(metrics) == 0 or weights.shape[0] == 0:
        raise ZooError(f"{src}: the release holds no models ({mpath.name} has {len(metrics)} rows, {wpath.name} "
                       f"{weights.shape[0]})")
    if len(metrics) != weights.shape[0]:
        raise ZooError(f"{mpath} has {len(metrics)} rows but {wpath} has {weights.shape[0]}; they must align")
    layout_rows = read_layout(lpath)
    if max(r["end"] for r in layout_rows) != weights.shape[1]:
        raise ZooError(f"{lpath}: variables end at {max(r['end'] for r in layout_rows)}, {wpath} rows have "
                       f"{weights.shape[1]} values")
    epochs_col = _epochs_of(metrics, mpath)
    keys = _model_keys(metrics)
    order = list(dict.fromkeys(keys))
    rows_of = {k: np.flatnonzero(keys == k) for k in order}
    ckpt_epochs = sorted(set(epochs_col.tolist()))
    meta_cols = [c for c in metrics.columns if c != "modeldir"]
    constant = [c for c in meta_cols if (metrics.groupby(keys, sort=False)[c].nunique(dropna=False) <= 1).all()]
    varying = [c for c in meta_cols if c not in constant]
    metric_cols = [c for c in varying if pd.api.types.is_numeric_dtype(metrics[c])]
    record_cols = [c for c in varying if c not in metric_cols]

    archs, conv_index, table = {}, {}, []
    for i, k in enumerate(order):
        first = metrics.iloc[rows_of[k][0]]
        cfg = {c: first[c] for c in constant}
        arch_name = str(cfg.get("config.dnn_architecture", "cnn"))
        if arch_name != "cnn":
            raise ZooError(f"{mpath}: model {k!r}: column 'config.dnn_architecture' is {arch_name!r}; only 'cnn' "
                           "(the Small CNN Zoo network) is supported")
        dataset = str(cfg.get("config.dataset", ""))
        if dataset not in INPUT_SIDE:
            raise ZooError(f"{mpath}: model {k!r}: column 'config.dataset' is {dataset!r}; known datasets "
                           f"{sorted(INPUT_SIDE)} (their input size fixes the model's input shape)")
        config = {"width": int(cfg.get("config.num_units", 16)), "depth": int(cfg.get("config.num_layers", 3)),
                  "kernel_size": 3, "stride": int(cfg.get("config.cnn_stride", 2)),
                  "activation": str(cfg.get("config.activation", "relu"))}
        side = INPUT_SIDE[dataset]
        try:
            key, record = architecture_record("smallcnn", (1, side, side), 10, config)
        except ZooError as exc:
            raise ZooError(f"{mpath}: model {k!r}: {exc}") from exc
        if key not in archs:
            archs[key] = record
            conv_index[key] = conversion_index(layout_rows, ParamLayout.from_record(record["layout"]), lpath)
        row = {"model_id": i, "arch_key": key, "task": dataset, "architecture": "smallcnn", "modeldir": k}
        row.update({COLUMN_MAP.get(c, c): (v.item() if isinstance(v, np.generic) else v) for c, v in cfg.items()})
        table.append(row)
    models = pd.DataFrame(table)
    metric_names = [METRIC_MAP.get(c, c) for c in metric_cols]
    epoch_index = {e: c for c, e in enumerate(ckpt_epochs)}
    plan = ImportPlan(
        importer="smallcnnzoo", source=str(src), models=models, architectures=archs,
        tasks={d: {"source": "imported", "importer": "smallcnnzoo", "dataset": d, "grayscale": True,
                   "note": "tensorflow_datasets split, grayscale, scaled to [-1, 1]; not shipped with the zoo"}
               for d in sorted(set(models["task"]))},
        checkpoint_epochs=ckpt_epochs, metric_names=metric_names,
        n_epochs=int(max(ckpt_epochs)) if ckpt_epochs else 1,
        attrs={"column_map": COLUMN_MAP, "metric_map": METRIC_MAP, "files": [wpath.name, mpath.name, LAYOUT_FILE]},
        fingerprint=fingerprint_files([wpath, mpath, lpath]))

    def load(i: int) -> ModelResult:
        k = order[i]
        rows = _last_row_per_epoch(rows_of[k], epochs_col, f"{mpath}: model {k!r}")
        key = str(models.loc[i, "arch_key"])
        flat = np.full((len(ckpt_epochs), archs[key]["layout"]["n_params"]), np.nan, dtype=np.float32)
        got = [epoch_index[int(e)] for e in epochs_col[rows]]
        flat[got] = np.asarray(weights[rows], dtype=np.float32)[:, conv_index[key]]
        missing = [e for e in ckpt_epochs if e not in set(epochs_col[rows].tolist())]
        status, record = classify(flat, missing, None, ckpt_epochs)
        record["checkpoint_paths"] = {str(int(e)): str(p) for e, p in zip(epochs_col[rows], metrics.index[rows])}
        for c in record_cols:
            record[c] = {str(int(e)): str(v) for e, v in zip(epochs_col[rows], metrics[c].iloc[rows])}
        values = {}
        for c, name in zip(metric_cols, metric_names):
            v = np.full(len(ckpt_epochs), np.nan)
            v[got] = metrics[c].to_numpy(dtype=np.float64)[rows]
            values[name] = v
        return ModelResult(weights=flat, status=status, record=record, metrics=values)

    return build_store(plan, out, load, progress=progress)
