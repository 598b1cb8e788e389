"""HDF5 (h5py): the store's layout mirrored one to one.

Every Zarr group is an HDF5 group and every array a dataset at the same path (``/weights/<arch_key>``,
``/models/lr``, ``/results/status``, ...), with the same shape, dtype and chunk shape; numeric datasets
carry HDF5's Fletcher-32 checksum (the store uses CRC32C). Attributes:

* root: ``weightzoo`` — the store's root attributes as JSON (spec, layouts, tasks, ...);
  ``weightzoo_interchange`` — ``{"format": "weightzoo-hdf5", "version": 1}``;
* every node (root included): ``zarr_json`` — the node's ``zarr.json`` document, so an import recreates
  the store exactly (chunking, codecs, fill values);
* ``/models/<column>`` of category columns: ``categories``, the labels its int32 codes index.

Strings (``results/record``) are variable-length UTF-8. Values a store never wrote read as the array's
fill value (NaN for weights) in both formats.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from zoo.atomic import atomic_output
from zoo.chunkio import row_blocks
from zoo.errors import ZooError
from zoo.format import ROOT_ATTR
from zoo.interchange.skeleton import StoreSkeleton, as_numpy, parse_format_document
from zoo.store import Zoo, open_zoo

FORMAT = "weightzoo-hdf5"
VERSION = 1


def _float_fill(value: object, dtype: np.dtype) -> np.generic:
    """A Zarr v3 float fill value: a number, ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, or ``"0x..."``,
    the hexadecimal digits of the value's IEEE 754 bits as an unsigned integer (``"0x7fc00000"`` is
    float32 NaN), i.e. its bytes in big-endian order."""
    if isinstance(value, str) and value.lower().startswith("0x"):
        raw = bytes.fromhex(value[2:])
        if len(raw) != dtype.itemsize:
            raise ZooError(f"fill value {value!r} has {len(raw)} bytes, a {dtype} has {dtype.itemsize}")
        return np.frombuffer(raw, dtype=dtype.newbyteorder(">"))[0].astype(dtype)
    if isinstance(value, str):
        return dtype.type(float(value.replace("Infinity", "inf")))
    return dtype.type(value)


def fill_value(doc: dict, dtype: np.dtype):
    fill = doc.get("fill_value")
    if dtype == object or fill is None:
        return None
    if dtype.kind == "f":
        return np.array(_float_fill(fill, dtype), dtype=dtype)
    if dtype.kind == "c":  # [real, imaginary], each like a float fill value
        part = np.dtype(f"f{dtype.itemsize // 2}")
        return np.array(complex(_float_fill(fill[0], part), _float_fill(fill[1], part)), dtype=dtype)
    return np.array(fill, dtype=dtype)


def _copy_order(paths: list[str]) -> list[str]:
    """``results/status`` last: a store (or file) whose copy was interrupted never marks a model complete."""
    return sorted(paths, key=lambda p: p == "results/status")


def _total_bytes(skel: StoreSkeleton) -> int:
    return sum(int(np.prod(skel.shape(p), dtype=np.int64)) * (8 if skel.dtype(p) == object else skel.dtype(p).itemsize)
               for p in skel.arrays)


def export_hdf5(z: Zoo, out: str | os.PathLike, progress: bool = True) -> Path:
    """Write store ``z`` as one HDF5 file at ``out`` (atomically). Returns ``out``."""
    skel = StoreSkeleton.of(z)
    meta = skel.meta
    out = Path(out)
    with atomic_output(out) as tmp, h5py.File(tmp, "w") as f, \
            tqdm(total=_total_bytes(skel), unit="B", unit_scale=True, desc=f"export {out.name}",
                 disable=not progress) as bar:
        f.attrs["weightzoo_interchange"] = json.dumps({"format": FORMAT, "version": VERSION})
        f.attrs[ROOT_ATTR] = json.dumps(meta)
        f.attrs["zarr_json"] = json.dumps(skel.nodes[""])
        for path, doc in skel.nodes.items():
            if path == "":
                continue
            if doc.get("node_type") == "group":
                f.require_group(path).attrs["zarr_json"] = json.dumps(doc)
                continue
            shape, dtype = skel.shape(path), skel.dtype(path)
            chunks = tuple(min(c, s) for c, s in zip(skel.chunks(path), shape))
            chunked = bool(shape) and all(s > 0 for s in shape)
            ds = f.create_dataset(
                path, shape=shape, dtype=h5py.string_dtype("utf-8") if dtype == object else dtype,
                chunks=chunks if chunked else None, fletcher32=chunked and dtype != object,
                fillvalue=fill_value(doc, dtype))
            ds.attrs["zarr_json"] = json.dumps(doc)
            column = path.split("/", 1)[1] if path.startswith("models/") else None
            info = meta.get("columns", {}).get(column, {}) if column else {}
            if info.get("kind") == "category":
                ds.attrs["categories"] = json.dumps(info["categories"])
        for path in _copy_order(list(skel.arrays)):
            weights = path.split("/", 1)[1] if skel.role(path) == "weights" else None
            for sel in row_blocks(skel.shape(path), skel.dtype(path), skel.chunks(path)):
                # the store's checked reads: damaged chunks, and missing chunks of complete models, raise
                raw = z.read_weights(weights, sel) if weights is not None else z.read_array(path, sel)
                values = as_numpy(raw, skel.dtype(path))
                if values.size:
                    f[path][sel] = values
                bar.update(values.size * (8 if values.dtype == object else values.dtype.itemsize))
    return out


def _read_skeleton(f: h5py.File, src: Path) -> StoreSkeleton:
    parse_format_document(f.attrs.get("weightzoo_interchange"), FORMAT, VERSION,
                          f"{src}: root attribute 'weightzoo_interchange'")
    nodes: dict[str, dict] = {}

    def parse(path: str, attrs) -> dict:
        if "zarr_json" not in attrs:
            raise ZooError(f"{src}: node '/{path}' has no 'zarr_json' attribute")
        try:
            return json.loads(attrs["zarr_json"])
        except (TypeError, ValueError) as exc:
            raise ZooError(f"{src}: attribute 'zarr_json' of '/{path}' is not JSON ({exc})") from exc

    nodes[""] = parse("", f.attrs)
    f.visititems(lambda name, obj: nodes.__setitem__(name, parse(name, obj.attrs)))
    return StoreSkeleton.from_record({"nodes": nodes}, str(src))


def import_hdf5(src: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> Zoo:
    """Recreate the store exported to HDF5 file ``src`` at ``out`` (atomically)."""
    src = Path(src)
    if src.is_dir():
        raise ZooError(f"{src}: a directory, not an HDF5 file (hf and safetensors exports are directories: "
                       "--from hf or --from safetensors)")
    if not src.is_file():
        raise ZooError(f"{src}: no such HDF5 file")
    try:
        f = h5py.File(src, "r")
    except OSError as exc:
        raise ZooError(f"{src}: not a readable HDF5 file ({exc})") from exc
    with f:
        skel = _read_skeleton(f, src)
        with atomic_output(out) as tmp, tqdm(total=_total_bytes(skel), unit="B", unit_scale=True,
                                             desc=f"import {src.name}", disable=not progress) as bar:
            root = skel.create(tmp)
            for path in _copy_order(list(skel.arrays)):
                ds = f.get(path)
                if not isinstance(ds, h5py.Dataset):
                    raise ZooError(f"{src}: dataset '/{path}' is missing")
                if tuple(ds.shape) != skel.shape(path):
                    raise ZooError(f"{src}: dataset '/{path}' has shape {list(ds.shape)}, its zarr_json says "
                                   f"{list(skel.shape(path))}")
                dtype = skel.dtype(path)
                reader = ds.asstr() if dtype == object else ds
                for sel in row_blocks(skel.shape(path), dtype, skel.chunks(path)):
                    values = as_numpy(reader[sel], dtype)
                    if values.size:
                        root[path][sel] = values
                    bar.update(values.size * (8 if dtype == object else dtype.itemsize))
    return open_zoo(out)
