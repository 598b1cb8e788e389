"""The zoo store: one Zarr v3 group per zoo (format spec in ``docs/FORMAT.md``).

Layout of a store::

    zarr.json                      attrs["weightzoo"]: format_version, kind, spec, architectures
                                   (name, config, layout), tasks, checkpoint epochs, metric settings,
                                   splits and normalisation statistics
    models/<column>                [n_models] planned table, written once at creation
    results/status                 [n_models] int8, one chunk per model, written LAST for a model
    results/record                 [n_models] JSON string per model (wall time, versions, ...)
    weights/<arch_key>             [n_arch_models, n_checkpoints, n_params] float32,
                                   chunk (1, 1, n_params), crc32c-checked, NaN where never written
    metrics/<name>                 [n_models, n_checkpoints] float32, one chunk per model
    curves/train_loss              [n_models, n_epochs] mean mini-batch loss of every epoch
    splits/<name>                  [n_models] int8 (0 train, 1 val, 2 test)
    landscape/<name>               [n_models, *shape] float32 per-model landscape metric, one chunk per model
    pairs/<name>/{model_a,model_b,value}   a metric of model pairs (e.g. mode connectivity of two seeds)
    phases/label                   [n_models] int8 phase code (-1 unlabelled), rule in attrs["phases"]

Each model owns distinct chunks, so several writers (processes, Ray workers) can fill one store at
once; a model counts as complete only once its status chunk is written.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import uuid
import warnings
import zipfile
from collections import OrderedDict
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec
from zarr.core.buffer.cpu import NDBuffer

from kernels.layout import ParamLayout
from zoo.chunkio import direct_reader
from zoo.errors import (
    CORRUPTION_ERRORS,
    ArchitectureMismatchError,
    CorruptChunkError,
    FormatVersionError,
    NotAZooError,
    ZooError,
    first_line,
    is_corruption_message,
)
from zoo.format import (
    COMPLETE_STATUSES,
    FORMAT_VERSION,
    ROOT_ATTR,
    STATUS_CODES,
    STATUS_NAMES,
    decode_array,
    encode_array,
    to_jsonable,
)
from zoo.trees import checkpoint_epochs_of, tree_info

CHECKED_CODECS = dict(serializer=BytesCodec(), compressors=[Crc32cCodec()], filters=None)


#: The snapshot array of a consolidated store, its document's format, and the root attribute with its hash.
SNAPSHOT = "consolidated"
SNAPSHOT_FORMAT = "weightzoo-consolidated"
CONSOLIDATED_ATTR = "consolidated"


def _token(text: str) -> str:
    """The hash a consolidated store records for its snapshot (the same data gives the same token)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def _plain(values: np.ndarray) -> np.ndarray:
    """A zarr read as a plain NumPy array (strings as an object array of ``str``)."""
    values = np.asarray(values)
    if values.dtype.kind in "OTUS":
        return np.asarray([str(v) for v in values.ravel()], dtype=object).reshape(values.shape)
    return values


def seal_if_complete(path: str | os.PathLike) -> bool:
    """Consolidate the local store at ``path`` if it exists, is a zoo and is complete (see
    :meth:`Zoo.consolidate`); what weightzoo's writing commands do when they finish. Returns whether it
    sealed."""
    if _is_remote(str(path)) or not (Path(path) / "zarr.json").is_file():
        return False
    try:
        z = open_zoo(path, mode="r+")
    except ZooError:
        return False
    return z.consolidate()


def _is_remote(path: str) -> bool:
    return "://" in str(path)


def create_zoo(
    path: str | os.PathLike,
    *,
    models: pd.DataFrame,
    architectures: Mapping[str, Mapping[str, Any]],
    tasks: Mapping[str, Any],
    checkpoint_epochs: Sequence[int],
    metric_names: Sequence[str],
    n_epochs: int,
    attrs: Mapping[str, Any] | None = None,
    curve_names: Sequence[str] = ("train_loss",),
) -> "Zoo":
    """Create an empty store with the planned ``models`` table; every model starts ``pending``.

    ``models`` needs the columns ``model_id`` (unique ints), ``arch_key`` (a key of ``architectures``)
    and ``task`` (a key of ``tasks``). ``architectures[key]`` holds ``name``, ``config``,
    ``input_shape``, ``n_classes`` and ``layout`` (a :class:`ParamLayout` record).
    ``curve_names`` are the per-epoch curves, one ``curves/<name>`` ``[n_models, n_epochs]`` array each
    (``train_loss`` is always created: ``Zoo.write_model(curve=...)`` writes it).
    The store is built in a temporary directory beside ``path`` and renamed into place, so a
    half-created store never exists under ``path``.
    """
    path = Path(path)
    if path.exists():
        raise ZooError(f"{path} already exists; open it with zoo.open(..., mode='r+') or choose another path")
    _check_models_table(models, architectures, tasks)
    curves = list(dict.fromkeys(["train_loss", *(str(c) for c in curve_names)]))
    bad = [c for c in curves if not c or "/" in c or c.startswith(".")]
    if bad:
        raise ZooError(f"curve names {bad} are not valid array names (non-empty, no '/', not starting with '.')")
    models = models.sort_values("model_id").reset_index(drop=True)
    models["arch_row"] = models.groupby("arch_key").cumcount().astype(np.int64)
    n = len(models)
    n_ckpt = len(checkpoint_epochs)

    tmp = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        columns: dict[str, Any] = {}
        mg = root.create_group("models")
        for col in models.columns:
            values = models[col]
            if values.dtype == object or isinstance(values.dtype, pd.CategoricalDtype) or values.dtype.kind in "OUS":
                cats = sorted({str(v) for v in values})
                codes = np.array([cats.index(str(v)) for v in values], dtype=np.int32)
                mg.create_array(col, data=codes, chunks=(max(n, 1),))
                columns[col] = {"kind": "category", "categories": cats}
            elif values.dtype.kind == "b":
                mg.create_array(col, data=values.to_numpy().astype(bool), chunks=(max(n, 1),))
                columns[col] = {"kind": "bool"}
            else:
                mg.create_array(col, data=values.to_numpy(), chunks=(max(n, 1),))
                columns[col] = {"kind": "numeric"}
        rg = root.create_group("results")
        rg.create_array("status", shape=(n,), chunks=(1,), dtype="int8", fill_value=0, **CHECKED_CODECS)
        rg.create_array("record", shape=(n,), chunks=(1,), dtype=str)
        wg = root.create_group("weights")
        for key, arch in architectures.items():
            n_rows = int((models["arch_key"] == key).sum())
            n_params = int(ParamLayout.from_record(arch["layout"]).n_params)
            wg.create_array(key, shape=(n_rows, n_ckpt, n_params), chunks=(1, 1, n_params), dtype="float32",
                            fill_value=np.nan, **CHECKED_CODECS)
        metg = root.create_group("metrics")
        for name in metric_names:
            metg.create_array(name, shape=(n, n_ckpt), chunks=(1, n_ckpt), dtype="float32", fill_value=np.nan,
                              **CHECKED_CODECS)
        cg = root.create_group("curves")
        width = max(int(n_epochs), 1)
        for name in curves:
            cg.create_array(name, shape=(n, width), chunks=(1, width), dtype="float32", fill_value=np.nan,
                            **CHECKED_CODECS)
        root.create_group("splits")
        root.attrs[ROOT_ATTR] = to_jsonable({
            "format_version": FORMAT_VERSION,
            "n_models": n,
            "columns": columns,
            "architectures": {k: dict(v) for k, v in architectures.items()},
            "tasks": dict(tasks),
            "checkpoint_epochs": [int(e) for e in checkpoint_epochs],
            "n_epochs": int(n_epochs),
            "metrics": list(metric_names),
            "splits": {},
            "normalization": {},
            **dict(attrs or {}),
        })
        try:
            os.replace(tmp, path)
        except OSError as exc:  # another writer created it meanwhile (callers without zoo.lock.store_lock)
            if path.exists():
                raise ZooError(f"{path} was created by another process while this one created it; open it with "
                               "zoo.open(..., mode='r+') (weightzoo's commands hold zoo.lock.store_lock)") from exc
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return open_zoo(path, mode="r+")


