"""Errors raised by weightzoo. Each names the file, field or shape that is wrong."""

from __future__ import annotations

from kernels.errors import LayoutMismatchError
from kernels.errors import UnknownNameError as UnknownKernelName


class ZooError(Exception):
    """Base class of every weightzoo error."""


class NotAZooError(ZooError):
    """The path exists (or not) but holds no weightzoo store."""


class FormatVersionError(ZooError):
    """The store was written by a newer weightzoo format than this version can read."""


class CorruptChunkError(ZooError):
    """A chunk of a store is missing or fails its checksum."""


class ArchitectureMismatchError(ZooError, LayoutMismatchError):
    """Weights do not fit an architecture: a parameter's name or shape differs. A
    :class:`kernels.errors.LayoutMismatchError` (what the layout itself raises) that the store adds its
    path and model to."""


class SpecError(ZooError):
    """A generation spec is invalid; the message names the field."""


class UnknownNameError(SpecError, UnknownKernelName):
    """A name that no registry knows: an unknown architecture, task source, importer, optimiser, ...
    (the message lists the registered names)."""

    __str__ = UnknownKernelName.__str__


class CatalogError(SpecError):
    """A zoo catalog file or entry is invalid, or a name is not in the catalog; the message names the
    file, the entry and the field."""


class DownloadError(ZooError):
    """A zoo archive could not be fetched from any mirror (each mirror's failure is listed)."""


class ChecksumError(DownloadError):
    """A downloaded archive has the wrong size or sha256; nothing of it is kept in the cache."""


class OfflineError(ZooError):
    """Offline mode (``WEIGHTZOO_OFFLINE=1``) is on and the zoo is not in the cache."""
