"""Hugging Face ``datasets``: one row per model and checkpoint, saved with ``save_to_disk``.

Columns of each row (model ``m``, checkpoint index ``c``):

* ``model_id``, ``checkpoint`` (index ``c``), ``epoch`` (the epoch of that checkpoint) and ``weights``
  (``List(float32)``: the flat weight vector of ``m`` at ``c``, layout in the architecture's record);
* every column of the models table ``Zoo.models`` (hyperparameters, seeds, grid coordinates, status,
  wall time, library versions, final metrics, scalar landscape metrics, phase) — category columns as
  their labels;
* the store's per-model arrays, named by their store path: ``metrics/<name>`` (the value at checkpoint
  ``c``), ``results/status`` and ``results/record`` (the JSON record), ``curves/train_loss``,
  ``landscape/<name>``, ``splits/<name>`` (0 train, 1 val, 2 test), ``phases/label`` — arrays wider than
  a scalar are flattened (their shape is in the skeleton).

The dataset is self-describing: ``dataset.info.description`` is a JSON document
``{"format": "weightzoo-hf", "version": 1, "skeleton": {...}, "zoo_arrays": {...}}`` holding the
store's root attributes and every node's Zarr metadata (``skeleton``) and the zoo-level arrays (pair
metrics) — enough for :func:`import_hf` to rebuild the store exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from zoo.atomic import atomic_output
from zoo.errors import ZooError, user_error
from zoo.interchange.columns import planned_array, planned_columns
from zoo.interchange.skeleton import (
    RowReader,
    RowWriter,
    StoreSkeleton,
    parse_format_document,
    read_model_arrays,
    read_zoo_arrays,
    write_model_arrays,
    write_zoo_arrays,
)
from zoo.store import Zoo, open_zoo

FORMAT = "weightzoo-hf"
VERSION = 1
ROW_KEYS = ("model_id", "checkpoint", "epoch", "weights")


def _value_feature(dtype: np.dtype):
    import datasets

    if dtype == object:
        return datasets.Value("string")
    return datasets.Value("bool" if dtype.kind == "b" else str(dtype))


def _table_feature(series: pd.Series):
    """Feature of a models-table column; object columns get the narrowest type that holds every value."""
    import datasets

    if series.dtype.kind in "biuf":
        return _value_feature(series.dtype)
    values = [v for v in series if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if values and all(isinstance(v, (bool, np.bool_)) for v in values):
        return datasets.Value("bool")
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        return datasets.Value("int64")
    if values and all(isinstance(v, (int, float, np.integer, np.floating)) for v in values):
        return datasets.Value("float64")
    return datasets.Value("string")


def _per_checkpoint(skel: StoreSkeleton, path: str) -> bool:
    return path.startswith("metrics/") and skel.shape(path)[1:] == (len(skel.checkpoint_epochs),)


def _array_feature(skel: StoreSkeleton, path: str):
    import datasets

    inner = _value_feature(skel.dtype(path))
    rest = skel.shape(path)[2:] if _per_checkpoint(skel, path) else skel.shape(path)[1:]
    return datasets.List(inner) if rest else inner


def _hidden_planned(z: Zoo) -> list[str]:
    """Planned columns that ``Zoo.models`` overwrites with a result of the same name (exported again
    under ``models/<column>`` so the import can restore them)."""
    derived = {"status", "wall_time_s", "diverged_epoch", "error", "phase", *z.metric_names,
               *z.meta.get("landscape", {})}
    return sorted(c for c in z.meta["columns"] if c in derived or c.startswith("version_"))


def _schema(z: Zoo, skel: StoreSkeleton) -> tuple[Any, list[str], list[str]]:
    """Features, the models-table columns exported, and the per-model store arrays exported."""
    import datasets

    table = z.models
    hidden = _hidden_planned(z)
    clash = [c for c in table.columns if c in ROW_KEYS[1:]]
    if clash:
        raise ZooError(f"{z.path}: models-table columns {clash} clash with the HF row keys {list(ROW_KEYS)}")
    features: dict[str, Any] = {"model_id": datasets.Value("int64"), "checkpoint": datasets.Value("int64"),
                                "epoch": datasets.Value("int64"), "weights": datasets.List(datasets.Value("float32"))}
    columns = [c for c in table.columns if c != "model_id"]
    for c in columns:
        features[c] = _table_feature(table[c])
    arrays = [p for p in skel.paths("model") if not p.startswith("models/") or p[len("models/"):] in hidden]
    for p in arrays:
        features[p] = _array_feature(skel, p)
    return datasets.Features(features), columns, arrays


def _python(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _rows(z: Zoo, epochs: tuple[int, ...], weight_rows: tuple[tuple[str, int], ...],
          columns: tuple[tuple[str, tuple], ...], model_arrays: tuple[tuple[str, np.ndarray], ...],
          checkpoint_arrays: tuple[tuple[str, np.ndarray], ...]) -> Iterator[dict]:
    """The rows of store ``z``, model by model and checkpoint by checkpoint (generator for HF).

    ``weight_rows[i]``: ``(arch_key, arch_row)`` of model ``i``; ``columns``: ``(name, value of every
    model)`` of the models-table columns; ``model_arrays`` and ``checkpoint_arrays``: ``(store path,
    [n_models, ...] values)`` of the per-model arrays exported once per model, resp. sliced by
    checkpoint (``[n_models, n_checkpoints, ...]``)."""
    readers = {k: RowReader(z, k) for k in z.architectures}
    for i, (key, arch_row) in enumerate(weight_rows):
        base = {c: values[i] for c, values in columns}
        for p, values in model_arrays:
            base[p] = _cell(values[i])
        weights = readers[key].get(arch_row)
        for c, epoch in enumerate(epochs):
            row = {"model_id": i, "checkpoint": c, "epoch": epoch, "weights": weights[c], **base}
            for p, values in checkpoint_arrays:
                row[p] = _cell(values[i, c])
            yield row


def _cell(value: Any) -> Any:
    """A per-model array's value in a row: a Python scalar, or the values of a wider array flattened."""
    return _python(value) if np.ndim(value) == 0 else np.ravel(value)


