"""``zoo.load(name)``: a named zoo from the cache, downloaded from its mirrors, or rebuilt from its recipe.

Order: a complete copy in the cache is opened as it is; else (unless offline) the mirrors are tried
in order; else, with ``build=True``, the zoo is regenerated from its recipe. Everything runs under
one lock per zoo, so concurrent loads of one zoo download or build it once.

Rebuilding trains models, which is not this package's job: a *recipe builder* does it. The training
package registers its builder ``"generate"`` when it is imported (``import generators``; the CLI does
it), or a caller passes ``builder=`` to :func:`load`. ``zoo`` itself never imports the training code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from kernels.registry import Registry
from zoo.archive import unpack_tar
from zoo.cache import (
    OFFLINE_ENV,
    archive_path,
    built_store,
    cache_dir,
    cached_store,
    downloaded_store,
    offline_mode,
    zoo_dir,
)
from zoo.catalog import Catalog, CatalogEntry, load_catalog
from zoo.download import fetch_first, file_lock
from zoo.errors import DownloadError, OfflineError, SpecError, UnknownNameError, ZooError
from zoo.store import Zoo, open_zoo

CatalogArg = Catalog | str | os.PathLike | Sequence[str | os.PathLike] | None

#: ``builder(spec, out, *, progress) -> Zoo``: trains the zoo of a recipe's ``spec`` into ``out``
#: (resuming what is there); ``spec`` is a shipped spec name or an inline spec mapping.
RecipeBuilder = Callable[..., Zoo]
DEFAULT_BUILDER = "generate"
_BUILDERS: Registry[RecipeBuilder] = Registry("recipe builder", error=UnknownNameError)
register_recipe_builder = _BUILDERS.register
get_recipe_builder = _BUILDERS.get
recipe_builder_names = _BUILDERS.names


def load(name: str, root: str | os.PathLike | None = None, download: bool = True, *, catalog: CatalogArg = None,
         build: bool = False, builder: RecipeBuilder | None = None, progress: bool = True) -> Zoo:
    """Open the named zoo (read-only), fetching it into the cache first if needed.

    ``root`` is the cache directory (default: ``$WEIGHTZOO_CACHE``, ``$XDG_CACHE_HOME/weightzoo`` or
    ``~/.cache/weightzoo``). ``download=False`` uses the cache only. ``catalog`` adds user catalog
    files (or is a :class:`Catalog`). ``build=True`` regenerates the zoo from its recipe when no mirror
    delivers it (at once when the entry has no mirrors), with ``builder`` or the registered recipe
    builder (``import generators`` registers ``"generate"``). With ``WEIGHTZOO_OFFLINE=1`` no mirror is
    contacted.

    Raises:
        CatalogError: ``name`` is not in the catalog. OfflineError, DownloadError, ChecksumError: the zoo
        could not be fetched. ZooError: ``build=True`` but no recipe builder is registered.
    """
    entry = resolve_entry(name, catalog)
    return open_zoo(ensure_local(entry, root, download=download, build=build, builder=builder, progress=progress))


def resolve_entry(name: str, catalog: CatalogArg = None) -> CatalogEntry:
    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    return cat[name]


def ensure_local(entry: CatalogEntry, root: str | os.PathLike | None = None, *, download: bool = True,
                 build: bool = False, builder: RecipeBuilder | None = None, progress: bool = True) -> Path:
    """The path of a complete local copy of ``entry`` (zip file or directory), fetching or building it."""
    found = cached_store(entry, root)
    if found is not None:
        return found
    offline = offline_mode()
    if offline and not (build and entry.recipe is not None):
        raise OfflineError(f"offline mode is on ({OFFLINE_ENV}={os.environ.get(OFFLINE_ENV)}) and zoo {entry.name!r} "
                           f"is not in the cache {cache_dir(root)}. To get it: " + "; or ".join(_ways_to_get(entry, root)))
    if not download and not build:
        raise ZooError(f"zoo {entry.name!r} is not in the cache {cache_dir(root)}; load it with download=True "
                       f"(or run 'weightzoo download {entry.name}')")
    folder = zoo_dir(entry, root)
    folder.mkdir(parents=True, exist_ok=True)
    with file_lock(folder / ".lock", f"fetching zoo {entry.name!r}"):
        found = cached_store(entry, root)  # another process may have finished while we waited
        if found is not None:
            return found
        failure: DownloadError | None = None
        if download and not offline and entry.mirrors:
            try:
                return _download(entry, root, progress)
            except DownloadError as exc:
                failure = exc
        if build and entry.recipe is not None:
            return build_from_recipe(entry, root, builder=builder, progress=progress)
        raise _unavailable(entry, failure, build=build)


def _ways_to_get(entry: CatalogEntry, root: str | os.PathLike | None) -> list[str]:
    """What can bring ``entry`` into the cache while offline, only the ways that can work for it."""
    ways = []
    if entry.recipe is not None:  # rebuilding needs no network (the recipe's data sources ship with weightzoo)
        ways.append(f"regenerate it locally with 'weightzoo download {entry.name} --build' "
                    f"(or zoo.load({entry.name!r}, build=True))")
    if entry.mirrors:
        ways.append(f"unset {OFFLINE_ENV} and run 'weightzoo download {entry.name}' (or zoo.load({entry.name!r}))")
    ways.append(f"copy a cache folder '{entry.name}/' from another machine into {cache_dir(root)}")
    return ways


def _unavailable(entry: CatalogEntry, failure: DownloadError | None, *, build: bool) -> ZooError:
    rebuild = (f"; regenerate it from its recipe with 'weightzoo download {entry.name} --build' "
               f"(or zoo.load({entry.name!r}, build=True))") if entry.recipe is not None else ""
    if failure is not None:
        if build:  # build was asked for but there is no recipe
            return DownloadError(f"{failure}\nand zoo {entry.name!r} has no recipe to rebuild it from")
        return DownloadError(f"{failure}{rebuild}")
    if not entry.mirrors:
        return DownloadError(f"zoo {entry.name!r} ({entry.source}) has no download mirrors yet{rebuild}")
    return DownloadError(f"zoo {entry.name!r} was not downloaded (download=False){rebuild}")


def _download(entry: CatalogEntry, root: str | os.PathLike | None, progress: bool) -> Path:
    """Fetch the archive; a ``zarr.tar`` is then unpacked (atomically) and deleted."""
    archive = archive_path(entry, root)
    store = downloaded_store(entry, root)
    assert archive is not None and store is not None and entry.sha256 is not None  # validated: mirrors need sha256
    fetch_first(entry.mirrors, archive, sha256=entry.sha256, size=entry.size, progress=progress)  # no-op if there
    if entry.format == "zarr.tar":
        unpack_tar(archive, store)
        archive.unlink()
    return store


def _builder(entry: CatalogEntry, builder: RecipeBuilder | None) -> RecipeBuilder:
    if builder is not None:
        return builder
    if DEFAULT_BUILDER not in recipe_builder_names():
        raise ZooError(f"rebuilding zoo {entry.name!r} from its recipe trains models, which needs the training code: "
                       f"'import generators' first (it registers the recipe builder {DEFAULT_BUILDER!r}), pass "
                       "builder=..., or run 'weightzoo download NAME --build'")
    return get_recipe_builder(DEFAULT_BUILDER)


def build_from_recipe(entry: CatalogEntry, root: str | os.PathLike | None = None, *,
                      builder: RecipeBuilder | None = None, progress: bool = True) -> Path:
    """Regenerate ``entry`` from its recipe into the cache with ``builder`` (default: the registered
    ``"generate"`` builder); returns ``<cache>/<name>/built.zarr``.

    Training runs in ``.built.zarr.building`` (an interrupted build resumes there) and the store is
    renamed to ``built.zarr`` only when every model is complete.
    """
    if entry.recipe is None:
        raise ZooError(f"zoo {entry.name!r} ({entry.source}) has no recipe to rebuild it from")
    generate = _builder(entry, builder)
    final = built_store(entry, root)
    work = final.with_name(f".{final.name}.building")
    try:
        z = generate(entry.recipe["spec"], work, progress=progress)
    except SpecError as exc:
        raise SpecError(f"{entry.source}: zoo {entry.name!r}: field 'recipe.spec': {exc}") from exc
    pending = z.status_counts()["pending"]
    if pending:
        raise ZooError(f"building zoo {entry.name!r}: {pending} models are still pending in {work}; rerun to resume")
    del z
    os.replace(work, final)
    return final

