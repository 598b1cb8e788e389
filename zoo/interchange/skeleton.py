"""The structure of a store, independent of its data: every group and array with its Zarr metadata.

Every interchange format carries the skeleton (the ``zarr.json`` document of each node, verbatim) so
that importing it back recreates the store with the same arrays, chunking, codecs, fill values and
attributes; only the data travels in the format's own layout. Arrays are sorted into three roles:

* ``weights``: ``weights/<arch_key>`` ``[n_arch_rows, n_checkpoints, n_params]``, one row per model
  of that architecture (row = the model's ``arch_row``);
* ``model``: arrays of the per-model groups (:data:`PER_MODEL_GROUPS`) whose first axis is the model
  id — one slice per model (planned columns, status, records, metrics, curves, splits, landscape
  metrics, phase labels);
* ``zoo``: everything else (pair metrics, arrays a newer weightzoo adds), carried whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from zoo.chunkio import block_rows
from zoo.errors import ZooError
from zoo.format import ROOT_ATTR, decode_array, encode_array
from zoo.store import Zoo

PER_MODEL_GROUPS = ("models", "results", "metrics", "curves", "splits", "landscape", "phases")
SKELETON_VERSION = 1


def _read_json(store: Any, key: str) -> dict:
    buf = sync(store.get(key, prototype=default_buffer_prototype()))
    if buf is None:
        raise ZooError(f"store node metadata {key!r} is missing")
    return json.loads(buf.to_bytes())


@dataclass
class StoreSkeleton:
    """``nodes``: ``{path: zarr.json document}`` of every group and array (``""`` is the root group)."""

    nodes: dict[str, dict]

    # ------------------------------------------------------------------ construction
    @classmethod
    def of(cls, z: Zoo) -> "StoreSkeleton":
        """The skeleton of an open store (read from its ``zarr.json`` documents, byte for byte)."""
        root = z.group
        nodes = {"": _read_json(root.store, _key(root.path, "zarr.json"))}
        for name, _node in root.members(max_depth=None):
            nodes[name] = _read_json(root.store, _key(root.path, f"{name}/zarr.json"))
        return cls(dict(sorted(nodes.items())))

    def to_record(self) -> dict:
        return {"skeleton_version": SKELETON_VERSION, "nodes": self.nodes}

    @classmethod
    def from_record(cls, rec: Mapping[str, Any], where: str) -> "StoreSkeleton":
        if not isinstance(rec, Mapping) or not isinstance(rec.get("nodes"), Mapping) or "" not in rec["nodes"]:
            raise ZooError(f"{where}: no store skeleton (expected 'nodes' with the root group's metadata)")
        version = int(rec.get("skeleton_version", 0))
        if version > SKELETON_VERSION:
            raise ZooError(f"{where}: skeleton_version {version} is newer than this weightzoo reads "
                           f"({SKELETON_VERSION}); upgrade weightzoo")
        skel = cls({str(k): dict(v) for k, v in rec["nodes"].items()})
        if not isinstance(skel.meta.get("format_version"), int):
            raise ZooError(f"{where}: the root group has no '{ROOT_ATTR}.format_version' attribute")
        return skel

    # ------------------------------------------------------------------ queries
    @property
    def meta(self) -> dict:
        return dict(self.nodes[""].get("attributes", {}).get(ROOT_ATTR, {}))

    @property
    def n_models(self) -> int:
        return int(self.meta["n_models"])

    @property
    def checkpoint_epochs(self) -> list[int]:
        return [int(e) for e in self.meta["checkpoint_epochs"]]

    @property
    def arrays(self) -> dict[str, dict]:
        return {p: d for p, d in self.nodes.items() if d.get("node_type") == "array"}

    def shape(self, path: str) -> tuple[int, ...]:
        return tuple(int(s) for s in self.nodes[path]["shape"])

    def chunks(self, path: str) -> tuple[int, ...]:
        """Shape of the unit a write touches: the shard when sharded, else the chunk."""
        return tuple(int(s) for s in self.nodes[path]["chunk_grid"]["configuration"]["chunk_shape"])

    def dtype(self, path: str) -> np.dtype:
        """NumPy dtype of an array (``object`` for strings)."""
        return np_dtype(self.nodes[path]["data_type"], path)

    def role(self, path: str) -> str:
        top = path.split("/", 1)[0]
        if top == "weights":
            return "weights"
        shape = self.shape(path)
        if top in PER_MODEL_GROUPS and shape and shape[0] == self.n_models:
            return "model"
        return "zoo"

    def paths(self, role: str) -> list[str]:
        return [p for p in self.arrays if self.role(p) == role]

    # ------------------------------------------------------------------ writing
    def create(self, path: str | Path) -> zarr.Group:
        """Write every node's metadata document into a new local store at ``path`` (which must not
        exist) and return its root group, open for writing. Arrays start empty (fill values)."""
        path = Path(path)
        if path.exists():
            raise ZooError(f"{path} already exists")
        store = zarr.storage.LocalStore(str(path))
        proto = default_buffer_prototype()
        for node_path, doc in self.nodes.items():
            key = "zarr.json" if node_path == "" else f"{node_path}/zarr.json"
            sync(store.set(key, proto.buffer.from_bytes(json.dumps(doc, indent=2).encode())))
        return zarr.open_group(store, mode="r+", zarr_format=3)


def _key(prefix: str, key: str) -> str:
    return f"{prefix}/{key}" if prefix else key


def np_dtype(data_type: Any, where: str = "array") -> np.dtype:
    if data_type == "string":
        return np.dtype(object)
    try:
        return np.dtype(str(data_type))
    except TypeError:
        raise ZooError(f"{where}: data type {data_type!r} is not supported by weightzoo's interchange formats") from None


def as_numpy(values: Any, dtype: np.dtype) -> np.ndarray:
    """A zarr read as a plain NumPy array (strings as an object array of ``str``)."""
    if dtype == object:
        return np.asarray([str(v) for v in np.asarray(values).ravel()], dtype=object).reshape(np.shape(values))
    return np.asarray(values, dtype=dtype)


def write_zoo_arrays(root: zarr.Group, skel: StoreSkeleton, records: Mapping[str, Any], where: str) -> None:
    """Write the ``zoo``-role arrays from their records (see :func:`encode_array`)."""
    for path in skel.paths("zoo"):
        if path not in records:
            raise ZooError(f"{where}: no data for array {path!r}")
        values = decode_array(records[path], f"{where}: array {path!r}")
        if values.shape != skel.shape(path):
            raise ZooError(f"{where}: array {path!r} has shape {list(values.shape)}, its metadata says "
                           f"{list(skel.shape(path))}")
        if values.size:
            root[path][...] = values


def read_zoo_arrays(z: Zoo, skel: StoreSkeleton) -> dict[str, dict]:
    return {p: encode_array(as_numpy(z.read_array(p, ...), skel.dtype(p))) for p in skel.paths("zoo")}


def read_model_arrays(z: Zoo, skel: StoreSkeleton) -> dict[str, np.ndarray]:
    """Every ``model``-role array, whole: ``{path: [n_models, ...]}`` (small: scalars, metrics, curves)."""
    return {p: as_numpy(z.read_array(p, ...), skel.dtype(p)) for p in skel.paths("model")}


def write_model_arrays(root: zarr.Group, values: Mapping[str, np.ndarray]) -> None:
    """Write whole ``model``-role arrays; ``results/status`` goes last (a model is complete iff it has one)."""
    for path in sorted(values, key=lambda p: p == "results/status"):
        if values[path].size:
            root[path][...] = values[path]


def _block_rows(array: zarr.Array) -> int:
    """Rows per streamed block of ``array``, aligned to its shards when sharded, else its chunks."""
    unit = array.shards if getattr(array, "shards", None) is not None else array.chunks
    return block_rows(array.shape, array.dtype, unit)


class RowWriter:
    """Writes rows of a weights array in blocks aligned to its chunks (one zarr call per block).

    Rows are put in increasing order; rows never put keep the fill value. Call :meth:`flush` after
    the last row.
    """

    def __init__(self, array: zarr.Array) -> None:
        self.array = array
        self.shape = tuple(array.shape)
        self.block_rows = _block_rows(array)
        self.start = 0
        self.buffer: np.ndarray | None = None
        self.dirty = False

    def put(self, row: int, values: np.ndarray) -> None:
        if row < self.start:
            raise ZooError(f"{self.array.path}: rows must be written in increasing order (got {row} after {self.start})")
        while row >= self.start + self.block_rows:
            self.flush()
            self.start += self.block_rows
        if self.buffer is None:
            self.buffer = np.full((self.block_rows, *self.shape[1:]), np.nan, dtype=self.array.dtype)
        self.buffer[row - self.start] = values
        self.dirty = True

    def flush(self) -> None:
        if self.buffer is not None and self.dirty:
            stop = min(self.start + self.block_rows, self.shape[0])
            self.array[self.start:stop] = self.buffer[: stop - self.start]
        self.buffer = None
        self.dirty = False


class RowReader:
    """Reads rows ``[n_checkpoints, n_params]`` of ``weights/<arch_key>`` through one cached, chunk-aligned
    block, read by the store's checked read :meth:`Zoo.read_weights <zoo.store.Zoo.read_weights>`."""

    def __init__(self, z: Zoo, arch_key: str) -> None:
        self.z, self.arch_key = z, arch_key
        self.n_rows = int(z.weights_array(arch_key).shape[0])
        self.block_rows = _block_rows(z.weights_array(arch_key))
        self.start = -1
        self.block: np.ndarray | None = None

    def get(self, row: int) -> np.ndarray:
        start = row // self.block_rows * self.block_rows
        if start != self.start:
            self.block = self.z.read_weights(self.arch_key, slice(start, min(start + self.block_rows, self.n_rows)))
            self.start = start
        return self.block[row - start]


def parse_format_document(text: str | None, fmt: str, version: int, where: str) -> dict:
    """The JSON document ``text`` that marks an export, checked: ``format`` must be ``fmt`` and its
    ``version`` at most ``version``. ``where`` names the file and field for errors."""
    try:
        doc = json.loads(text) if text else None
    except (TypeError, ValueError):
        doc = None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise ZooError(f"{where} is not a {fmt!r} JSON document: not a weightzoo export of that format")
    if int(doc.get("version", 0)) > version:
        raise ZooError(f"{where}: written by a newer weightzoo ({fmt} version {doc['version']}, this reads {version})")
    return doc