def export_hf(z: Zoo, out: str | os.PathLike, progress: bool = True) -> Path:
    """Write store ``z`` as a Hugging Face dataset directory at ``out`` (``datasets.load_from_disk(out)``)."""
    import datasets

    skel = StoreSkeleton.of(z)
    features, columns, arrays = _schema(z, skel)
    doc = {"format": FORMAT, "version": VERSION, "skeleton": skel.to_record(),
           "zoo_arrays": read_zoo_arrays(z, skel)}
    table = z.models
    per_model = read_model_arrays(z, skel)
    gen_kwargs = {
        "z": z,
        "epochs": tuple(int(e) for e in skel.checkpoint_epochs),
        "weight_rows": tuple(zip(table["arch_key"].astype(str), table["arch_row"].astype(int).tolist())),
        "columns": tuple((c, tuple(_python(v) for v in table[c])) for c in columns),
        "model_arrays": tuple((p, per_model[p]) for p in arrays if not _per_checkpoint(skel, p)),
        "checkpoint_arrays": tuple((p, per_model[p]) for p in arrays if _per_checkpoint(skel, p)),
    }
    out = Path(out)
    cache = out.parent / f".{out.name}.cache-{uuid.uuid4().hex[:8]}"
    if not progress:
        datasets.disable_progress_bars()
    try:
        with atomic_output(out) as tmp:
            try:
                if z.n_models == 0:  # from_generator refuses to build a dataset without rows
                    ds = datasets.Dataset.from_dict({name: [] for name in features}, features=features)
                else:
                    ds = datasets.Dataset.from_generator(_rows, features=features, gen_kwargs=gen_kwargs,
                                                         cache_dir=str(cache))
            except Exception as exc:  # datasets wraps what the row generator raised: raise ours as itself
                cause = user_error(exc)
                if cause is None:
                    raise
                raise cause from exc
            ds.info.description = json.dumps(doc)
            ds.info.dataset_name = str(z.meta.get("name", "weightzoo"))
            ds.save_to_disk(str(tmp), **({"num_shards": 1} if len(ds) == 0 else {}))  # 0 shards would not load
            del ds
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if not progress:
            datasets.enable_progress_bars()
    return out


