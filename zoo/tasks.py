"""Task data sources: rebuild, from a JSON task spec, exactly the data a model saw.

Sources: ``mnist1d`` (generated procedurally by the ``mnist1d`` package, no download), ``digits``
(scikit-learn's 8x8 digits, shipped with scikit-learn) and ``hf`` (any Hugging Face ``datasets``
dataset by hub name or local path). Generic transforms, applied in this order: class subset
(``classes``), training-data fraction (``train_fraction``, nested subsets), standardisation with
train statistics (``standardize``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from zoo.errors import SpecError, UnknownNameError

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_SOURCES: dict[str, Callable[[dict], Arrays]] = {}
_SOURCE_OPTIONS: dict[str, dict[str, Any]] = {}
GENERIC_OPTIONS = {"classes": None, "train_fraction": 1.0, "subset_seed": 0, "standardize": True}


@dataclass
class TaskData:
    """A classification task: ``x_train [n_train, *input_shape]`` float32, ``y_train [n_train]`` int64
    (labels ``0..n_classes-1``), the same for test; ``classes[k]`` is the original id of label ``k``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    input_shape: tuple[int, ...]
    classes: tuple[int, ...]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of ``"train"`` or ``"test"``."""
        if name == "train":
            return self.x_train, self.y_train
        if name == "test":
            return self.x_test, self.y_test
        raise ValueError(f"task split must be 'train' or 'test', got {name!r}")


def register_task_source(name: str, defaults: Mapping[str, Any] | None = None):
    """Decorator: register ``fn(options) -> (x_train, y_train, x_test, y_test)`` numpy arrays as a source.

    ``defaults`` lists the source's options and their default values (unknown options are rejected).
    """

    def deco(fn: Callable[[dict], Arrays]) -> Callable[[dict], Arrays]:
        _SOURCES[name] = fn
        _SOURCE_OPTIONS[name] = dict(defaults or {})
        return fn

    return deco


def task_sources() -> list[str]:
    return sorted(_SOURCES)


def normalize_task_spec(spec: Mapping | str) -> dict:
    """Validated task spec with every default filled in (JSON-able, canonical)."""
    if isinstance(spec, str):
        spec = {"source": spec}
    if not isinstance(spec, Mapping):
        raise SpecError(f"task: expected a mapping or a source name, got {spec!r}")
    spec = dict(spec)
    source = spec.pop("source", "mnist1d")
    if source not in _SOURCES:
        raise UnknownNameError(f"task.source: unknown data source {source!r}; choose from {task_sources()}")
    allowed = {**GENERIC_OPTIONS, **_SOURCE_OPTIONS[source]}
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise SpecError(f"task.{unknown[0]}: unknown option for source {source!r}; allowed: {sorted(allowed)}")
    out = {"source": source, **allowed, **spec}
    frac = out["train_fraction"]
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        raise SpecError(f"task.train_fraction: must be a number in (0, 1], got {frac!r}")
    out["train_fraction"] = float(frac)
    if out["classes"] is not None:
        cls = out["classes"]
        if not isinstance(cls, (list, tuple)) or len(cls) < 2 or len(set(cls)) != len(cls):
            raise SpecError(f"task.classes: expected a list of at least two distinct class ids, got {cls!r}")
        out["classes"] = [int(c) for c in cls]
    return out


def task_hash(spec: Mapping | str) -> str:
    canon = json.dumps(normalize_task_spec(spec), sort_keys=True)
    return hashlib.blake2b(canon.encode(), digest_size=8).hexdigest()


def build_task(spec: Mapping | str) -> TaskData:
    """The task's tensors; deterministic, so every process rebuilds identical data."""
    spec = normalize_task_spec(spec)
    return _build_cached(json.dumps(spec, sort_keys=True))


@functools.lru_cache(maxsize=16)
def _build_cached(canon: str) -> TaskData:
    spec = json.loads(canon)
    source = spec["source"]
    options = {k: spec[k] for k in _SOURCE_OPTIONS[source]}
    x_tr, y_tr, x_te, y_te = (np.asarray(a) for a in _SOURCES[source](options))
    y_tr, y_te = y_tr.astype(np.int64), y_te.astype(np.int64)
    present = sorted(set(np.unique(y_tr).tolist()) | set(np.unique(y_te).tolist()))
    if spec["classes"] is not None:
        missing = [c for c in spec["classes"] if c not in present]
        if missing:
            raise SpecError(f"task.classes: classes {missing} do not occur in {source!r} (classes: {present})")
        classes = list(spec["classes"])
        remap = {c: k for k, c in enumerate(classes)}
        keep_tr, keep_te = np.isin(y_tr, classes), np.isin(y_te, classes)
        x_tr, x_te = x_tr[keep_tr], x_te[keep_te]
        y_tr = np.array([remap[c] for c in y_tr[keep_tr]], dtype=np.int64)
        y_te = np.array([remap[c] for c in y_te[keep_te]], dtype=np.int64)
    else:
        classes = present
        if present != list(range(len(present))):
            remap = {c: k for k, c in enumerate(present)}
            y_tr = np.array([remap[c] for c in y_tr], dtype=np.int64)
            y_te = np.array([remap[c] for c in y_te], dtype=np.int64)
    if spec["train_fraction"] < 1.0:
        # a fixed seeded permutation; fractions take prefixes, so smaller subsets nest in larger ones
        order = np.random.default_rng(int(spec["subset_seed"])).permutation(len(y_tr))
        keep = np.sort(order[: max(1, int(round(spec["train_fraction"] * len(y_tr))))])
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    x_tr, x_te = x_tr.astype(np.float32), x_te.astype(np.float32)
    if spec["standardize"]:
        mean, std = float(x_tr.mean()), float(x_tr.std()) or 1.0
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    return TaskData(torch.from_numpy(np.ascontiguousarray(x_tr)), torch.from_numpy(y_tr),
                    torch.from_numpy(np.ascontiguousarray(x_te)), torch.from_numpy(y_te),
                    n_classes=len(classes), input_shape=tuple(x_tr.shape[1:]), classes=tuple(int(c) for c in classes))


