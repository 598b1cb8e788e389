"""Task data: rebuild, from a JSON-able task spec, exactly the data a model was trained and evaluated on.

A zoo records the canonical task spec of every model (:func:`normalize_task_spec`); :func:`build_task`
turns it back into tensors, identically in every process. A spec is a flat mapping::

    {"source": "mnist1d", "n_samples": 5000, "seed": 42,          # the source and its options
     "classes": None, "train_fraction": 1.0, "subset_seed": 0,    # generic transforms
     "standardize": True}

Sources (:func:`task_source_names`; add more with :func:`register_task_source`):

``mnist1d``
    MNIST-1D generated procedurally by the ``mnist1d`` package (never downloaded). Options
    ``n_samples`` (default 5000, split 80/20 into train/test) and ``seed`` (default 42). Inputs
    ``[n, 40]``, 10 classes. Generating takes seconds, so the arrays are cached in-process and on disk.
``digits``
    scikit-learn's 8x8 digits (1,797 images, shipped with scikit-learn). Options ``test_fraction``
    (default 0.2) and ``split_seed`` (default 0) for a stratified train/test split. Inputs
    ``[n, 1, 8, 8]``, pixel intensities scaled from 0..16 to [0, 1]. 10 classes.
``hf``
    A Hugging Face ``datasets`` dataset: a directory written by ``save_to_disk`` or anything that
    ``datasets.load_dataset`` takes (hub name, local data-files directory). Options ``name``,
    ``config``, ``revision``, ``train_split``, ``test_split``, ``input_column``, ``label_column``,
    ``test_fraction``, ``split_seed`` (see :func:`_hf_source`).

Generic transforms, applied in this order after loading:

1. ``classes``: keep only these original class ids; label ``k`` becomes original class ``classes[k]``.
2. ``train_fraction`` in (0, 1] with ``subset_seed``: keep ``round(train_fraction * n_train)``
   training examples, a stratified, nested subset (the subset for 0.25 lies inside the subset for
   0.5 with the same seed; see :func:`nested_subset`), in their original order.
3. ``standardize``: subtract the scalar mean and divide by the scalar standard deviation of all
   training inputs (after the subset), for train and test alike.

Derived-task options (the tasks a model-tree child is fine-tuned on; :data:`DERIVED_OPTIONS`). They
come after standardisation, so a child sees its inputs normalised exactly like its parent, and none of
them changes the label space, so a child keeps its parent's architecture and output size. They appear
in a canonical spec only when set (specs without them keep their canonical form and hash):

4. ``class_subset``: keep only train and test examples of these original class ids; labels stay in
   the full label space (``n_classes`` unchanged).
5. ``label_permutation``: a permutation ``perm`` of ``0..n_classes-1``; label ``k`` becomes ``perm[k]``.
6. ``corruption``: ``{"kind": "noise", "level": s, "seed": r}`` adds Gaussian noise of standard
   deviation ``s`` (drawn from ``numpy.random.default_rng(r)``, train inputs first, then test);
   ``{"kind": "shift", "level": k}`` translates inputs by ``k`` positions along their last axis
   (zeros shifted in; ``k < 0`` shifts left); ``{"kind": "scale", "level": a}`` multiplies inputs by
   ``a``. Train and test inputs are corrupted alike.

Cache: the loaded source arrays are kept in-process (:func:`clear_task_cache` empties it); MNIST-1D
arrays are also stored under ``$WEIGHTZOO_CACHE/tasks`` (default ``~/.cache/weightzoo/tasks``).
"""

from __future__ import annotations

import functools
import json
import math
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Union

import numpy as np
import torch
from pydantic import BeforeValidator, ConfigDict, Field, create_model, model_validator

from kernels.registry import Registry
from zoo.errors import UnknownNameError
from zoo.format import canonical_json, short_hash, to_jsonable
from zoo.validation import (
    Bool,
    FieldError,
    Int,
    Number,
    SpecModel,
    Str,
    as_int,
    register_schema,
    spec_error,
    validate,
)