def _check_models_table(models: pd.DataFrame, architectures: Mapping, tasks: Mapping) -> None:
    for col in ("model_id", "arch_key", "task"):
        if col not in models.columns:
            raise ZooError(f"models table needs a column {col!r} (has {list(models.columns)})")
    if models["model_id"].duplicated().any():
        dup = models["model_id"][models["model_id"].duplicated()].tolist()[:5]
        raise ZooError(f"models table: duplicated model_id {dup}")
    unknown = set(models["arch_key"]) - set(architectures)
    if unknown:
        raise ZooError(f"models table: arch_key {sorted(unknown)} not in architectures {sorted(architectures)}")
    unknown = set(models["task"]) - set(tasks)
    if unknown:
        raise ZooError(f"models table: task {sorted(unknown)} not in tasks {sorted(tasks)}")


def open_zoo(path: str | os.PathLike, mode: str = "r") -> "Zoo":
    """Open a store read-only (``mode="r"``, the default) or for writing results (``mode="r+"``).

    ``path`` is a directory store, a zipped store (``x.zarr.zip``, read in place through
    ``zarr.storage.ZipStore``) or an fsspec URL of a directory store (``http(s)://``, ``s3://``,
    ``gs://``, ``hf://``, ``file://``, ``memory://``), read chunk by chunk through
    ``zarr.storage.FsspecStore``. Zips and URLs are read-only.
    """
    if mode not in ("r", "r+"):
        raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}")
    spath = str(path)
    root = _open_group(spath, mode)
    meta = root.attrs.get(ROOT_ATTR)
    if not isinstance(meta, Mapping) or "format_version" not in meta:
        raise NotAZooError(f"{spath} is a Zarr group but not a weightzoo store (no '{ROOT_ATTR}.format_version' attribute)")
    version = int(meta["format_version"])
    if version > FORMAT_VERSION:
        raise FormatVersionError(
            f"{spath} has format_version {version}, but this weightzoo reads format_version <= {FORMAT_VERSION}; "
            "upgrade weightzoo to read it"
        )
    return Zoo(root, spath, writable=(mode == "r+"))


def _open_group(spath: str, mode: str) -> zarr.Group:
    """The root group of the store at ``spath`` (a directory, a ``.zarr.zip`` or a URL), opened by this
    process; errors name what is wrong with the path."""
    if _is_remote(spath):
        store: Any = _remote_store(spath, mode)
    elif Path(spath).is_file():  # a directory store is a folder: a file can only be a zipped store
        if not zipfile.is_zipfile(spath):
            with open(spath, "rb") as f:
                head = f.read(4)
            if head == b"PK\x03\x04":  # a zip's first member, but no directory at the end: cut short
                raise NotAZooError(f"{spath}: truncated or corrupt zip archive ({Path(spath).stat().st_size} bytes: it "
                                   "starts like a zip but its central directory at the end is missing or damaged, "
                                   "e.g. an interrupted download or copy); fetch or copy it again")
            raise NotAZooError(f"{spath}: not a zip archive (a zipped zoo is a .zarr.zip made by 'weightzoo pack')")
        if mode != "r":
            raise ZooError(f"{spath}: a zipped store is read-only; unzip it into a directory to write to it")
        try:  # read the central directory now, so that damage is named here
            zipfile.ZipFile(spath).close()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise NotAZooError(f"{spath}: corrupt zip archive ({first_line(exc)}); fetch or copy it again") from exc
        store = zarr.storage.ZipStore(spath, mode="r")
    elif not Path(spath).exists():
        raise NotAZooError(f"{spath}: no such file or directory")
    else:
        store = spath
    try:
        # readers use consolidated metadata when a sealed store has it; writers never (they change the store)
        return zarr.open_group(store, mode=mode, zarr_format=3, use_consolidated=None if mode == "r" else False)
    except Exception as exc:  # zarr raises several types for "not a group"
        raise NotAZooError(f"{spath} is not a zoo: not a Zarr v3 group ({type(exc).__name__}: {exc})") from exc


def _remote_store(url: str, mode: str) -> Any:
    """A read-only ``FsspecStore`` for ``url`` (errors name the URL and the missing fsspec backend)."""
    if mode != "r":
        raise ZooError(f"{url}: stores opened by URL are read-only; open them with mode='r'")
    try:
        return zarr.storage.FsspecStore.from_url(url, read_only=True)
    except ImportError as exc:
        scheme = url.split("://", 1)[0]
        raise ZooError(f"{url}: reading {scheme}:// URLs needs an fsspec backend that is not installed ({exc})") from exc
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise NotAZooError(f"{url}: not a URL fsspec can read ({exc})") from exc


