"""Importers for public model-zoo formats, by name (``weightzoo import --from NAME SRC --out STORE``).

* ``modelzoos`` — Ray Tune trial directories of the Model Zoos and Phase-Transition Model Zoo releases;
* ``smallcnnzoo`` — the Small CNN Zoo (``weights.npy``, ``metrics.csv``, ``layout.csv``);
* ``safetensors-dir`` — a tree of per-model safetensors files with header metadata (Model-J).

Every importer maps what it finds into the models table and keeps what it does not understand as
extra columns, rebuilds the source architecture as a registered one, reads only tensors (never
unpickles objects, never evaluates strings), and builds the store atomically (see ``docs/INTERCHANGE.md``).
"""

from __future__ import annotations

import os
from typing import Callable

from zoo.errors import UnknownNameError
from zoo.importers.modelzoos import import_modelzoos
from zoo.importers.safetensors_dir import import_safetensors_dir
from zoo.importers.smallcnnzoo import import_smallcnnzoo
from zoo.store import Zoo

IMPORTERS: dict[str, Callable[..., Zoo]] = {
    "modelzoos": import_modelzoos,
    "smallcnnzoo": import_smallcnnzoo,
    "safetensors-dir": import_safetensors_dir,
}


def importer_names() -> list[str]:
    return list(IMPORTERS)


def import_public(src: str | os.PathLike, fmt: str, out: str | os.PathLike, progress: bool = True) -> Zoo:
    """Import a public zoo in format ``fmt`` (see :data:`IMPORTERS`) from ``src`` into a new store ``out``."""
    if fmt not in IMPORTERS:
        raise UnknownNameError(f"unknown importer {fmt!r}; choose from {importer_names()}")
    return IMPORTERS[fmt](src, out, progress=progress)


__all__ = ["IMPORTERS", "importer_names", "import_public", "import_modelzoos", "import_smallcnnzoo",
           "import_safetensors_dir"]