def import_hf(src: str | os.PathLike, out: str | os.PathLike, progress: bool = True,
              batch_rows: int = 512) -> Zoo:
    """Rebuild a store at ``out`` from a dataset written by :func:`export_hf` (rows in any order)."""
    import datasets

    src = Path(src)
    try:
        ds = datasets.load_from_disk(str(src))
    except (FileNotFoundError, ValueError) as exc:
        raise ZooError(f"{src}: not a dataset saved with save_to_disk ({exc})") from exc
    if not isinstance(ds, datasets.Dataset):
        raise ZooError(f"{src}: holds a DatasetDict {list(ds)}; a weightzoo export is a single Dataset")
    doc = parse_format_document(ds.info.description, FORMAT, VERSION, f"{src}: dataset_info.json 'description'")
    skel = StoreSkeleton.from_record(doc.get("skeleton"), str(src))
    n, epochs = skel.n_models, skel.checkpoint_epochs
    arrays = [p for p in skel.paths("model") if not p.startswith("models/") or p in ds.column_names]
    planned = [c for c in planned_columns(skel) if f"models/{c}" not in arrays]
    if "arch_key" not in planned or "arch_row" not in planned:
        raise ZooError(f"{src}: the skeleton's models table lacks the planned columns 'arch_key' and 'arch_row'")
    missing = [c for c in [*ROW_KEYS, *arrays, *planned] if c not in ds.column_names]
    if missing:
        raise ZooError(f"{src}: columns {missing} are missing (the dataset has {ds.column_names})")
    if len(ds) != n * len(epochs):
        raise ZooError(f"{src}: {len(ds)} rows, expected {n} models x {len(epochs)} checkpoints = {n * len(epochs)}")
    keys = ds.select_columns(["model_id", "checkpoint"]).to_pandas()
    order = np.lexsort((keys["checkpoint"].to_numpy(), keys["model_id"].to_numpy()))
    expected = np.stack([np.repeat(np.arange(n), len(epochs)), np.tile(np.arange(len(epochs)), n)], axis=1)
    got = keys.to_numpy()[order]
    if not np.array_equal(got, expected):
        bad = got[(got != expected).any(axis=1)][:3].tolist()
        raise ZooError(f"{src}: (model_id, checkpoint) pairs must cover models 0..{n - 1} x checkpoints "
                       f"0..{len(epochs) - 1} once each; first unexpected pairs {bad}")
    if not np.array_equal(order, np.arange(len(order))):
        ds = ds.select(order)

    values = {p: np.full(skel.shape(p), np.nan if skel.dtype(p).kind == "f" else 0, dtype=skel.dtype(p))
              if skel.dtype(p) != object else np.full(skel.shape(p), "", dtype=object) for p in arrays}
    planned_values: dict[str, list] = {c: [None] * n for c in planned}
    with atomic_output(out) as tmp:
        root = skel.create(tmp)
        writers = {k: RowWriter(root[f"weights/{k}"]) for k in skel.meta["architectures"]}
        n_ckpt = len(epochs)
        bar = tqdm(total=n, desc=f"import {src.name}", unit="model", disable=not progress)
        current: list[np.ndarray] = []
        for table in ds.with_format("arrow").iter(batch_size=batch_rows * n_ckpt):
            # arrow, not numpy: the numpy formatter would round float64 columns to float32
            batch = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
            for j in range(len(batch["model_id"])):
                mid, c = int(batch["model_id"][j]), int(batch["checkpoint"][j])
                if c == 0:
                    for col in planned:
                        planned_values[col][mid] = batch[col][j]
                    for p in arrays:
                        if not _per_checkpoint(skel, p):
                            values[p][mid] = np.reshape(batch[p][j], skel.shape(p)[1:])
                for p in arrays:
                    if _per_checkpoint(skel, p):
                        values[p][mid, c] = np.reshape(batch[p][j], skel.shape(p)[2:])
                current.append(np.asarray(batch["weights"][j], dtype=np.float32))
                if c == n_ckpt - 1:
                    _put_weights(skel, writers, planned_values, mid, current, src)
                    current = []
                    bar.update(1)
        bar.close()
        for w in writers.values():
            w.flush()
        for col in planned:
            values[f"models/{col}"] = planned_array(planned_values[col], skel, col, f"{src}")
        write_zoo_arrays(root, skel, doc.get("zoo_arrays", {}), str(src))
        write_model_arrays(root, values)
    return open_zoo(out)


def _put_weights(skel: StoreSkeleton, writers: dict, planned_values: dict, mid: int, rows: list[np.ndarray],
                 src: Path) -> None:
    key, row = str(planned_values["arch_key"][mid]), int(planned_values["arch_row"][mid])
    if key not in writers:
        raise ZooError(f"{src}: model {mid} has arch_key {key!r}, not among {sorted(writers)}")
    n_params = skel.shape(f"weights/{key}")[2]
    bad = [r.shape for r in rows if r.shape != (n_params,)]
    if bad:
        raise ZooError(f"{src}: model {mid}: a weight vector of shape {list(bad[0])}, architecture {key!r} "
                       f"has {n_params} parameters")
    writers[key].put(row, np.stack(rows))