__all__ = [
    "CORRUPTION_KINDS",
    "DERIVED_OPTIONS",
    "GENERIC_DEFAULTS",
    "Corruption",
    "TaskData",
    "TaskSource",
    "TaskSpec",
    "build_task",
    "clear_task_cache",
    "get_task_source",
    "nested_subset",
    "normalize_task_spec",
    "register_task_source",
    "task_cache_dir",
    "task_hash",
    "task_source_names",
    "unregister_task_source",
]

#: Options every task spec has, whatever its source, with their defaults.
GENERIC_DEFAULTS: dict[str, Any] = {"classes": None, "train_fraction": 1.0, "subset_seed": 0, "standardize": True}

#: Options of derived tasks (model-tree children); absent from a canonical spec unless set.
DERIVED_OPTIONS = ("class_subset", "label_permutation", "corruption")

#: Input corruptions of a derived task: kind -> whether its level must be an integer.
CORRUPTION_KINDS = {"noise": False, "shift": True, "scale": False}

SourceArrays = tuple[Any, Any, Any, Any]
SourceFn = Callable[[dict], SourceArrays]


@dataclass
class TaskData:
    """A classification task's tensors.

    ``x_train [n_train, *input_shape]`` and ``x_test [n_test, *input_shape]`` are float32;
    ``y_train [n_train]`` and ``y_test [n_test]`` are int64 labels in ``0..n_classes-1``.
    ``classes[k]`` is the source's original class id of label ``k``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    input_shape: tuple[int, ...]
    classes: tuple[int, ...]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x [n, *input_shape] float32, y [n] int64)`` of split ``"train"`` or ``"test"``."""
        if name == "train":
            return self.x_train, self.y_train
        if name == "test":
            return self.x_test, self.y_test
        raise UnknownNameError(f"split: unknown task split {name!r}; choose from ['train', 'test']")


@dataclass(frozen=True)
class TaskSource:
    """A registered task source: ``fn(options) -> (x_train, y_train, x_test, y_test)`` and ``options``, the
    :class:`~zoo.validation.SpecModel` of its options (``None``: any JSON-able options)."""

    fn: SourceFn
    options: type[SpecModel] | None


_SOURCES: Registry[TaskSource] = Registry("data source", error=UnknownNameError)
get_task_source = _SOURCES.get
task_source_names = _SOURCES.names
_RESERVED = ("source", "classes", "train_fraction", "subset_seed", "standardize", *DERIVED_OPTIONS)


def register_task_source(name: str, options: Mapping[str, Any] | type[SpecModel] | None = None
                         ) -> Callable[[SourceFn], SourceFn]:
    """Decorator registering ``fn(options) -> (x_train, y_train, x_test, y_test)`` as task source ``name``.

    ``fn`` gets the canonical spec without the generic fields (``{"source": name, **options}``) and
    returns numpy arrays or torch tensors: ``x_* [n, *input_shape]`` numeric, ``y_* [n]`` integer
    class ids. It must be deterministic: the same options must give the same arrays in any process.
    ``options`` is either a mapping of each option the source takes to its default (other options are
    then refused), a :class:`~zoo.validation.SpecModel` of the options (typed and checked), or ``None``
    (any JSON-able option is accepted). Registering a name again replaces the source.

    Raises:
        SpecError: ``name`` is not a non-empty string, or an option is named like a generic field.
    """
    if not isinstance(name, str) or not name:
        raise spec_error("task.source", f"a source name must be a non-empty string, got {name!r}")
    if isinstance(options, Mapping):
        defaults = {k: _jsonable(f"task.{k}", v) for k, v in options.items()}
        model: type[SpecModel] | None = create_model(
            f"{name}_options", __base__=SpecModel, **{k: (Any, Field(default=v)) for k, v in defaults.items()})
    else:
        model = options
    clash = sorted(set(model.model_fields if model is not None else ()) & set(_RESERVED))
    if clash:
        raise spec_error(f"task.{clash[0]}", f"source {name!r} may not define an option named like a generic field "
                         f"{sorted(_RESERVED)}")

    def deco(fn: SourceFn) -> SourceFn:
        _SOURCES.register(name)(TaskSource(fn, model))
        _source_arrays.cache_clear()  # arrays cached for an earlier source of this name are stale
        return fn

    return deco


