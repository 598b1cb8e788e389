"""Errors raised by weightzoo. Each names the file, field or shape that is wrong."""

from __future__ import annotations

import zipfile
import zlib

from kernels.errors import KernelError, LayoutMismatchError
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


class StoreLockedError(ZooError):
    """Another process is writing the store (``zoo.lock``); the message names it (pid, host, command,
    since when)."""


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


#: Exceptions that reading damaged store data raises below weightzoo: a failed CRC32C (zarr's ValueError),
#: an undecodable chunk (numcodecs' RuntimeError), a bad zip member CRC or a truncated zip (zipfile),
#: a damaged deflate stream (zlib) and a file that ends early (EOFError). ValueError and RuntimeError
#: count only with a message :func:`is_corruption_message` recognises.
CORRUPTION_ERRORS = (ValueError, RuntimeError, zipfile.BadZipFile, zlib.error, EOFError)

_CORRUPTION_WORDS = ("checksum", "crc", "decompress", "corrupt", "truncated", "invalid input data",
                     "buffer size", "cannot reshape", "unexpected end")


def is_corruption_message(message: str) -> bool:
    """True when an error message from zarr or a codec says that stored bytes are damaged."""
    text = message.lower()
    return any(w in text for w in _CORRUPTION_WORDS)


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most ``limit`` characters (for one-line errors)."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def user_error(exc: BaseException | None) -> "ZooError | KernelError | None":
    """The :class:`ZooError` or :class:`kernels.errors.KernelError` that ``exc`` is or was raised from
    (following ``__cause__`` / ``__context__``: libraries that run weightzoo code, such as ``datasets``
    or Ray, re-raise its errors wrapped), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (ZooError, KernelError)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