class Zoo:
    """A model zoo: the models table, weights per checkpoint, metrics, layouts, splits and tasks."""

    def __init__(self, root: zarr.Group, path: str, writable: bool = False) -> None:
        self._group = root
        self._pid = os.getpid()
        self.path = path
        self.writable = writable
        self._task_cache: dict[str, Any] = {}
        self._sealing = False
        self._snapshot_cache: dict | bool | None = None  # None: not looked at yet; False: none usable

    @property
    def group(self) -> zarr.Group:
        """The store's root Zarr group (for readers of raw arrays; writes go through the methods), opened by
        this process, opened by this process: a process forked from the one that opened the
        zoo (a DataLoader worker) reopens it on first use, since the handles it inherited are not its
        own (a zip's file offset is shared with the parent; an HTTP session belongs to the parent's event
        loop)."""
        if self._pid != os.getpid():
            self._group = _open_group(self.path, "r+" if self.writable else "r")
            self._pid = os.getpid()
        return self._group

    def __repr__(self) -> str:
        return (f"Zoo({self.path!r}, n_models={self.n_models}, architectures={list(self.architectures)}, "
                f"checkpoints={self.checkpoint_epochs})")

    def __getstate__(self) -> dict:  # picklable for spawned DataLoader workers and Ray: reopen by path
        return {"path": self.path, "writable": self.writable}

    def __setstate__(self, state: dict) -> None:
        other = open_zoo(state["path"], mode="r+" if state["writable"] else "r")
        self.__dict__.update(other.__dict__)

    # ------------------------------------------------------------------ metadata
    @property
    def meta(self) -> dict:
        return dict(self.group.attrs[ROOT_ATTR])

    def update_meta(self, **changes: Any) -> None:
        """Set top-level fields of the store's ``weightzoo`` attribute (the store must be writable)."""
        self._require_writable("update attributes")
        meta = self.meta
        meta.update(to_jsonable(changes))
        self.group.attrs[ROOT_ATTR] = meta

    @property
    def format_version(self) -> int:
        return int(self.meta["format_version"])

    @property
    def n_models(self) -> int:
        return int(self.meta["n_models"])

    @property
    def architectures(self) -> dict[str, dict]:
        return dict(self.meta["architectures"])

    @property
    def tasks(self) -> dict[str, Any]:
        return dict(self.meta["tasks"])

    @property
    def checkpoint_epochs(self) -> list[int]:
        return list(self.meta["checkpoint_epochs"])

    @property
    def metric_names(self) -> list[str]:
        return list(self.meta["metrics"])

    def layout(self, arch_key: str) -> ParamLayout:
        archs = self.architectures
        if arch_key not in archs:
            raise ZooError(f"{self.path}: no architecture {arch_key!r} (has {sorted(archs)})")
        return ParamLayout.from_record(archs[arch_key]["layout"])

    # ------------------------------------------------------------------ consolidation (format_version 2)
    def snapshot_paths(self) -> list[str]:
        """The small per-model arrays a consolidated store carries in its snapshot: the models table's
        sources (``models/*``, ``results/*``, ``metrics/*``, scalar ``landscape/*``, ``phases/label``)."""
        root = self.group
        paths = [f"{g}/{name}" for g in ("models", "results", "metrics") if g in root
                 for name in sorted(root[g].array_keys())]
        paths += [f"landscape/{name}" for name, info in sorted(self.meta.get("landscape", {}).items())
                  if not info.get("shape") and f"landscape/{name}" in root]
        if "phases" in self.meta and "phases/label" in root:
            paths.append("phases/label")
        return paths

    def consolidated(self) -> bool:
        """Whether the store is sealed and its seal is current: consolidated metadata in the root
        ``zarr.json`` and a snapshot whose hash the root attributes record."""
        info = self.meta.get(CONSOLIDATED_ATTR)
        if not isinstance(info, Mapping) or not self._exists(f"{SNAPSHOT}/zarr.json"):
            return False
        doc = self._root_document()
        return doc.get("consolidated_metadata") is not None and info.get("token") == _token(self._snapshot_text())

    def consolidate(self) -> bool:
        """Seal a complete store for fast remote reading; returns whether it sealed (False: it has pending
        models, or is sealed already).

        Writes the snapshot array ``consolidated`` (the :meth:`snapshot_paths` arrays, whole, in one JSON
        document), records its hash under the root attribute ``consolidated``, sets ``format_version`` 2 and
        writes zarr's consolidated metadata (every node's ``zarr.json`` in the root one). Opening a sealed
        store and reading its models table then takes two reads (root ``zarr.json``, the snapshot) however
        many models it has. Any later write unseals it first (:meth:`unseal`); weightzoo's writing commands
        seal again when they finish (``zoo.lock.store_lock``).
        """
        self._require_writable_only()
        if (self.status_codes() == STATUS_CODES["pending"]).any() or self.consolidated():
            return False
        self.unseal()  # a stale seal goes first
        paths = self.snapshot_paths()
        doc = {"format": SNAPSHOT_FORMAT, "version": 1, "n_models": self.n_models,
               "arrays": {p: encode_array(_plain(self.read_array(p))) for p in paths}}
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        self._sealing = True
        try:
            arr = self.group.create_array(SNAPSHOT, shape=(1,), chunks=(1,), dtype=str, overwrite=True)
            arr[0] = text
            self.update_meta(format_version=FORMAT_VERSION,
                              **{CONSOLIDATED_ATTR: {"token": _token(text), "arrays": paths}})
            with warnings.catch_warnings():  # "not part of the Zarr format 3 specification": documented in FORMAT.md
                warnings.simplefilter("ignore")
                zarr.consolidate_metadata(self.group.store)
        finally:
            self._sealing = False
        return True

    def unseal(self) -> None:
        """Drop the seal of a consolidated store (the snapshot, its hash and zarr's consolidated metadata)
        before changing it, so that no reader ever takes a stale snapshot or misses a new array. Every
        write method calls it; so must code that changes a store through zarr directly."""
        self._require_writable_only()
        if not self._exists(f"{SNAPSHOT}/zarr.json") and self._root_document().get("consolidated_metadata") is None:
            return
        doc = self._root_document()
        doc.pop("consolidated_metadata", None)
        doc.get("attributes", {}).get(ROOT_ATTR, {}).pop(CONSOLIDATED_ATTR, None)
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        store = self._group.store
        sync(store.set("zarr.json", default_buffer_prototype().buffer.from_bytes(json.dumps(doc, indent=2).encode())))
        sync(store.delete_dir(SNAPSHOT))
        self._group = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
        self._snapshot_cache = None

    def _require_writable_only(self) -> None:
        if not self.writable:
            raise ZooError(f"{self.path} is open read-only; open it with zoo.open(path, mode='r+') to change it")

    def _exists(self, key: str) -> bool:
        from zarr.core.sync import sync

        return bool(sync(self.group.store.exists(key)))

    def _root_document(self) -> dict:
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        buf = sync(self.group.store.get("zarr.json", prototype=default_buffer_prototype()))
        return json.loads(buf.to_bytes()) if buf is not None else {}

    def _snapshot_text(self) -> str:
        return str(self.read_array(SNAPSHOT)[0])

    def _snapshot(self) -> dict | None:
        """The decoded snapshot of a sealed store, for read-only zoos opened with its consolidated metadata
        (writers always read the arrays themselves); None when there is none or it does not match its
        recorded hash."""
        if self.writable:
            return None
        if self._snapshot_cache is None:
            self._snapshot_cache = False
            info = self.meta.get(CONSOLIDATED_ATTR)
            consolidated = self._group.metadata.consolidated_metadata
            if isinstance(info, Mapping) and consolidated is not None and SNAPSHOT in consolidated.metadata:
                try:
                    text = self._snapshot_text()
                except CorruptChunkError as exc:  # a damaged cache: the arrays themselves are still there
                    warnings.warn(f"{exc}; reading the per-model arrays themselves", stacklevel=3)
                    return None
                if _token(text) == info.get("token"):
                    self._snapshot_cache = dict(json.loads(text).get("arrays", {}))
                else:  # changed without unsealing (not through weightzoo): never trust it
                    warnings.warn(f"{self.path}: the consolidated snapshot does not match its recorded hash; "
                                  "reading the per-model arrays themselves", stacklevel=3)
        return self._snapshot_cache or None

    def _whole(self, path: str) -> np.ndarray:
        """All of the array at ``path``: from a sealed store's snapshot when it holds it (no request per
        chunk), else read through :meth:`read_array`."""
        snapshot = self._snapshot()
        if snapshot is not None and path in snapshot:
            return decode_array(snapshot[path], f"{self.path}: snapshot of {path!r}")
        return self.read_array(path)

    # ------------------------------------------------------------------ models table
    @cached_property
    def planned(self) -> pd.DataFrame:
        """The models table as planned when the store was created (hyperparameters, seeds, grid
        coordinates, tree columns; no results), one row per model id, read once."""
        cols = self.meta["columns"]
        data = {}
        for col, info in cols.items():
            values = np.asarray(self._whole(f"models/{col}"))
            if info["kind"] == "category":
                data[col] = np.asarray(info["categories"], dtype=object)[values]
            else:
                data[col] = values
        return pd.DataFrame(data)

    def status_codes(self, ids: Sequence[int] | None = None) -> np.ndarray:
        """``[n_models]`` (or ``[len(ids)]``) int8 status codes (see :data:`zoo.format.STATUS_CODES`), read fresh."""
        if ids is None or self._snapshot() is not None:
            codes = np.asarray(self._whole("results/status"))
            return codes if ids is None else codes[np.asarray(ids, dtype=np.int64)]
        arr = self.group["results/status"]
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids)
        out = np.empty(len(ids), dtype=np.int8)
        out[order] = self._read(arr, ids[order], "results/status", oindex=True)
        return out

    @property
    def models(self) -> pd.DataFrame:
        """One row per model: planned hyperparameters, seeds, grid coordinates, then the results:
        ``status``, ``wall_time_s``, library versions and the metrics at the final checkpoint."""
        df = self.planned.copy()
        status = self.status_codes()
        df["status"] = [STATUS_NAMES.get(int(s), "unknown") for s in status]
        raw = np.asarray(self._whole("results/record"), dtype=object)
        records = [self._record(i, t) for i, t in enumerate(raw)]
        for key in ("wall_time_s", "diverged_epoch", "error"):
            df[key] = [r.get(key) for r in records]
        for lib in sorted({k for r in records for k in r.get("versions", {})}):
            df[f"version_{lib}"] = [r.get("versions", {}).get(lib) for r in records]
        for name in self.metric_names:
            df[name] = np.asarray(self._whole(f"metrics/{name}"))[:, -1]
        for name, info in self.meta.get("landscape", {}).items():
            if not info.get("shape"):  # scalar per model: one column
                df[name] = self.landscape(name)
        if "phases" in self.meta:
            df["phase"] = pd.Series(self.phases(), index=df.index, dtype=object)
        return df

    def _record(self, model_id: int, text: Any) -> dict:
        """One model's ``results/record`` (JSON); text that is not a JSON object is a damaged chunk."""
        if not text:
            return {}
        try:
            record = json.loads(str(text))
        except ValueError as exc:
            raise CorruptChunkError(f"{self.path}: 'results/record' of model {model_id} is not valid JSON "
                                    f"({first_line(exc)}); its chunk is damaged") from exc
        if not isinstance(record, dict):
            raise CorruptChunkError(f"{self.path}: 'results/record' of model {model_id} is not a JSON object")
        return record

    def row(self, model_id: int) -> pd.Series:
        """Model ``model_id``'s row of :attr:`planned` (``ZooError`` for an id out of range)."""
        mid = int(model_id)
        if not 0 <= mid < self.n_models:
            raise ZooError(f"{self.path}: no model {mid} (model ids are 0..{self.n_models - 1})")
        return self.planned.iloc[mid]

    # ------------------------------------------------------------------ reading arrays
    def read_array(self, path: str, selection: Any = Ellipsis, *, oindex: bool = False,
                   out: np.ndarray | None = None) -> np.ndarray:
        """``selection`` of the array at ``path`` (e.g. ``"metrics/test_acc"``), read through zarr.

        Every read of the store's data goes through here (weights through :meth:`read_weights`, which
        adds the missing-chunk check), so damage has one meaning everywhere: a chunk that fails its
        checksum, a zip member with a bad CRC, a chunk that cannot be decompressed or a truncated file
        raises :class:`~zoo.errors.CorruptChunkError` naming the store and the array. ``oindex``:
        orthogonal (per-axis integer) indexing; ``out``: a C-contiguous array of the selection's shape
        to decode into (basic selections only).
        """
        array = self.group[path]
        try:
            if out is not None:
                array.get_basic_selection(selection, out=NDBuffer.from_numpy_array(out))
                return out
            return np.asarray(array.oindex[selection] if oindex else array[selection])
        except CORRUPTION_ERRORS as exc:
            if isinstance(exc, (ValueError, RuntimeError)) and not is_corruption_message(str(exc)):
                raise
            key = self._damaged_chunk(array, selection)
            what = f"chunk '{key}'" if key else f"a chunk of '{path}'"
            raise CorruptChunkError(f"{self.path}: {what} is damaged ({type(exc).__name__}: "
                                    f"{first_line(exc)})") from exc

    def _damaged_chunk(self, array: zarr.Array, selection: Any, limit: int = 4096) -> str | None:
        """The key of the first chunk under ``selection`` that cannot be read (None if none is found
        among the first ``limit`` chunks): a failed read only says *that* a chunk is damaged."""
        grid = tuple(int(c) for c in array.metadata.chunk_grid.chunk_shape)
        sel = selection if isinstance(selection, tuple) else (selection,)
        if any(s is Ellipsis for s in sel):
            sel = tuple(slice(None) for _ in grid)
        sel = sel + (slice(None),) * (len(grid) - len(sel))
        axes = []
        for s, c, n in zip(sel, grid, array.shape):
            if isinstance(s, slice):
                start, stop, _ = s.indices(n)
                axes.append(range(start // c, (max(stop, start + 1) - 1) // c + 1))
            else:
                axes.append(sorted({int(i) // c for i in np.atleast_1d(np.asarray(s))}))
        for k, coords in enumerate(itertools.product(*axes)):
            if k >= limit:
                break
            try:
                array.blocks[coords]
            except CORRUPTION_ERRORS:
                return f"{array.path}/{array.metadata.encode_chunk_key(coords)}"
        return None

    def _read(self, array: zarr.Array, selection: Any, name: str, oindex: bool = False) -> np.ndarray:
        return self.read_array(name, selection, oindex=oindex)

    def _chunk_exists(self, key: str) -> bool:
        from zarr.core.sync import sync

        return bool(sync(self.group.store.exists(key)))

    def weights_array(self, arch_key: str) -> zarr.Array:
        """The zarr array ``weights/<arch_key>`` ``[n_rows, n_checkpoints, n_params]`` (for its shape and
        chunks; read its values through :meth:`read_weights`)."""
        if arch_key not in self.architectures:
            raise ZooError(f"{self.path}: no architecture {arch_key!r} (has {sorted(self.architectures)})")
        return self.group[f"weights/{arch_key}"]

    def arch_rows_to_ids(self, arch_key: str) -> np.ndarray:
        """Model id of every row of ``weights/<arch_key>``: ``[n_rows]`` int64."""
        planned = self.planned
        sel = planned[planned["arch_key"] == arch_key]
        out = np.full(int(self.group[f"weights/{arch_key}"].shape[0]), -1, dtype=np.int64)
        out[sel["arch_row"].to_numpy(dtype=np.int64)] = sel["model_id"].to_numpy(dtype=np.int64)
        return out

    def read_weights(self, arch_key: str, rows: slice | Sequence[int], checkpoint: int | None = None, *,
                     out: np.ndarray | None = None) -> np.ndarray:
        """The one checked read of ``weights/<arch_key>``: every reader of weights (``Zoo.weights``,
        datasets, the batch loader, the exporters, packing) goes through it.

        ``rows``: a slice (step 1) or row indices (``arch_row``, any order); ``checkpoint``: a checkpoint
        index (values ``[n_rows, n_params]``) or None for every checkpoint (``[n_rows, n_checkpoints,
        n_params]``); ``out``: an array of that shape to decode into (slices only).

        Raises :class:`~zoo.errors.CorruptChunkError` for a damaged chunk (see :meth:`read_array`) and
        for a *missing* chunk of a model whose status is ``ok`` (its weights are written before its
        status and are finite at every checkpoint, so its chunks exist; a missing one would otherwise
        read as NaN), naming the chunk key, the model and the checkpoint. Rows of pending or failed
        models read as the fill value (NaN), and so do a diverged model's all-NaN checkpoints (zarr does
        not store a chunk that equals the fill value).
        """
        path = f"weights/{arch_key}"
        arr = self.group[path]
        ckpt: Any = slice(None) if checkpoint is None else int(checkpoint)
        if isinstance(rows, slice):
            start, stop, step = rows.indices(arr.shape[0])
            if step != 1:
                raise ZooError(f"read_weights: row slices must have step 1, got {rows}")
            row_ids = np.arange(start, stop, dtype=np.int64)
            direct = direct_reader(arr) if checkpoint is not None and out is not None else None
            if direct is not None:
                direct.rows(start, stop, int(checkpoint), out)
                values = out
            else:
                values = self.read_array(path, (slice(start, stop), ckpt, slice(None)), out=out)
        else:
            if out is not None:
                raise ZooError("read_weights: out= needs a slice of rows")
            row_ids = np.asarray(rows, dtype=np.int64).reshape(-1)
            order = np.argsort(row_ids, kind="stable")
            values = np.empty((len(row_ids), *arr.shape[1 if checkpoint is None else 2:]), dtype=np.float32)
            if len(row_ids):
                values[order] = self.read_array(path, (row_ids[order], ckpt, slice(None)), oindex=True)
        self._check_missing(arch_key, row_ids, checkpoint, values)
        return values

    def verify(self, progress: bool = False) -> None:
        """Read every array of the store through the checked reads (:meth:`read_weights` for weights,
        :meth:`read_array` for the rest), block by block; raises :class:`~zoo.errors.CorruptChunkError`
        at the first damaged chunk or missing weights chunk of a complete model. Used before publishing."""
        from tqdm.auto import tqdm

        from zoo.chunkio import row_blocks

        paths = [name for name, node in self.group.members(max_depth=None)
                 if isinstance(node, zarr.Array) and not any(part.startswith(".") for part in name.split("/"))]
        for path in tqdm(sorted(paths), desc=f"verify {Path(str(self.path)).name}", unit="array", disable=not progress):
            array = self.group[path]
            for sel in row_blocks(array.shape, array.dtype, array.metadata.chunk_grid.chunk_shape):
                if path.startswith("weights/"):
                    self.read_weights(path.split("/", 1)[1], sel)
                else:
                    self.read_array(path, sel)

    def _check_missing(self, arch_key: str, rows: np.ndarray, checkpoint: int | None, values: np.ndarray) -> None:
        """A missing chunk reads as all NaN: for such rows of complete models, the chunk must exist."""
        if values.size == 0:
            return
        all_nan = np.isnan(values[..., 0])  # cheap first test: a missing chunk is NaN everywhere
        if not all_nan.any():
            return
        candidates = np.argwhere(all_nan)
        candidates = [tuple(c) for c in candidates if np.isnan(values[tuple(c)]).all()]
        if not candidates:
            return
        ids = self.arch_rows_to_ids(arch_key)[rows[[c[0] for c in candidates]]]
        status = self.status_codes(ids)
        arr = self.group[f"weights/{arch_key}"]
        grid = arr.metadata.chunk_grid.chunk_shape
        for c, mid, code in zip(candidates, ids, status):
            if int(code) != STATUS_CODES["ok"]:  # diverged weights may be all NaN: zarr skips such chunks
                continue
            ckpt = int(checkpoint) if checkpoint is not None else int(c[1])
            coords = (int(rows[c[0]]) // int(grid[0]), ckpt // int(grid[1]), 0)
            key = f"{arr.path}/{arr.metadata.encode_chunk_key(coords)}"
            if not self._chunk_exists(key):
                raise CorruptChunkError(f"{self.path}: chunk '{key}' (model {int(mid)}, checkpoint {ckpt}) is missing, "
                                        "but the model is ok, so its weights were written")

    def checkpoint_index(self, checkpoint: int | None = -1, epoch: int | None = None) -> int:
        """Index into the checkpoint axis, from an index (negative counts from the end) or an epoch."""
        epochs = self.checkpoint_epochs
        if epoch is not None:
            if epoch not in epochs:
                raise ZooError(f"{self.path}: no checkpoint at epoch {epoch} (stored epochs: {epochs})")
            return epochs.index(epoch)
        c = int(checkpoint if checkpoint is not None else -1)
        if not -len(epochs) <= c < len(epochs):
            raise ZooError(f"{self.path}: checkpoint {c} out of range for {len(epochs)} checkpoints {epochs}")
        return c % len(epochs)

    def _checkpoint_of(self, ids: Sequence[int], checkpoint: int | None, epoch: int | None) -> int:
        """The checkpoint index of ``ids`` from an index or an epoch. In a model tree, bases and children
        count their own epochs (``zoo.trees.checkpoint_epochs_of``), so an epoch resolves per model and
        the ids must share one epoch list."""
        if epoch is None or "tree" not in self.meta:
            return self.checkpoint_index(checkpoint, epoch)
        lists = {tuple(checkpoint_epochs_of(self, i)) for i in ids}
        if len(lists) != 1:
            raise ZooError(f"{self.path}: models {list(ids)[:10]} mix bases and children, whose checkpoints are at "
                           f"different epochs {sorted(lists)}; select by checkpoint index or one role at a time")
        epochs = list(lists.pop())
        if epoch not in epochs:
            raise ZooError(f"{self.path}: no checkpoint at epoch {epoch} for models {list(ids)[:10]} (their epochs: "
                           f"{epochs})")
        return epochs.index(epoch)

    def arch_of(self, ids: Iterable[int]) -> str:
        """The single architecture key shared by ``ids`` (error if they mix architectures)."""
        keys = {str(self.row(i)["arch_key"]) for i in ids}
        if len(keys) != 1:
            raise ZooError(f"{self.path}: models span several architectures {sorted(keys)}; "
                           "select models of one architecture (column 'arch_key')")
        return keys.pop()

    def weights(self, ids: int | Sequence[int], checkpoint: int = -1, *, epoch: int | None = None,
                allow_incomplete: bool = False) -> torch.Tensor:
        """Flat weights ``[len(ids), n_params]`` float32 at one checkpoint (index, or ``epoch=``).

        All ``ids`` must share one architecture. Models that are not complete raise an error unless
        ``allow_incomplete``; diverged models are returned as stored (they may hold NaN/inf).
        """
        ids = [int(ids)] if isinstance(ids, (int, np.integer)) else [int(i) for i in ids]
        if not ids:
            raise ZooError("weights(): empty list of model ids")
        key = self.arch_of(ids)
        c = self._checkpoint_of(ids, checkpoint, epoch)
        status = self.status_codes(ids)
        if not allow_incomplete:
            bad = [(i, STATUS_NAMES[int(s)]) for i, s in zip(ids, status) if STATUS_NAMES[int(s)] not in ("ok", "diverged")]
            if bad:
                raise ZooError(f"{self.path}: models {[i for i, _ in bad[:10]]} have no stored weights "
                               f"(status {[s for _, s in bad[:10]]})")
        rows = [int(self.row(i)["arch_row"]) for i in ids]
        return torch.from_numpy(self.read_weights(key, rows, c))

    def read_rows(self, arch_key: str, rows: Sequence[int], checkpoint_index: int) -> torch.Tensor:
        """Rows of ``weights/<arch_key>`` at one checkpoint index: ``[len(rows), n_params]`` float32, through
        the checked read :meth:`read_weights`."""
        return torch.from_numpy(self.read_weights(arch_key, list(rows), checkpoint_index))

    def state_dict(self, model_id: int, checkpoint: int = -1, *, epoch: int | None = None) -> "OrderedDict[str, torch.Tensor]":
        """``{parameter name: tensor}`` of one model at one checkpoint."""
        flat = self.weights([model_id], checkpoint, epoch=epoch)[0]
        layout = self.layout(str(self.row(model_id)["arch_key"]))
        return OrderedDict((k, v.clone()) for k, v in layout.unflatten(flat).items())

    def build_model(self, model_id: int, checkpoint: int = -1, *, epoch: int | None = None) -> torch.nn.Module:
        """The model as an ``nn.Module`` (eval mode) with its stored weights loaded."""
        module = self.empty_model(model_id)
        state = self.state_dict(model_id, checkpoint, epoch=epoch)
        load_checked(module, state, where=f"{self.path} model {model_id}")
        return module.eval()

    def empty_model(self, model_id: int) -> torch.nn.Module:
        """A freshly initialised module of model ``model_id``'s architecture (weights not loaded)."""
        from zoo.architectures import build_architecture

        arch = self.architectures[str(self.row(model_id)["arch_key"])]
        if arch.get("generic"):
            raise ArchitectureMismatchError(
                f"{self.path}: model {model_id} was imported with a generic parameter layout (from "
                f"{arch.get('source', 'an importer')}); no registered architecture has its parameters, so it "
                "cannot be built as a module. Its weights are readable: z.weights(...), z.state_dict(...)")
        return build_architecture(arch["name"], arch["input_shape"], arch["n_classes"], arch["config"])

    def task_spec(self, model_id: int) -> Any:
        return self.tasks[str(self.row(model_id)["task"])]

    def task_data(self, model_id: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` the model was trained (``"train"``) or evaluated (``"test"``) on, rebuilt from the
        task spec the store records: ``x [n, *input_shape]`` float32, ``y [n]`` int64."""
        from zoo.tasks import build_task

        key = str(self.row(model_id)["task"])
        if key not in self._task_cache:
            self._task_cache[key] = build_task(self.tasks[key])
        return self._task_cache[key].split(split)

    def metric(self, name: str, ids: Sequence[int] | None = None) -> np.ndarray:
        """Metric values ``[n_models (or len(ids)), n_checkpoints]``."""
        if name not in self.metric_names:
            raise ZooError(f"{self.path}: no metric {name!r} (has {self.metric_names})")
        sel = slice(None) if ids is None else np.asarray(sorted(ids))
        if ids is None:
            return np.asarray(self._whole(f"metrics/{name}"))
        arr = self.group[f"metrics/{name}"]
        order = np.argsort(np.asarray(ids))
        out = np.empty((len(ids), arr.shape[1]), dtype=np.float32)
        out[order] = self._read(arr, (sel, slice(None)), f"metrics/{name}", oindex=True)
        return out

    def curve(self, name: str = "train_loss") -> np.ndarray:
        """Per-epoch training curve ``[n_models, n_epochs]`` (mean mini-batch loss of each epoch)."""
        return np.asarray(self._read(self.group[f"curves/{name}"], slice(None), f"curves/{name}"))

    # ------------------------------------------------------------------ splits
    @property
    def split_names(self) -> list[str]:
        return sorted(self.meta.get("splits", {}))

    def split(self, name: str = "default") -> np.ndarray:
        """Split codes ``[n_models]`` int8: 0 train, 1 val, 2 test."""
        if name not in self.meta.get("splits", {}):
            if not self.split_names:
                raise ZooError(f"{self.path}: no split {name!r}: the store has no splits yet"
                               + (self.unfinished_note() or "; write one with z.write_split(name, "
                                  "zoo.splits.assign_split(z.models), settings) on zoo.open(path, mode='r+')"))
            raise ZooError(f"{self.path}: no split {name!r} (stored splits: {self.split_names})")
        return np.asarray(self.group[f"splits/{name}"][:])

    def split_ids(self, part: str, name: str = "default") -> np.ndarray:
        """Sorted model ids in ``part`` ("train", "val" or "test") of split ``name``."""
        codes = {"train": 0, "val": 1, "test": 2}
        if part not in codes:
            raise ZooError(f"split part must be one of {list(codes)}, got {part!r}")
        return np.flatnonzero(self.split(name) == codes[part]).astype(np.int64)

    def write_split(self, name: str, codes: np.ndarray, settings: Mapping[str, Any]) -> None:
        """Store split ``name`` (codes ``[n_models]``) with the settings that reproduce it."""
        self._require_writable("write a split")
        codes = np.asarray(codes, dtype=np.int8)
        if codes.shape != (self.n_models,):
            raise ZooError(f"split {name!r} has shape {list(codes.shape)}, expected [{self.n_models}]")
        self.group["splits"].create_array(name, data=codes, chunks=(max(self.n_models, 1),), overwrite=True)
        splits = dict(self.meta.get("splits", {}))
        splits[name] = dict(settings)
        self.update_meta(splits=splits)


    # ------------------------------------------------------------------ landscape metrics
    @property
    def landscape_names(self) -> list[str]:
        """Names of the per-model landscape metrics stored under ``landscape/``."""
        return sorted(self.meta.get("landscape", {}))

    def landscape_settings(self, name: str) -> dict:
        """How landscape metric ``name`` was computed: ``checkpoint`` index, ``checkpoint_epoch``,
        ``shape`` (per model), ``description`` and every setting needed to recompute it."""
        stored = self.meta.get("landscape", {})
        if name not in stored:
            raise ZooError(f"{self.path}: no landscape metric {name!r} (has {sorted(stored)})"
                           + (self.unfinished_note() if not stored else ""))
        return dict(stored[name])

    def declare_landscape(self, name: str, settings: Mapping[str, Any], *, checkpoint: int = -1,
                          shape: Sequence[int] = (), description: str = "") -> None:
        """Create (or, when the settings changed, recreate empty) ``landscape/<name>``
        ``[n_models, *shape]`` float32 and record its settings. Call once, before workers write values."""
        self._require_writable("declare a landscape metric")
        c = self.checkpoint_index(checkpoint)
        record = to_jsonable({"checkpoint": c, "checkpoint_epoch": self.checkpoint_epochs[c],
                              "shape": [int(s) for s in shape], "description": description,
                              "settings": dict(settings)})
        stored = dict(self.meta.get("landscape", {}))
        if stored.get(name) == record and f"landscape/{name}" in self.group:
            return
        group = self.group.require_group("landscape")
        per_model = tuple(int(s) for s in shape)
        group.create_array(name, shape=(self.n_models, *per_model), chunks=(1, *per_model) if per_model else (1,),
                           dtype="float32", fill_value=np.nan, overwrite=True, **CHECKED_CODECS)
        stored[name] = record
        self.update_meta(landscape=stored)

    def write_landscape(self, name: str, model_ids: Sequence[int], values: np.ndarray) -> None:
        """Write values ``[len(model_ids), *shape]`` of a declared landscape metric (one chunk per model,
        so concurrent writers of distinct models never collide)."""
        self._require_writable("write a landscape metric")
        info = self.landscape_settings(name)
        values = np.asarray(values, dtype=np.float32)
        expected = (len(model_ids), *info["shape"])
        if values.shape != expected:
            raise ZooError(f"landscape metric {name!r}: values of shape {list(values.shape)}, expected {list(expected)}")
        ids = np.asarray(model_ids, dtype=np.int64)
        bad = ids[(ids < 0) | (ids >= self.n_models)]
        if bad.size:
            raise ZooError(f"{self.path}: no models {bad[:5].tolist()} (model ids are 0..{self.n_models - 1})")
        arr = self.group[f"landscape/{name}"]
        for mid, v in zip(ids, values):
            arr[int(mid)] = v

    def landscape(self, name: str, ids: Sequence[int] | None = None) -> np.ndarray:
        """Landscape metric ``[n_models (or len(ids)), *shape]``; NaN where not computed."""
        self.landscape_settings(name)
        if ids is None:
            return np.asarray(self._whole(f"landscape/{name}"))
        arr = self.group[f"landscape/{name}"]
        ids = np.asarray(ids, dtype=np.int64)  # read only those models' chunks
        order = np.argsort(ids)
        out = np.empty((len(ids), *arr.shape[1:]), dtype=arr.dtype)
        out[order] = self._read(arr, ids[order], f"landscape/{name}", oindex=True)
        return out

    def write_pairs(self, name: str, model_a: Sequence[int], model_b: Sequence[int], values: np.ndarray,
                    settings: Mapping[str, Any], *, checkpoint: int = -1, description: str = "") -> None:
        """Store a metric of model pairs (``values [n_pairs, *shape]``), replacing an earlier one."""
        self._require_writable("write a pair metric")
        a, b = np.asarray(model_a, dtype=np.int64), np.asarray(model_b, dtype=np.int64)
        values = np.asarray(values, dtype=np.float32)
        if not (a.shape == b.shape == values.shape[:1]) or a.ndim != 1:
            raise ZooError(f"pair metric {name!r}: model_a {list(a.shape)}, model_b {list(b.shape)} and values "
                           f"{list(values.shape)} must share their first dimension")
        bad = [int(i) for i in np.concatenate([a, b]) if not 0 <= i < self.n_models]
        if bad:
            raise ZooError(f"pair metric {name!r}: no models {bad[:5]} in this zoo of {self.n_models}")
        group = self.group.require_group("pairs").require_group(name)
        n = max(len(a), 1)
        for key, data in (("model_a", a), ("model_b", b), ("value", values)):
            group.create_array(key, shape=data.shape, chunks=(n, *data.shape[1:]), dtype=data.dtype,
                               overwrite=True, **CHECKED_CODECS)
            if data.size:
                group[key][...] = data
        c = self.checkpoint_index(checkpoint)
        stored = dict(self.meta.get("pairs", {}))
        stored[name] = to_jsonable({"checkpoint": c, "checkpoint_epoch": self.checkpoint_epochs[c],
                                    "shape": list(values.shape[1:]), "description": description,
                                    "settings": dict(settings)})
        self.update_meta(pairs=stored)

    @property
    def pair_names(self) -> list[str]:
        return sorted(self.meta.get("pairs", {}))

    def pairs(self, name: str) -> pd.DataFrame:
        """Pair metric ``name`` as a table: ``model_a``, ``model_b``, ``value`` (an array per row when the
        metric is not a scalar). Settings: ``z.meta["pairs"][name]``."""
        if name not in self.meta.get("pairs", {}):
            raise ZooError(f"{self.path}: no pair metric {name!r} (has {self.pair_names})"
                           + (self.unfinished_note() if not self.pair_names else ""))
        g = self.group[f"pairs/{name}"]
        value = np.asarray(self._read(g["value"], slice(None), f"pairs/{name}/value"))
        return pd.DataFrame({"model_a": np.asarray(g["model_a"][:]), "model_b": np.asarray(g["model_b"][:]),
                             "value": list(value) if value.ndim > 1 else value})

    # ------------------------------------------------------------------ phase labels
    def write_phases(self, labels: Sequence[str | None], rule: Mapping[str, Any]) -> dict[str, int]:
        """Store one phase label per model (``None`` = unlabelled) and the rule (name, version,
        thresholds, label names) that produced them; returns and stores ``phase_counts``."""
        self._require_writable("write phase labels")
        names = [str(n) for n in rule.get("labels", [])]
        if not names:
            raise ZooError("write_phases: the rule must list its phase names under 'labels'")
        if len(labels) != self.n_models:
            raise ZooError(f"write_phases: {len(labels)} labels for {self.n_models} models")
        unknown = sorted({str(x) for x in labels if x is not None} - set(names))
        if unknown:
            raise ZooError(f"write_phases: labels {unknown} are not among the rule's labels {names}")
        codes = np.array([-1 if x is None else names.index(str(x)) for x in labels], dtype=np.int8)
        self.group.require_group("phases").create_array("label", data=codes, chunks=(max(self.n_models, 1),),
                                                         overwrite=True)
        counts = {n: int((codes == i).sum()) for i, n in enumerate(names)}
        counts["unlabelled"] = int((codes < 0).sum())
        self.update_meta(phases=dict(rule), phase_counts=counts)
        return counts

    def phases(self) -> np.ndarray:
        """Phase label per model ``[n_models]`` (object array of str, None where unlabelled)."""
        rule = self.meta.get("phases")
        if rule is None:
            raise ZooError(f"{self.path}: no phase labels yet"
                           + (self.unfinished_note() or f"; run 'weightzoo phases {self.path}'"))
        names = list(rule["labels"])
        codes = np.asarray(self._whole("phases/label"))
        return np.array([names[c] if c >= 0 else None for c in codes], dtype=object)

    # ------------------------------------------------------------------ model trees
    def parent(self, model_id: int) -> int | None:
        """The parent model id of ``model_id`` (model trees), or None for a root model."""
        planned = self.row(model_id)
        pid = int(planned["parent_id"]) if "parent_id" in planned.index else -1
        return pid if pid >= 0 else None

    def task_vector(self, model_id: int, checkpoint: int = -1, *, epoch: int | None = None) -> torch.Tensor:
        """``child - parent`` flat weights ``[n_params]``: the model at ``checkpoint`` minus its parent's
        final weights (the point it was fine-tuned from)."""
        pid = self.parent(model_id)
        if pid is None:
            raise ZooError(f"{self.path}: model {model_id} has no parent (parent_id -1), so no task vector")
        child_key, parent_key = str(self.row(model_id)["arch_key"]), str(self.row(pid)["arch_key"])
        if child_key != parent_key:
            raise ZooError(f"{self.path}: model {model_id} ({child_key}) and its parent {pid} ({parent_key}) "
                           "have different architectures; a task vector needs the same layout")
        return self.weights([model_id], checkpoint, epoch=epoch)[0] - self.weights([pid], -1)[0]

    # ------------------------------------------------------------------ writing results
    def _require_writable(self, what: str) -> None:
        """Every write goes through here: refuse read-only zoos, and unseal a consolidated store first."""
        if not self.writable:
            raise ZooError(f"{self.path} is open read-only; open with zoo.open(path, mode='r+') to {what}")
        if not self._sealing:
            self.unseal()

    def write_model(self, model_id: int, *, weights: torch.Tensor | np.ndarray | None,
                    metrics: Mapping[str, np.ndarray], status: str, record: Mapping[str, Any],
                    curve: np.ndarray | None = None, curves: Mapping[str, np.ndarray] | None = None) -> None:
        """Write one model's results; its status chunk goes last so a crash never leaves it complete.

        ``weights [n_checkpoints, n_params]`` (None for a failed model), ``metrics[name]
        [n_checkpoints]``, ``curve [n_epochs]`` (the ``train_loss`` curve), ``curves[name] [n_epochs]``
        (any curve the store was created with, see ``create_zoo(curve_names=...)``).
        """
        self._require_writable("write results")
        if status not in STATUS_CODES or status == "pending":
            raise ZooError(f"status must be one of {COMPLETE_STATUSES}, got {status!r}")
        row = self.row(model_id)
        curves = dict(curves or {})
        if curve is not None:
            if "train_loss" in curves:
                raise ZooError("write_model: pass the train_loss curve either as curve= or in curves=, not both")
            curves["train_loss"] = curve
        curve_arrays = {}
        for name in curves:
            try:
                curve_arrays[name] = self.group[f"curves/{name}"]
            except KeyError:
                have = sorted(self.group["curves"].array_keys())
                raise ZooError(f"{self.path}: unknown curve {name!r} (store has curves {have}; declare curves "
                               "when creating the store: create_zoo(curve_names=...))") from None
        if weights is not None:
            w = np.asarray(weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights, dtype=np.float32)
            arr = self.group[f"weights/{row['arch_key']}"]
            if w.shape != arr.shape[1:]:
                raise ArchitectureMismatchError(
                    f"model {model_id}: weights of shape {list(w.shape)} do not fit weights/{row['arch_key']} "
                    f"[checkpoints, params] = {list(arr.shape[1:])}")
            arr[int(row["arch_row"])] = w
        for name, values in metrics.items():
            if name not in self.metric_names:
                raise ZooError(f"unknown metric {name!r} (store has {self.metric_names})")
            self.group[f"metrics/{name}"][int(model_id)] = np.asarray(values, dtype=np.float32)
        for name, arr in curve_arrays.items():
            values = np.asarray(curves[name], dtype=np.float32)
            if values.shape != arr.shape[1:]:
                raise ZooError(f"model {model_id}: curve {name!r} has shape {list(values.shape)}, the store's "
                               f"curves/{name} holds {list(arr.shape[1:])} epochs")
            arr[int(model_id)] = values
        self.group["results/record"][int(model_id)] = json.dumps(to_jsonable(dict(record)))
        self.group["results/status"][int(model_id)] = STATUS_CODES[status]

    # ------------------------------------------------------------------ summaries
    def unfinished_note(self) -> str:
        """``"; generation is unfinished: ..."`` (how many models are pending and how to finish) when the
        store has pending models, else ``""``: added to errors about things written only at the end."""
        pending = int((self.status_codes() == STATUS_CODES["pending"]).sum())
        if not pending:
            return ""
        if self.meta.get("kind") == "imported":
            how = "rerun the same 'weightzoo import' to resume it"
        else:
            name = self.meta.get("name") or "SPEC"
            how = f"rerun 'weightzoo generate {name} --out {self.path}' (the same spec) to finish it"
        return (f"; generation is unfinished: {pending} of {self.n_models} models are still pending, and splits, "
                f"normalisation statistics, landscape metrics and phase labels are written once every model "
                f"is complete ({how})")

    # ------------------------------------------------------------------ summaries
    def status_counts(self) -> dict[str, int]:
        codes = self.status_codes()
        return {name: int((codes == code).sum()) for name, code in STATUS_CODES.items()}

    def info(self) -> dict[str, Any]:
        """Summary used by ``weightzoo info --json``."""
        meta = self.meta
        archs = {
            k: {"name": a["name"], "config": a["config"], "n_params": ParamLayout.from_record(a["layout"]).n_params,
                "n_models": int(self.group[f"weights/{k}"].shape[0])}
            for k, a in meta["architectures"].items()
        }
        out = {
            "path": self.path,
            "format_version": meta["format_version"],
            "kind": meta.get("kind", "zoo"),
            "n_models": self.n_models,
            "architectures": archs,
            "checkpoints": self.checkpoint_epochs,
            "status_counts": self.status_counts(),
            "metrics": self.metric_names,
            "splits": self.split_names,
            "tasks": meta["tasks"],
        }
        if "grid" in meta:
            out["grid"] = meta["grid"]
        if "tree" in meta:
            out["tree"] = tree_info(self)
        if meta.get("landscape"):
            out["landscape"] = {k: {"checkpoint_epoch": v["checkpoint_epoch"], "shape": v["shape"]}
                                for k, v in meta["landscape"].items()}
        if meta.get("pairs"):
            out["pairs"] = sorted(meta["pairs"])
        if "phase_counts" in meta:
            out["phase_counts"] = meta["phase_counts"]
            out["phase_rule"] = {k: meta["phases"][k] for k in ("name", "version") if k in meta.get("phases", {})}
        return out


def load_checked(module: torch.nn.Module, state: Mapping[str, torch.Tensor], where: str = "weights") -> None:
    """``module.load_state_dict(state)`` with an error naming the parameter whose name or shape differs."""
    own = dict(module.named_parameters())
    for name, p in own.items():
        if name not in state:
            raise ArchitectureMismatchError(f"{where}: missing parameter {name!r} (shape {list(p.shape)}) "
                                            f"for {type(module).__name__}")
        if tuple(state[name].shape) != tuple(p.shape):
            raise ArchitectureMismatchError(
                f"{where}: parameter {name!r} has shape {list(state[name].shape)} but "
                f"{type(module).__name__} expects {list(p.shape)}")
    extra = sorted(set(state) - set(own))
    if extra:
        raise ArchitectureMismatchError(f"{where}: parameters {extra} do not exist in {type(module).__name__}")
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(state[name])
