"""safetensors: one file per model (the Model-J convention), plus a sidecar JSON for the zoo.

Directory layout::

    OUT/weightzoo.json                         zoo-level: store skeleton (root attributes, every node's
                                               Zarr metadata), zoo-level arrays (pair metrics), file index
    OUT/<arch_key>/model_<id:06d>.safetensors  one model

Tensors of a model file:

* ``ckpt_<epoch>/<parameter name>``: the weights at each stored checkpoint as the architecture's
  tensors (``ckpt_5/layers.0.weight`` is ``[width, in]`` at epoch 5), float32;
* its slice of every per-model store array, named by store path: ``results/status`` (int8 scalar),
  ``metrics/<name>`` ``[n_checkpoints]``, ``curves/train_loss`` ``[n_epochs]``, ``landscape/<name>``,
  ``splits/<name>``, ``phases/label``.

Header metadata (all strings): every planned models-table column under its own name
(``lr`` = ``"0.05"``, ``optimizer`` = ``"sgd"``, category columns as their labels, booleans
``"true"``/``"false"``, floats in their shortest exact text); the human labels ``status``, ``phase`` and
``split.<name>`` (``"train"``/``"val"``/``"test"``); ``results/record`` (the JSON record); and
``weightzoo.format``, ``weightzoo.model_id``, ``weightzoo.arch_key``, ``weightzoo.architecture``
(JSON: name, config, input shape, classes) and ``weightzoo.checkpoint_epochs`` (JSON list).

An interrupted export resumes: files already written (each atomically) are kept when the source
store has not changed since.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from kernels.layout import ParamLayout
from zoo.atomic import atomic_output
from zoo.errors import ZooError
from zoo.format import STATUS_NAMES
from zoo.interchange.columns import from_text, human_values, planned_array, planned_columns, to_text
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
from zoo.splits import SPLIT_CODES
from zoo.store import Zoo, open_zoo

FORMAT = "weightzoo-safetensors"
VERSION = 1
SIDECAR = "weightzoo.json"
RESUME = ".resume.json"
SPLIT_PARTS = {code: part for part, code in SPLIT_CODES.items()}


def checkpoint_prefix(epoch: int) -> str:
    return f"ckpt_{int(epoch)}"


def model_file(arch_key: str, model_id: int) -> str:
    return f"{arch_key}/model_{int(model_id):06d}.safetensors"


def _fingerprint(z: Zoo, skel: StoreSkeleton) -> str:
    """Changes when the store's structure or any model's status changes (what a resume must not miss)."""
    h = hashlib.blake2b(json.dumps(skel.to_record(), sort_keys=True).encode(), digest_size=16)
    h.update(np.ascontiguousarray(z.status_codes()).tobytes())
    return h.hexdigest()


def _labels(skel: StoreSkeleton, per_model: dict[str, np.ndarray], i: int) -> dict[str, str]:
    out = {"status": STATUS_NAMES.get(int(per_model["results/status"][i]), "unknown")}
    rule = skel.meta.get("phases")
    if rule is not None and "phases/label" in per_model:
        code = int(per_model["phases/label"][i])
        out["phase"] = str(rule["labels"][code]) if code >= 0 else ""
    for p in per_model:
        if p.startswith("splits/"):
            out[f"split.{p[len('splits/'):]}"] = SPLIT_PARTS.get(int(per_model[p][i]), "unknown")
    return out


def _model_file_content(skel: StoreSkeleton, per_model: dict[str, np.ndarray], human: dict[str, np.ndarray],
                        layouts: dict[str, ParamLayout], weights: np.ndarray, i: int) -> tuple[dict, dict]:
    meta = skel.meta
    key = str(human["arch_key"][i])
    arch = meta["architectures"][key]
    tensors: dict[str, torch.Tensor] = {}
    for c, epoch in enumerate(skel.checkpoint_epochs):
        for name, t in layouts[key].unflatten(torch.from_numpy(np.ascontiguousarray(weights[c]))).items():
            tensors[f"{checkpoint_prefix(epoch)}/{name}"] = t.contiguous()
    header: dict[str, str] = {}
    for p, values in per_model.items():
        if p.startswith("models/"):
            continue
        if values.dtype == object:
            header[p] = str(values[i])
        else:
            tensors[p] = torch.from_numpy(np.array(values[i], copy=True))
    for col in planned_columns(skel):
        header[col] = to_text(human[col][i])
    for k, v in _labels(skel, per_model, i).items():
        header.setdefault(k, v)
    header.update({
        "weightzoo.format": f"{FORMAT}/{VERSION}",
        "weightzoo.model_id": str(i),
        "weightzoo.arch_key": key,
        "weightzoo.architecture": json.dumps({k: arch[k] for k in ("name", "config", "input_shape", "n_classes")
                                              if k in arch}),
        "weightzoo.checkpoint_epochs": json.dumps(skel.checkpoint_epochs),
    })
    return tensors, header


def export_safetensors(z: Zoo, out: str | os.PathLike, progress: bool = True) -> Path:
    """Write store ``z`` as a directory of per-model safetensors files plus ``weightzoo.json``."""
    skel = StoreSkeleton.of(z)
    epochs = skel.checkpoint_epochs
    if len(set(epochs)) != len(epochs):
        raise ZooError(f"{z.path}: checkpoint epochs {epochs} repeat; per-checkpoint tensor names need unique epochs")
    out = Path(out)
    per_model = read_model_arrays(z, skel)
    human = {c: human_values(per_model[f"models/{c}"], skel, c) for c in planned_columns(skel)}
    layouts = {k: z.layout(k) for k in z.architectures}
    fingerprint = _fingerprint(z, skel)
    with atomic_output(out, stable=True) as tmp:
        resume = tmp / RESUME
        if tmp.exists():
            try:
                same = json.loads(resume.read_text()).get("fingerprint") == fingerprint
            except (OSError, ValueError):
                same = False
            if not same:  # the store changed since the interrupted export: start over
                shutil.rmtree(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        resume.write_text(json.dumps({"fingerprint": fingerprint, "source": str(z.path)}))
        readers = {k: RowReader(z, k) for k in z.architectures}
        files = {}
        for i in tqdm(range(z.n_models), desc=f"export {out.name}", unit="model", disable=not progress):
            key, row = str(human["arch_key"][i]), int(human["arch_row"][i])
            rel = model_file(key, i)
            files[str(i)] = rel
            target = tmp / rel
            if target.exists():
                continue
            tensors, header = _model_file_content(skel, per_model, human, layouts, readers[key].get(row), i)
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(f".{target.name}.partial")
            save_file(tensors, str(part), metadata=header)
            os.replace(part, target)
        sidecar = {"format": FORMAT, "version": VERSION, "skeleton": skel.to_record(),
                   "zoo_arrays": read_zoo_arrays(z, skel), "files": files}
        (tmp / SIDECAR).write_text(json.dumps(sidecar))
        resume.unlink()
    return out


def _read_sidecar(src: Path) -> dict:
    path = src / SIDECAR
    if not path.is_file():
        raise ZooError(f"{src}: no {SIDECAR}; not a weightzoo safetensors export "
                       "(to import plain per-model safetensors files use the 'safetensors-dir' importer)")
    doc = parse_format_document(path.read_text(), FORMAT, VERSION, str(path))
    return doc


def _tensor(f: Any, name: str, shape: tuple[int, ...], path: Path) -> torch.Tensor:
    if name not in f.keys():
        raise ZooError(f"{path}: tensor {name!r} is missing")
    t = f.get_tensor(name)
    if tuple(t.shape) != tuple(shape):
        raise ZooError(f"{path}: tensor {name!r} has shape {list(t.shape)}, expected {list(shape)}")
    return t


def import_safetensors(src: str | os.PathLike, out: str | os.PathLike, progress: bool = True) -> Zoo:
    """Rebuild a store at ``out`` from a directory written by :func:`export_safetensors`."""
    src = Path(src)
    doc = _read_sidecar(src)
    skel = StoreSkeleton.from_record(doc.get("skeleton"), str(src / SIDECAR))
    n, epochs = skel.n_models, skel.checkpoint_epochs
    files = doc.get("files", {})
    missing = [i for i in range(n) if str(i) not in files]
    if missing:
        raise ZooError(f"{src / SIDECAR}: field 'files' lists no file for models {missing[:10]}")
    layouts = {k: ParamLayout.from_record(a["layout"]) for k, a in skel.meta["architectures"].items()}
    arrays = [p for p in skel.paths("model") if not p.startswith("models/")]
    values = {p: np.empty(skel.shape(p), dtype=skel.dtype(p)) for p in arrays}
    planned = {c: [None] * n for c in planned_columns(skel)}
    with atomic_output(out) as tmp:
        root = skel.create(tmp)
        writers = {k: RowWriter(root[f"weights/{k}"]) for k in layouts}
        for i in tqdm(range(n), desc=f"import {src.name}", unit="model", disable=not progress):
            path = src / files[str(i)]
            if not path.is_file():
                raise ZooError(f"{path}: model file is missing (listed for model {i} in {SIDECAR})")
            try:
                f = safe_open(str(path), framework="pt")
            except (SafetensorError, OSError) as exc:
                raise ZooError(f"{path}: not a readable safetensors file ({exc})") from exc
            with f:
                header = f.metadata() or {}
                if header.get("weightzoo.model_id") != str(i):
                    raise ZooError(f"{path}: header 'weightzoo.model_id' is {header.get('weightzoo.model_id')!r}, "
                                   f"expected '{i}'")
                for col in planned:
                    if col not in header:
                        raise ZooError(f"{path}: header field {col!r} is missing")
                    planned[col][i] = from_text(header[col], skel, col, str(path))
                for p in arrays:
                    if skel.dtype(p) == object:
                        if p not in header:
                            raise ZooError(f"{path}: header field {p!r} is missing")
                        values[p][i] = header[p]
                    else:
                        values[p][i] = _tensor(f, p, skel.shape(p)[1:], path).numpy()
                key, row = str(planned["arch_key"][i]), int(planned["arch_row"][i])
                if key not in layouts:
                    raise ZooError(f"{path}: header 'arch_key' is {key!r}, not among {sorted(layouts)}")
                layout = layouts[key]
                per_checkpoint = {e.name: torch.stack([_tensor(f, f"{checkpoint_prefix(epoch)}/{e.name}", e.shape, path)
                                                       for epoch in epochs]) for e in layout.entries}
                writers[key].put(row, layout.flatten(per_checkpoint, batch_dims=1).numpy())
        for w in writers.values():
            w.flush()
        for col, vals in planned.items():
            values[f"models/{col}"] = planned_array(vals, skel, col, str(src))
        write_zoo_arrays(root, skel, doc.get("zoo_arrays", {}), str(src / SIDECAR))
        write_model_arrays(root, values)
    return open_zoo(out)