def unregister_task_source(name: str) -> None:
    """Forget the task source ``name`` (e.g. one a test registered); unknown names are ignored."""
    _SOURCES.unregister(name)
    _source_arrays.cache_clear()


def clear_task_cache() -> None:
    """Forget the source arrays cached in this process (the on-disk MNIST-1D cache stays)."""
    _source_arrays.cache_clear()
    _mnist1d_arrays.cache_clear()


def task_cache_dir() -> Path:
    """Directory of the on-disk task cache: ``$WEIGHTZOO_CACHE/tasks``, default ``~/.cache/weightzoo/tasks``."""
    root = os.environ.get("WEIGHTZOO_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "weightzoo") / "tasks"


# ---------------------------------------------------------------------------------- spec validation
def _jsonable(field: str, value: Any) -> Any:
    """``value`` as plain JSON types (tuples become lists, numpy scalars Python numbers)."""
    value = to_jsonable(value)
    try:
        round_trip = json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise spec_error(field, f"value {value!r} is not JSON-serialisable ({exc})") from None
    if round_trip != value:
        raise spec_error(field, f"value {value!r} does not survive a JSON round trip")
    return round_trip


def _class_ids(value: Any) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise FieldError(f"expected a list of class ids, got {value!r}")
    out = []
    for i, c in enumerate(value):
        try:
            out.append(as_int(c))
        except FieldError as exc:
            raise FieldError(exc.message, (i,)) from None
    if len(out) < 2:
        raise FieldError(f"a task needs at least two classes, got {out}")
    repeated = sorted({c for c in out if out.count(c) > 1})
    if repeated:
        raise FieldError(f"class ids {repeated} are listed more than once in {out}")
    return out


def _permutation(value: Any) -> list[int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise FieldError(f"expected a list (a permutation of 0..n_classes-1), got {value!r}")
    out = [as_int(v) for v in value]
    if len(out) < 2 or sorted(out) != list(range(len(out))):
        raise FieldError(f"must be a permutation of 0..{len(out) - 1}, got {out}")
    return out


ClassIds = Annotated[list[int], BeforeValidator(_class_ids)]


class Corruption(SpecModel):
    """An input corruption of a derived task: ``noise`` (Gaussian, standard deviation ``level``, drawn
    with ``seed``), ``shift`` (``level`` positions along the last axis, an integer other than 0) or
    ``scale`` (multiply by ``level`` > 0)."""

    kind: Literal["noise", "shift", "scale"]
    level: Number
    seed: Int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _level_fits_kind(self) -> "Corruption":
        if CORRUPTION_KINDS[self.kind]:
            if not float(self.level).is_integer():
                raise FieldError(f"a shift is a whole number of positions, got {self.level!r}", ("level",))
            if self.level == 0:
                raise FieldError("a shift of 0 positions is no corruption", ("level",))
        elif self.level <= 0:
            raise FieldError(f"a {self.kind} level must be a positive number, got {self.level!r}", ("level",))
        if self.kind != "noise" and self.seed != 0:
            raise FieldError(f"only noise corruptions are random; a {self.kind} takes no seed", ("seed",))
        return self

    def canonical(self) -> dict[str, Any]:
        level = int(self.level) if CORRUPTION_KINDS[self.kind] else float(self.level)
        out: dict[str, Any] = {"kind": self.kind, "level": level}
        if self.kind == "noise":
            out["seed"] = self.seed
        return out


class TaskSpec(SpecModel):
    """The fields every task spec has, whatever its source (the source's own options come beside them;
    ``docs/SPECS.md``). Derived-task fields are set only for model-tree children."""

    model_config = ConfigDict(extra="allow")

    source: Str = "mnist1d"
    classes: Optional[ClassIds] = None
    train_fraction: Number = Field(default=1.0, gt=0, le=1)
    subset_seed: Int = Field(default=0, ge=0)
    standardize: Bool = True
    class_subset: Optional[ClassIds] = None
    label_permutation: Optional[Annotated[list[int], BeforeValidator(_permutation)]] = None
    corruption: Optional[Corruption] = None

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_fields(cls, data: Any) -> Any:  # a source's options are checked by the source
        if not isinstance(data, Mapping):
            raise FieldError(f"expected a mapping or a source name, got {data!r}")
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise FieldError(f"field names must be strings, got {bad!r}")
        return data


register_schema("task")(TaskSpec)


def normalize_task_spec(spec: Mapping[str, Any] | str) -> dict[str, Any]:
    """The canonical form of a task spec: validated, every default filled in, keys sorted, JSON-able.

    A bare string is a source name (``"mnist1d"`` means ``{"source": "mnist1d"}``); a mapping without
    ``source`` uses ``mnist1d``. Canonical specs are fixed points: normalising one returns it unchanged.
    Raises :class:`SpecError` naming the field (``field 'task.<field>': ...``) for a bad value or unknown
    option and :class:`UnknownNameError` for an unknown source.
    """
    if isinstance(spec, str):
        spec = {"source": spec}
    parsed = validate(TaskSpec, spec, prefix="task")
    try:
        source = get_task_source(parsed.source)
    except UnknownNameError:
        raise spec_error("task.source", f"unknown data source {parsed.source!r}; choose from {task_source_names()}",
                         unknown_name=True) from None
    out: dict[str, Any] = {"source": parsed.source, "classes": parsed.classes,
                           "train_fraction": parsed.train_fraction, "subset_seed": parsed.subset_seed,
                           "standardize": parsed.standardize}
    if parsed.class_subset is not None:
        out["class_subset"] = sorted(parsed.class_subset)
    if parsed.label_permutation is not None:
        out["label_permutation"] = parsed.label_permutation
    if parsed.corruption is not None:
        out["corruption"] = parsed.corruption.canonical()
    extra = dict(parsed.model_extra or {})
    if source.options is not None:
        unknown = sorted(set(extra) - set(source.options.model_fields))
        if unknown:
            raise spec_error(f"task.{unknown[0]}", f"unknown option for source {parsed.source!r}; its options are "
                             f"{sorted(source.options.model_fields)} and the generic {sorted(GENERIC_DEFAULTS)}")
        extra = validate(source.options, extra, prefix="task").model_dump()
    out.update({k: _jsonable(f"task.{k}", v) for k, v in extra.items()})
    return dict(sorted(out.items()))


def task_hash(spec: Mapping[str, Any] | str) -> str:
    """A short (10 hex digits) hash of the canonical spec: equal for specs that build the same data.

    Equals ``zoo.format.short_hash(normalize_task_spec(spec))``, the hash phase grids name tasks by.
    """
    return short_hash(normalize_task_spec(spec))


# ---------------------------------------------------------------------------------------- building
def build_task(spec: Mapping[str, Any] | str) -> TaskData:
    """The tensors of a task spec (see :class:`TaskData` for shapes); deterministic across processes.

    Every call returns new tensors, so callers may modify them in place.
    """
    spec = normalize_task_spec(spec)
    source_options = {k: v for k, v in spec.items() if k not in GENERIC_DEFAULTS}
    x_tr, y_tr, x_te, y_te = _source_arrays(canonical_json(source_options))
    source = spec["source"]

    present = sorted(set(np.unique(y_tr).tolist()) | set(np.unique(y_te).tolist()))
    if spec["classes"] is not None:
        classes = list(spec["classes"])
        missing = [c for c in classes if c not in present]
        if missing:
            raise spec_error("task.classes", f"class ids {missing} do not occur in source {source!r}; "
                            f"its classes are {present}")
        keep_tr, keep_te = np.isin(y_tr, classes), np.isin(y_te, classes)
        x_tr, y_tr, x_te, y_te = x_tr[keep_tr], y_tr[keep_tr], x_te[keep_te], y_te[keep_te]
    else:
        classes = present
    y_tr, y_te = _relabel(y_tr, classes), _relabel(y_te, classes)

    if spec["train_fraction"] < 1.0:
        keep = nested_subset(y_tr, spec["train_fraction"], spec["subset_seed"])
        x_tr, y_tr = x_tr[keep], y_tr[keep]

    x_tr64, x_te64 = x_tr.astype(np.float64), x_te.astype(np.float64)
    if spec["standardize"]:
        mean, std = float(x_tr64.mean()), float(x_tr64.std())
        std = std if std > 0 else 1.0
        x_tr64, x_te64 = (x_tr64 - mean) / std, (x_te64 - mean) / std
    if "class_subset" in spec:
        missing = [c for c in spec["class_subset"] if c not in classes]
        if missing:
            raise spec_error("task.class_subset", f"class ids {missing} are not in the task's classes {classes}")
        labels = _relabel(np.asarray(spec["class_subset"]), classes)
        keep_tr, keep_te = np.isin(y_tr, labels), np.isin(y_te, labels)
        x_tr64, y_tr, x_te64, y_te = x_tr64[keep_tr], y_tr[keep_tr], x_te64[keep_te], y_te[keep_te]
        if len(y_tr) == 0 or len(y_te) == 0:
            raise spec_error("task.class_subset", f"classes {spec['class_subset']} leave no "
                            f"{'training' if len(y_tr) == 0 else 'test'} examples")
    if "label_permutation" in spec:
        perm = np.asarray(spec["label_permutation"], dtype=np.int64)
        if len(perm) != len(classes):
            raise spec_error("task.label_permutation", f"has {len(perm)} entries but the task has {len(classes)} "
                            "classes")
        y_tr, y_te = perm[y_tr], perm[y_te]
    if "corruption" in spec:
        x_tr64, x_te64 = _corrupt(x_tr64, x_te64, spec["corruption"])
    return TaskData(
        x_train=torch.from_numpy(np.ascontiguousarray(x_tr64, dtype=np.float32)),
        y_train=torch.from_numpy(np.array(y_tr, dtype=np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_te64, dtype=np.float32)),
        y_test=torch.from_numpy(np.array(y_te, dtype=np.int64)),
        n_classes=len(classes),
        input_shape=tuple(int(d) for d in x_tr.shape[1:]),
        classes=tuple(int(c) for c in classes),
    )


def _corrupt(x_tr: np.ndarray, x_te: np.ndarray, corruption: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Train and test inputs (float64, standardised) with the corruption of a derived task applied."""
    kind, level = corruption["kind"], corruption["level"]
    if kind == "noise":
        rng = np.random.default_rng(int(corruption["seed"]))
        return x_tr + level * rng.standard_normal(x_tr.shape), x_te + level * rng.standard_normal(x_te.shape)
    if kind == "scale":
        return x_tr * level, x_te * level
    k = int(level)
    length = x_tr.shape[-1]
    if abs(k) >= length:
        raise spec_error("task.corruption.level", f"a shift of {k} positions leaves nothing of inputs of length "
                        f"{length} (last axis)")

    def shift(x: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x)
        if k > 0:
            out[..., k:] = x[..., :-k]
        else:
            out[..., :k] = x[..., -k:]
        return out

    return shift(x_tr), shift(x_te)


def _relabel(y: np.ndarray, classes: list[int]) -> np.ndarray:
    """Labels ``[n]`` mapped to their position in ``classes`` (every label must be in ``classes``)."""
    order = np.asarray(classes, dtype=np.int64)
    sorter = np.argsort(order, kind="stable")
    return sorter[np.searchsorted(order, y, sorter=sorter)].astype(np.int64)


def nested_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a stratified subset of ``max(1, round(fraction * len(labels)))`` examples.

    The examples are put in one order and the subset is a prefix of it, so subsets are nested: for
    the same labels and seed, the subset of a smaller fraction lies inside that of a larger one. The
    order interleaves the classes: a permutation seeded by ``seed`` ranks each class's ``n_c``
    examples ``r = 0..n_c-1``, and examples are sorted by ``r / n_c`` (ties in permutation order).
    Every prefix thus holds each class within about one example of its share, and the first
    ``n_classes`` examples hold one of each class.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.random.default_rng(int(seed)).permutation(n)
    permuted = labels[order]
    _, inverse, counts = np.unique(permuted, return_inverse=True, return_counts=True)
    rank = np.zeros(n, dtype=np.int64)
    for c in range(len(counts)):
        members = np.flatnonzero(inverse == c)
        rank[members] = np.arange(len(members))
    key = rank / counts[inverse]
    interleaved = order[np.lexsort((np.arange(n), key))]
    k = max(1, int(round(fraction * n)))
    return np.sort(interleaved[:k]).astype(np.int64)


@functools.lru_cache(maxsize=8)
def _source_arrays(options_json: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked, read-only ``(x_train, y_train, x_test, y_test)`` of a source, keyed by its canonical options."""
    options = json.loads(options_json)
    name = options["source"]
    arrays = get_task_source(name).fn(dict(options))
    if not isinstance(arrays, (tuple, list)) or len(arrays) != 4:
        raise spec_error("task.source", f"source {name!r} must return (x_train, y_train, x_test, y_test), "
                        f"got {type(arrays).__name__}")
    x_tr, y_tr, x_te, y_te = (_to_numpy(a) for a in arrays)
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        if x.dtype.kind not in "biuf" or x.ndim < 2:
            raise spec_error("task.source", f"source {name!r} gave {split} inputs of dtype {x.dtype} and shape "
                            f"{x.shape}; expected numbers of shape [n, *input_shape]")
        if y.ndim != 1 or len(y) != len(x) or len(y) == 0:
            raise spec_error("task.source", f"source {name!r} gave {len(x)} {split} inputs and labels of shape "
                            f"{y.shape}; expected [n] labels for n > 0 inputs")
        if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
            raise spec_error("task.source", f"source {name!r} gave {split} labels of dtype {y.dtype}; "
                            "expected integer class ids")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise spec_error("task.source", f"source {name!r} gave train inputs of shape {x_tr.shape[1:]} but test "
                        f"inputs of shape {x_te.shape[1:]}")
    out = (x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64))
    for a in out:
        a.setflags(write=False)  # shared by every build of this source: never modified
    return out


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy().copy()
    return np.array(a, copy=True)


# ------------------------------------------------------------------------------------------ sources
class Mnist1dOptions(SpecModel):
    """Options of the ``mnist1d`` source."""

    n_samples: Int = Field(default=5000, ge=10, description="examples generated, split 80/20 into train/test")
    seed: Int = Field(default=42, description="seed of the mnist1d generator")


@register_task_source("mnist1d", Mnist1dOptions)
def _mnist1d_source(options: dict) -> SourceArrays:
    """MNIST-1D: ``x [0.8 n, 40]`` float64, ``y [0.8 n]`` int64 and the last 20% as test."""
    return _mnist1d_arrays(options["n_samples"], options["seed"])


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D with ``num_samples = n_samples`` and ``seed``, from the disk cache or generated (seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        tag = version("mnist1d")
    except PackageNotFoundError:
        tag = "unknown"
    path = task_cache_dir() / f"mnist1d-{tag}-n{n_samples}-s{seed}.npz"
    keys = ("x", "y", "x_test", "y_test")
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = tuple(f[k] for k in keys)
            if arrays[0].shape[0] + arrays[2].shape[0] == 10 * (n_samples // 10):
                return arrays
        except (OSError, ValueError, KeyError, EOFError):
            pass  # a damaged cache file is regenerated and replaced below
    arrays = _generate_mnist1d(n_samples, seed)
    _write_npz_atomic(path, dict(zip(keys, arrays)))
    return arrays


def _generate_mnist1d(n_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = n_samples, seed
    np_state, py_state = np.random.get_state(), random.getstate()
    try:  # make_dataset seeds the global RNGs; leave them as the caller had them
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return (np.asarray(data["x"]), np.asarray(data["y"], dtype=np.int64),
            np.asarray(data["x_test"]), np.asarray(data["y_test"], dtype=np.int64))


def _write_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` through a temporary file and ``os.replace``; skip if unwritable."""
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.stem + ".", suffix=".tmp",
                                         delete=False) as f:
            tmp_name = f.name
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError:
        pass  # a read-only cache is no error: the data is generated again next time
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)


class SplitOptions(SpecModel):
    """How a source without its own test split is split: a stratified ``test_fraction`` with ``split_seed``."""

    test_fraction: Number = Field(default=0.2, gt=0, lt=1)
    split_seed: Int = Field(default=0, ge=0)


def _train_test_split(x: np.ndarray, y: np.ndarray, options: dict, *, stratify: bool) -> SourceArrays:
    from sklearn.model_selection import train_test_split

    try:
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=options["test_fraction"],
                                                  random_state=options["split_seed"],
                                                  stratify=y if stratify else None)
    except ValueError as exc:
        raise spec_error("task.test_fraction", f"cannot split {len(y)} examples with test_fraction "
                        f"{options['test_fraction']}: {exc}") from None
    return x_tr, y_tr, x_te, y_te


@register_task_source("digits", SplitOptions)
def _digits_source(options: dict) -> SourceArrays:
    """scikit-learn digits: ``x [n, 1, 8, 8]`` in [0, 1] (intensity / 16), stratified train/test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (np.asarray(d.images, dtype=np.float64) / 16.0)[:, None]
    return _train_test_split(x, np.asarray(d.target, dtype=np.int64), options, stratify=True)


_INPUT_COLUMNS = ("image", "img", "pixel_values", "x", "features")
class HfOptions(SplitOptions):
    """Options of the ``hf`` source (Hugging Face ``datasets``; see :func:`_hf_source`)."""

    name: Optional[Str] = Field(default=None, description="hub name or local path of the dataset (required)")
    config: Optional[Str] = None
    revision: Optional[Str] = None
    train_split: Str = "train"
    test_split: Optional[Str] = "test"
    input_column: Optional[Union[Str, Annotated[list[Str], Field(min_length=1)]]] = None
    label_column: Str = "label"

    @model_validator(mode="after")
    def _consistent(self) -> "HfOptions":
        if self.name is None:
            raise FieldError("the 'hf' source needs a dataset name (hub name or local path)", ("name",))
        if self.test_split == self.train_split:
            raise FieldError(f"must differ from train_split {self.train_split!r}", ("test_split",))
        return self


@register_task_source("hf", HfOptions)
def _hf_source(options: dict) -> SourceArrays:
    """A Hugging Face ``datasets`` dataset as arrays.

    ``name`` is a directory written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk`` (read with
    ``datasets.load_from_disk``) or else anything ``datasets.load_dataset(name, config, revision=...)``
    takes. ``input_column`` (default: the first of ``image``, ``img``, ``pixel_values``, ``x``,
    ``features`` present; or a list of numeric columns, stacked into ``[n, len(list)]``) and
    ``label_column`` (integer class ids) pick the data. Image columns become ``[n, C, H, W]`` in
    [0, 1] (uint8 / 255, uint16 / 65535); other columns ``[n, ...]`` as stored. Without the split
    ``test_split`` (or with ``test_split: null``), a stratified test part of ``test_fraction`` is
    carved from the train split with ``split_seed``; a ``test_split`` other than ``"test"`` must exist.
    """
    import datasets

    name = options["name"]
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", "./", "../", "~")) or path.exists()
    if looks_local and not path.exists():
        raise spec_error("task.name", f"no local dataset at {name!r}")
    if path.is_dir() and any((path / f).is_file() for f in ("dataset_dict.json", "state.json")):
        if options["config"] is not None:
            raise spec_error("task.config", f"{name!r} was written by save_to_disk and has no configs")
        ds = datasets.load_from_disk(str(path))
    else:
        try:
            ds = datasets.load_dataset(name, options["config"], revision=options["revision"])
        except Exception as exc:  # datasets raises many types (hub, network, builder errors)
            raise spec_error("task.name", f"could not load Hugging Face dataset {name!r}"
                            f"{' config ' + repr(options['config']) if options['config'] else ''}: "
                            f"{type(exc).__name__}: {exc}") from exc
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    if not isinstance(ds, datasets.DatasetDict):
        raise spec_error("task.name", f"{name!r} loaded as {type(ds).__name__}, not a Dataset or DatasetDict")
    splits = sorted(ds.keys())
    if options["train_split"] not in ds:
        raise spec_error("task.train_split", f"dataset {name!r} has no split {options['train_split']!r}; "
                        f"splits: {splits}")
    test_split = options["test_split"]
    if test_split is not None and test_split != "test" and test_split not in ds:
        raise spec_error("task.test_split", f"dataset {name!r} has no split {test_split!r}; splits: {splits}")

    train = ds[options["train_split"]]
    columns = list(train.column_names)
    label = options["label_column"]
    if label not in columns:
        raise spec_error("task.label_column", f"dataset {name!r} has no column {label!r}; columns: {columns}")
    inputs = options["input_column"]
    if inputs is None:
        inputs = next((c for c in _INPUT_COLUMNS if c in columns), None)
        if inputs is None:
            raise spec_error("task.input_column", f"dataset {name!r} has none of the columns {list(_INPUT_COLUMNS)}; "
                            f"name the input column (columns: {columns})")
    for col in [inputs] if isinstance(inputs, str) else inputs:
        if col not in columns:
            raise spec_error("task.input_column", f"dataset {name!r} has no column {col!r}; columns: {columns}")
        if col == label:
            raise spec_error("task.input_column", f"column {col!r} is also the label_column")

    x_tr, y_tr = _hf_arrays(train, inputs, label)
    if test_split is not None and test_split in ds:
        x_te, y_te = _hf_arrays(ds[test_split], inputs, label)
        return x_tr, y_tr, x_te, y_te
    _, counts = np.unique(y_tr, return_counts=True)
    n_test = math.ceil(options["test_fraction"] * len(y_tr))
    stratify = counts.min() >= 2 and len(counts) <= min(n_test, len(y_tr) - n_test)
    return _train_test_split(x_tr, y_tr, options, stratify=stratify)


def _hf_arrays(split: Any, inputs: str | list[str], label: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x [n, ...] float32, y [n] int64)`` of one ``datasets.Dataset`` split."""
    import datasets

    columns = [inputs] if isinstance(inputs, str) else list(inputs)
    table = split.with_format("numpy", columns=columns + [label])[:]
    y = np.asarray(table[label])
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise spec_error("task.label_column", f"column {label!r} holds {y.dtype} values such as {y[:3].tolist()}; "
                        "expected integer class ids")
    parts = []
    for col in columns:
        x = np.asarray(table[col])
        if x.dtype == object or x.dtype.kind not in "biuf":
            raise spec_error("task.input_column", f"column {col!r} does not hold numbers of one shape "
                            f"(got dtype {x.dtype}); inputs must be equal-shaped numeric arrays or images")
        if isinstance(split.features[col], datasets.Image):
            scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(x.dtype, 1.0)
            x = x.astype(np.float32) / np.float32(scale)
            x = x[:, None] if x.ndim == 3 else np.moveaxis(x, -1, 1)  # [n, H, W] or [n, H, W, C] -> [n, C, H, W]
        parts.append(x.astype(np.float32))
    if isinstance(inputs, str):
        return parts[0], y.astype(np.int64)
    if any(p.ndim != 1 for p in parts):
        raise spec_error("task.input_column", f"a list of columns must name scalar columns; shapes "
                        f"{[p.shape[1:] for p in parts]}")
    return np.stack(parts, axis=1), y.astype(np.int64)
