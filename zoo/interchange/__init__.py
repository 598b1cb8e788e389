"""Interchange formats: a store out to HDF5, a Hugging Face dataset or per-model safetensors files, and back.

``export_zoo(z, fmt, out)`` and ``import_zoo(src, fmt, out)`` round-trip every part of a store — models
table, weights at every checkpoint, metrics, curves, results, splits, normalisation statistics, root
attributes, landscape metrics, pair metrics and phase labels — exactly (see ``docs/INTERCHANGE.md``).
Each format carries the store's skeleton (every node's Zarr metadata) so the rebuilt store has the
same arrays, chunking and codecs; :func:`diff_stores` checks two stores for equality.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from zoo.errors import UnknownNameError
from zoo.interchange.compare import diff_stores
from zoo.interchange.hdf5 import export_hdf5, import_hdf5
from zoo.interchange.hf import export_hf, import_hf
from zoo.interchange.safetensors_files import export_safetensors, import_safetensors
from zoo.lock import store_lock
from zoo.store import Zoo, open_zoo

EXPORTERS: dict[str, Callable[..., Path]] = {
    "hdf5": export_hdf5,
    "hf": export_hf,
    "safetensors": export_safetensors,
}
IMPORTERS: dict[str, Callable[..., Zoo]] = {
    "hdf5": import_hdf5,
    "hf": import_hf,
    "safetensors": import_safetensors,
}
FORMATS = tuple(EXPORTERS)


def _check(fmt: str) -> None:
    if fmt not in EXPORTERS:
        raise UnknownNameError(f"unknown interchange format {fmt!r}; choose from {list(FORMATS)}")


def export_zoo(z: Zoo | str | os.PathLike, fmt: str, out: str | os.PathLike, progress: bool = True) -> Path:
    """Write store ``z`` (a :class:`Zoo` or its path) in format ``fmt`` (``hdf5``, ``hf``, ``safetensors``)
    at ``out``; the output appears only once complete."""
    _check(fmt)
    zoo_ = z if isinstance(z, Zoo) else open_zoo(z)
    return EXPORTERS[fmt](zoo_, out, progress=progress)


def import_zoo(src: str | os.PathLike, fmt: str, out: str | os.PathLike, progress: bool = True) -> Zoo:
    """Rebuild the store exported to ``src`` in format ``fmt`` at ``out`` (atomically); returns it, read-only."""
    _check(fmt)
    with store_lock(out):  # one writer of 'out' at a time (zoo.lock)
        return IMPORTERS[fmt](src, out, progress=progress)


__all__ = ["FORMATS", "export_zoo", "import_zoo", "diff_stores", "export_hdf5", "import_hdf5", "export_hf",
           "import_hf", "export_safetensors", "import_safetensors"]
