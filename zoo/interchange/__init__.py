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
from typing import Callable, NamedTuple

from kernels.registry import Registry
from zoo.errors import UnknownNameError
from zoo.interchange.compare import diff_stores
from zoo.interchange.hdf5 import export_hdf5, import_hdf5
from zoo.interchange.hf import export_hf, import_hf
from zoo.interchange.safetensors_files import export_safetensors, import_safetensors
from zoo.lock import store_lock
from zoo.store import Zoo, open_zoo


class InterchangeFormat(NamedTuple):
    """One round-trip format: ``export(zoo, out, progress=...) -> Path`` and
    ``import_(src, out, progress=...) -> Zoo``."""

    export: Callable[..., Path]
    import_: Callable[..., Zoo]


_FORMATS: Registry[InterchangeFormat] = Registry("interchange format", error=UnknownNameError)


def register_interchange_format(name: str, export: Callable[..., Path], import_: Callable[..., Zoo]) -> None:
    """Make ``weightzoo export --format name`` / ``import --from name`` (and :func:`export_zoo`) use
    ``export`` and ``import_``."""
    _FORMATS.register(name)(InterchangeFormat(export, import_))


def get_interchange_format(name: str) -> InterchangeFormat:
    """The format ``name``; :class:`~zoo.errors.UnknownNameError` listing the formats when there is none."""
    return _FORMATS.get(name)


def interchange_format_names() -> list[str]:
    """Registered round-trip formats, sorted."""
    return _FORMATS.names()


register_interchange_format("hdf5", export_hdf5, import_hdf5)
register_interchange_format("hf", export_hf, import_hf)
register_interchange_format("safetensors", export_safetensors, import_safetensors)
FORMATS = tuple(interchange_format_names())  # the built-in formats


def export_zoo(z: Zoo | str | os.PathLike, fmt: str, out: str | os.PathLike, progress: bool = True) -> Path:
    """Write store ``z`` (a :class:`Zoo` or its path) in format ``fmt`` (``hdf5``, ``hf``, ``safetensors``)
    at ``out``; the output appears only once complete."""
    export = get_interchange_format(fmt).export
    zoo_ = z if isinstance(z, Zoo) else open_zoo(z)
    return export(zoo_, out, progress=progress)


def import_zoo(src: str | os.PathLike, fmt: str, out: str | os.PathLike, progress: bool = True) -> Zoo:
    """Rebuild the store exported to ``src`` in format ``fmt`` at ``out`` (atomically); returns it, read-only."""
    import_ = get_interchange_format(fmt).import_
    with store_lock(out):  # one writer of 'out' at a time (zoo.lock)
        return import_(src, out, progress=progress)


__all__ = ["FORMATS", "InterchangeFormat", "register_interchange_format", "get_interchange_format",
           "interchange_format_names", "export_zoo", "import_zoo", "diff_stores", "export_hdf5", "import_hdf5", "export_hf",
           "import_hf", "export_safetensors", "import_safetensors"]
