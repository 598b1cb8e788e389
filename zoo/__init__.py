"""weightzoo's dataset side: the zoo store, architectures, tasks, datasets, splits and augmentations,
and named zoos (``zoo.load(name)``: catalog, download, cache).

``import zoo`` never imports the training code (``generators``) or Lightning.
"""

from __future__ import annotations

from kernels.layout import ParamEntry, ParamLayout, PermAxis
from zoo.architectures import (
    architecture_names,
    build_architecture,
    layout_of,
    load_flat_weights,
    register_architecture,
)
from zoo.batch_loader import ZooBatchLoader
from zoo.catalog import CatalogEntry, load_catalog
from zoo.dataset import ZooDataset, norm_stats
from zoo.errors import (
    ArchitectureMismatchError,
    CatalogError,
    ChecksumError,
    CorruptChunkError,
    DownloadError,
    FormatVersionError,
    NotAZooError,
    OfflineError,
    SpecError,
    StoreLockedError,
    UnknownNameError,
    ZooError,
)
from zoo.format import FORMAT_VERSION
from zoo.loader import load
from zoo.store import Zoo, create_zoo, open_zoo
from zoo.tasks import TaskData, build_task, task_source_names
from zoo.trees import class_multi_hot
from zoo.version import __version__

open = open_zoo  # noqa: A001 - the public name is zoo.open(path)

__all__ = [
    "__version__", "FORMAT_VERSION", "Zoo", "open", "open_zoo", "create_zoo", "ParamLayout", "ParamEntry",
    "PermAxis", "architecture_names", "build_architecture", "layout_of", "load_flat_weights",
    "register_architecture", "ZooError", "NotAZooError", "FormatVersionError", "CorruptChunkError",
    "ArchitectureMismatchError", "SpecError", "UnknownNameError", "ZooDataset", "ZooBatchLoader", "norm_stats",
    "TaskData",
    "build_task", "task_source_names", "load", "load_catalog", "CatalogEntry", "CatalogError", "DownloadError",
    "ChecksumError", "OfflineError", "StoreLockedError",
    "class_multi_hot",
]
