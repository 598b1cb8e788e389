"""Importer for a directory tree of per-model safetensors files with header metadata (the Model-J
convention of Horwitz et al. 2025: one ``model.safetensors`` per model, labels and hyperparameters as
strings in the header).

* Files: every ``*.safetensors`` below the source (sorted by path; hidden directories skipped), read
  with ``safetensors`` (no pickle). Each file is one model with one checkpoint; its epoch is the header
  field ``epoch`` when every file has the same one, else ``-1`` (unknown).
* Models table: every header key becomes a column (values that all parse as integers or floats get
  that type, missing ones NaN; ``true``/``false`` in every file become booleans; the rest stay strings,
  missing ones ``""``; strings are never evaluated), plus ``file``
  (path relative to the source) and ``source_dtype``. Tensors are stored as float32.
* Architectures: files are grouped by signature (parameter names and shapes). A group becomes a
  registered architecture when (a) its header names one (``weightzoo.architecture``, as weightzoo's own
  export writes) whose layout matches, or (b) its names and shapes are those of ``mlp``
  (``layers.<i>.weight/bias``, equal hidden widths) or ``cnn2d`` (``convs.<i>``, ``fc1``, ``fc2``; a
  square input size solved from the shapes). The activation comes from the header field
  ``activation`` (else the architecture's default, recorded under ``import.assumed``). Other groups get
  a generic layout (file order, layers by name prefix): their weights can be read and learned on, and
  ``Zoo.build_model`` explains that they cannot be rebuilt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors import SafetensorError, safe_open

from kernels.errors import LayoutMismatchError
from kernels.layout import ParamLayout
from zoo.architectures import ACTIVATIONS, architecture_names, architecture_record
from zoo.errors import ZooError
from zoo.importers.build import (
    ImportPlan,
    ModelResult,
    build_store,
    classify,
    fingerprint_files,
    generic_architecture,
)
from zoo.store import Zoo

Signature = tuple[tuple[str, tuple[int, ...]], ...]
RESERVED_PREFIX = "weightzoo."


class _File:
    def __init__(self, path: Path, root: Path) -> None:
        self.path, self.rel = path, str(path.relative_to(root))
        try:
            with safe_open(str(path), framework="pt") as f:
                self.header = dict(f.metadata() or {})
                self.names = list(f.keys())
                self.shapes = {k: tuple(int(s) for s in f.get_slice(k).get_shape()) for k in self.names}
                self.dtypes = sorted({str(f.get_slice(k).get_dtype()) for k in self.names})
        except (SafetensorError, OSError) as exc:
            raise ZooError(f"{path}: not a readable safetensors file ({exc})") from exc
        if not self.names:
            raise ZooError(f"{path}: holds no tensors")

    @property
    def signature(self) -> Signature:
        return tuple(sorted(self.shapes.items()))


def _typed(values: list[str | None]) -> list[Any]:
    present = [v for v in values if v is not None]

    def all_parse(kind: type) -> bool:
        try:
            [kind(v) for v in present]
            return True
        except ValueError:
            return False

    if present and len(present) == len(values) and all(v in ("true", "false", "True", "False") for v in present):
        return [v.lower() == "true" for v in values]  # with gaps, booleans stay text (no missing bool)
    if present and all_parse(int):
        return [None if v is None else int(v) for v in values] if None not in values else \
            [np.nan if v is None else float(int(v)) for v in values]
    if present and all_parse(float):
        return [np.nan if v is None else float(v) for v in values]
    return ["" if v is None else v for v in values]


def _from_header(f: _File) -> tuple[str, dict, list[int], int] | None:
    text = f.header.get("weightzoo.architecture")
    if text is None:
        return None
    try:
        arch = json.loads(text)
        return str(arch["name"]), dict(arch["config"]), list(arch["input_shape"]), int(arch["n_classes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ZooError(f"{f.path}: header field 'weightzoo.architecture' is not an architecture record ({exc})") from exc


def _infer_mlp(shapes: dict[str, tuple[int, ...]]) -> tuple[str, dict, list[int], int] | None:
    n = len(shapes) // 2
    names = {f"layers.{i}.{p}" for i in range(n) for p in ("weight", "bias")}
    if n < 1 or set(shapes) != names:
        return None
    ws = [shapes[f"layers.{i}.weight"] for i in range(n)]
    hidden = {w[0] for w in ws[:-1]}
    if any(len(w) != 2 for w in ws) or len(hidden) > 1:
        return None
    return "mlp", {"width": int(ws[0][0]) if n > 1 else 32, "depth": n - 1}, [int(ws[0][1])], int(ws[-1][0])


def _infer_cnn2d(shapes: dict[str, tuple[int, ...]], header: dict) -> tuple[str, dict, list[int], int] | None:
    n = (len(shapes) - 4) // 2
    names = {f"convs.{i}.{p}" for i in range(n) for p in ("weight", "bias")} | {
        f"fc{j}.{p}" for j in (1, 2) for p in ("weight", "bias")}
    if n < 1 or set(shapes) != names:
        return None
    convs = [shapes[f"convs.{i}.weight"] for i in range(n)]
    if any(len(w) != 4 or w[2] != w[3] for w in convs):
        return None
    try:
        pools = [int(p) for p in json.loads(header["pools"])] if "pools" in header else ([2, 2, 1] if n == 3 else [2] * n)
    except (ValueError, TypeError):
        return None
    channels, kernels = [int(w[0]) for w in convs], [int(w[2]) for w in convs]
    fc_in = shapes["fc1.weight"][1]
    for side in range(1, 1025):  # smallest square input whose flattened conv output feeds fc1
        h = side
        for k, p in zip(kernels, pools):
            h = (h - k + 1) // p if h >= k else 0
        if h > 0 and channels[-1] * h * h == fc_in:
            config = {"channels": channels, "kernels": kernels, "pools": pools, "hidden": int(shapes["fc1.weight"][0])}
            return "cnn2d", config, [int(convs[0][1]), side, side], int(shapes["fc2.weight"][0])
    return None


def _architecture(files: list[_File], source: str) -> tuple[str, dict, ParamLayout, dict]:
    """``(arch_key, record, layout, assumed)`` for a group of files with one signature."""
    first = files[0]
    found = _from_header(first) or _infer_mlp(first.shapes) or _infer_cnn2d(first.shapes, first.header)
    assumed: dict[str, Any] = {}
    if found is not None:
        name, config, input_shape, n_classes = found
        if name in ("mlp", "cnn2d") and "activation" not in config:
            act = first.header.get("activation")
            if act in ACTIVATIONS:
                config["activation"] = act
            else:
                config["activation"] = "relu" if name == "mlp" else "tanh"
                assumed["activation"] = config["activation"]
        if name in architecture_names():
            key, record = architecture_record(name, input_shape, n_classes, config)
            layout = ParamLayout.from_record(record["layout"])
            if {e.name: e.shape for e in layout.entries} == first.shapes:
                return key, record, layout, assumed
    key, record, layout = generic_architecture([(n, first.shapes[n]) for n in first.names], source)
    return key, record, layout, {}


def import_safetensors_dir(src: str | Path, out: str | Path, progress: bool = True) -> Zoo:
    """Import every ``*.safetensors`` file below ``src`` (one model each) into a new store at ``out``."""
    src = Path(src)
    if not src.is_dir():
        raise ZooError(f"{src}: not a directory")
    if (src / "weightzoo.json").is_file():
        raise ZooError(f"{src}: is a weightzoo safetensors export (it has weightzoo.json); import it with "
                       "format 'safetensors' to restore the store exactly")
    paths = sorted(p for p in src.rglob("*.safetensors")
                   if not any(part.startswith(".") for part in p.relative_to(src).parts))
    if not paths:
        raise ZooError(f"{src}: no .safetensors files found")
    files = [_File(p, src) for p in paths]
    groups: dict[Signature, list[_File]] = {}
    for f in files:
        groups.setdefault(f.signature, []).append(f)
    archs, layouts, arch_of, assumed = {}, {}, {}, {}
    for sig, members in groups.items():
        key, record, layout, guess = _architecture(members, str(src))
        archs[key], layouts[key] = record, layout
        if guess:
            assumed[key] = guess
        for f in members:
            arch_of[f.rel] = key
    keys = sorted({k for f in files for k in f.header if not k.startswith(RESERVED_PREFIX)})
    table = {"model_id": np.arange(len(files)), "arch_key": [arch_of[f.rel] for f in files], "task": "unknown",
             "architecture": [archs[arch_of[f.rel]]["name"] for f in files], "file": [f.rel for f in files],
             "source_dtype": [",".join(f.dtypes) for f in files]}
    for k in keys:
        column = k if k not in table else f"meta.{k}"
        table[column] = _typed([f.header.get(k) for f in files])
    epochs = {f.header.get("epoch") for f in files}
    epoch = int(epochs.pop()) if len(epochs) == 1 and str(next(iter(epochs), "")).lstrip("-").isdigit() else -1
    plan = ImportPlan(
        importer="safetensors-dir", source=str(src), models=pd.DataFrame(table), architectures=archs,
        tasks={"unknown": {"source": "imported", "importer": "safetensors-dir",
                           "note": "the files carry no task data"}},
        checkpoint_epochs=[epoch], metric_names=[], n_epochs=max(epoch, 1), attrs={"assumed": assumed},
        fingerprint=fingerprint_files(paths))

    def load(i: int) -> ModelResult:
        f = files[i]
        layout = layouts[arch_of[f.rel]]
        try:
            with safe_open(str(f.path), framework="pt") as h:
                flat = layout.flatten({name: h.get_tensor(name).float() for name in h.keys()}).numpy()[None]
        except (SafetensorError, OSError) as exc:
            raise ZooError(f"{f.path}: not a readable safetensors file ({exc})") from exc
        except LayoutMismatchError as exc:
            raise ZooError(f"{f.path}: {exc}") from exc
        status, record = classify(flat, [], None, plan.checkpoint_epochs)
        return ModelResult(weights=flat, status=status, record={**record, "file": f.rel})

    return build_store(plan, out, load, progress=progress)
