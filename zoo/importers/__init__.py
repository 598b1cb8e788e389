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

from kernels.registry import Registry
from zoo.errors import UnknownNameError
from zoo.importers.modelzoos import import_modelzoos
from zoo.importers.safetensors_dir import import_safetensors_dir
from zoo.importers.smallcnnzoo import import_smallcnnzoo
from zoo.store import Zoo

_IMPORTERS: Registry[Callable[..., Zoo]] = Registry("public zoo importer", error=UnknownNameError)


def register_zoo_importer(name: str) -> Callable[[Callable[..., Zoo]], Callable[..., Zoo]]:
    """Decorator: ``importer(src, out, progress=...) -> Zoo`` becomes ``weightzoo import --from name``."""
    return _IMPORTERS.register(name)


def get_zoo_importer(name: str) -> Callable[..., Zoo]:
    """The importer ``name``; :class:`~zoo.errors.UnknownNameError` listing the importers when there is none."""
    return _IMPORTERS.get(name)


def zoo_importer_names() -> list[str]:
    """Registered public-zoo importers, sorted."""
    return _IMPORTERS.names()


register_zoo_importer("modelzoos")(import_modelzoos)
register_zoo_importer("smallcnnzoo")(import_smallcnnzoo)
register_zoo_importer("safetensors-dir")(import_safetensors_dir)


def import_public(src: str | os.PathLike, fmt: str, out: str | os.PathLike, progress: bool = True) -> Zoo:
    """Import a public zoo in format ``fmt`` (see :func:`zoo_importer_names`) from ``src`` into a new
    store ``out``. Raises :class:`~zoo.errors.UnknownNameError` for an unknown ``fmt``."""
    return get_zoo_importer(fmt)(src, out, progress=progress)


__all__ = ["register_zoo_importer", "get_zoo_importer", "zoo_importer_names", "import_public", "import_modelzoos", "import_smallcnnzoo",
           "import_safetensors_dir"]