def _cache_dir() -> Path:
    return Path(os.environ.get("WEIGHTZOO_CACHE", Path.home() / ".cache" / "weightzoo")) / "tasks"


# ---------------------------------------------------------------------------- sources
@register_task_source("mnist1d", {"n_samples": 5000, "seed": 42})
def _mnist1d(options: dict) -> Arrays:
    """MNIST-1D made by the ``mnist1d`` package (4000 train / 1000 test sequences of length 40 by
    default), cached on disk under ``$WEIGHTZOO_CACHE/tasks`` since generating takes a few seconds."""
    n, seed = int(options["n_samples"]), int(options["seed"])
    path = _cache_dir() / f"mnist1d-n{n}-s{seed}.npz"
    if path.exists():
        try:
            with np.load(path) as d:
                return d["x"], d["y"], d["x_test"], d["y_test"]
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache file is rebuilt
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = n, seed
    data = make_dataset(args)
    arrays = (data["x"], data["y"], data["x_test"], data["y_test"])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(tmp, x=arrays[0], y=arrays[1], x_test=arrays[2], y_test=arrays[3])
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache is not an error: the data is rebuilt next time
    return arrays


@register_task_source("digits", {"test_fraction": 0.2, "split_seed": 0})
def _digits(options: dict) -> Arrays:
    """scikit-learn's 8x8 digits (1,797 images) as ``[n, 1, 8, 8]`` in [0, 1], stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=float(options["test_fraction"]),
                                              stratify=d.target, random_state=int(options["split_seed"]))
    return x_tr, y_tr, x_te, y_te


_INPUT_COLUMNS = ("image", "img", "pixel_values", "x", "features", "input")


@register_task_source("hf", {"name": None, "config": None, "train_split": "train", "test_split": "test",
                             "input_column": None, "label_column": "label", "test_fraction": 0.2, "split_seed": 0})
def _hf(options: dict) -> Arrays:
    """A Hugging Face ``datasets`` dataset: a directory saved with ``save_to_disk`` (``load_from_disk``)
    or anything ``datasets.load_dataset`` takes (hub name, local data files, loading script)."""
    import datasets

    name = options["name"]
    if not name:
        raise SpecError("task.name: the 'hf' source needs a dataset name or local path")
    path = Path(str(name))
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()
                          or (path / "state.json").exists()):
        ds = datasets.load_from_disk(str(path))
    else:
        try:
            ds = datasets.load_dataset(str(name), options["config"])
        except Exception as exc:
            raise SpecError(f"task.name: could not load Hugging Face dataset {name!r}: {exc}") from exc
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    splits = list(ds.keys())
    if options["train_split"] not in ds:
        raise SpecError(f"task.train_split: dataset {name!r} has no split {options['train_split']!r} (splits: {splits})")
    train = ds[options["train_split"]]
    columns = train.column_names
    label = options["label_column"]
    if label not in columns:
        raise SpecError(f"task.label_column: dataset {name!r} has no column {label!r} (columns: {columns})")
    inp = options["input_column"] or next((c for c in _INPUT_COLUMNS if c in columns), None)
    if inp is None or inp not in columns:
        raise SpecError(f"task.input_column: no input column {inp!r} in dataset {name!r} (columns: {columns})")
    x_tr, y_tr = _hf_arrays(train, inp, label)
    if options["test_split"] in ds:
        x_te, y_te = _hf_arrays(ds[options["test_split"]], inp, label)
    else:
        from sklearn.model_selection import train_test_split

        x_tr, x_te, y_tr, y_te = train_test_split(x_tr, y_tr, test_size=float(options["test_fraction"]),
                                                  random_state=int(options["split_seed"]))
    return x_tr, y_tr, x_te, y_te


def _hf_arrays(split, input_column: str, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    """Inputs as float32 ``[n, C, H, W]`` (images, scaled to [0, 1]) or ``[n, ...]``; labels int64."""
    labels = np.asarray(split[label_column], dtype=np.int64)
    first = split[0][input_column]
    if hasattr(first, "convert"):  # PIL images
        xs = np.stack([np.asarray(img, dtype=np.float32) / 255.0 for img in split[input_column]])
        if xs.ndim == 3:
            xs = xs[:, None]
        else:
            xs = xs.transpose(0, 3, 1, 2)
        return xs, labels
    xs = np.asarray(split.with_format("numpy")[input_column], dtype=np.float32)
    if np.issubdtype(np.asarray(first).dtype, np.integer) and xs.max() > 1.0:
        xs = xs / 255.0
    return xs, labels
