"""Where named zoos live on disk, and offline mode.

Cache directory: the ``root`` argument, else ``$WEIGHTZOO_CACHE``, else ``$XDG_CACHE_HOME/weightzoo``,
else ``~/.cache/weightzoo``. Inside it every zoo has a folder ``<name>/`` holding

- ``<sha256[:16]>.zarr.zip`` — a downloaded zipped store (opened in place), or
- ``<sha256[:16]>.zarr/`` — a downloaded directory store, unpacked from its ``.zarr.tar``, or
- ``built.zarr/`` — the zoo regenerated from its recipe (``--build``),

and hidden working files (``.<file>.part`` downloads, ``.lock`` files, ``.built.zarr.building``).
A path without a leading dot is complete: everything is renamed into place only once verified.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.catalog import CatalogEntry

CACHE_ENV = "WEIGHTZOO_CACHE"
OFFLINE_ENV = "WEIGHTZOO_OFFLINE"
BUILT_NAME = "built.zarr"


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``root`` > ``$WEIGHTZOO_CACHE`` > ``$XDG_CACHE_HOME/weightzoo`` > ``~/.cache/weightzoo``."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "weightzoo"
    return Path.home() / ".cache" / "weightzoo"


def offline_mode() -> bool:
    """True when ``$WEIGHTZOO_OFFLINE`` is set to 1/true/yes/on: use the cache only, never the network."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def zoo_dir(entry: CatalogEntry, root: str | os.PathLike | None = None) -> Path:
    """The folder of one named zoo in the cache."""
    return cache_dir(root) / entry.name


def archive_path(entry: CatalogEntry, root: str | os.PathLike | None = None) -> Path | None:
    """Where the verified archive of ``entry`` is stored (None for entries without a sha256)."""
    if entry.sha256 is None:
        return None
    return zoo_dir(entry, root) / f"{entry.sha256[:16]}{entry.archive_suffix}"


def downloaded_store(entry: CatalogEntry, root: str | os.PathLike | None = None) -> Path | None:
    """The path ``zoo.open`` takes for the downloaded copy: the zip itself, or the unpacked directory."""
    archive = archive_path(entry, root)
    if archive is None:
        return None
    return archive if entry.format == "zarr.zip" else archive.with_name(f"{entry.sha256[:16]}.zarr")


def built_store(entry: CatalogEntry, root: str | os.PathLike | None = None) -> Path:
    """Where ``--build`` puts the zoo regenerated from the entry's recipe."""
    return zoo_dir(entry, root) / BUILT_NAME


def cached_store(entry: CatalogEntry, root: str | os.PathLike | None = None) -> Path | None:
    """The complete copy of ``entry`` in the cache (the verified download first, then a built one), or None."""
    for path in (downloaded_store(entry, root), built_store(entry, root)):
        if path is not None and path.exists():
            return path
    return None
