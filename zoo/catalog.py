"""The catalog of named zoos: what each is, where its archive lives and how to regenerate it.

A catalog is a JSON file (format in ``docs/ZOOS.md``)::

    {"catalog_version": 1,
     "zoos": [{"name": "demo", "description": "...", "license": "Apache-2.0",
               "recipe": {"spec": "demo"}, "format": "zarr.zip",
               "mirrors": ["https://.../demo.zarr.zip", "hf://datasets/org/repo/demo.zarr.zip"],
               "sha256": "<64 hex digits>", "size": 123456}]}

The built-in catalog ships with the package (``zoo/data/catalog.json``). User catalogs are added
with ``zoo.load(..., catalog=PATH)`` / ``--catalog PATH`` or the environment variable
``WEIGHTZOO_CATALOG`` (several files separated by ``os.pathsep``). Files are read in the order
built-in, environment, argument; a later entry with the same name replaces an earlier one and a
:class:`CatalogOverrideWarning` says which file won.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from zoo.errors import CatalogError

CATALOG_VERSION = 1
CATALOG_ENV = "WEIGHTZOO_CATALOG"
BUILTIN_CATALOG = Path(__file__).parent / "data" / "catalog.json"
BUILTIN_SOURCE = "<built-in catalog>"

# zarr.zip: the zipped store, read in place; zarr.tar: a tar (optionally gzip) of one *.zarr directory.
ARCHIVE_FORMATS = ("zarr.zip", "zarr.tar")
MIRROR_SCHEMES = ("http://", "https://", "hf://")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("name", "description", "license", "recipe", "format", "mirrors", "sha256", "size", "homepage",
           "citation")


class CatalogOverrideWarning(UserWarning):
    """A catalog entry replaced an earlier entry of the same name."""


@dataclass(frozen=True)
class CatalogEntry:
    """One named zoo.

    ``recipe`` is ``{"spec": <shipped spec name or inline spec mapping>}`` (what ``weightzoo generate``
    takes) or None; ``mirrors`` are archive URLs tried in order; ``sha256`` and ``size`` (bytes) describe
    the archive and are required whenever there are mirrors. ``source`` is the catalog file it came from.
    """

    name: str
    description: str
    license: str
    recipe: dict | None = None
    format: str = "zarr.zip"
    mirrors: tuple[str, ...] = ()
    sha256: str | None = None
    size: int | None = None
    homepage: str | None = None
    citation: str | None = None
    source: str = field(default=BUILTIN_SOURCE, compare=False)

    @classmethod
    def from_record(cls, record: Any, *, source: str = "<record>", where: str = "entry") -> "CatalogEntry":
        """Validate one catalog record; errors name ``source`` (the file), the entry and the field."""
        if not isinstance(record, Mapping):
            raise CatalogError(f"{source}: {where}: expected a JSON object, got {type(record).__name__}")
        name = record.get("name")
        if isinstance(name, str):
            where = f"{where} ({name!r})"

        def fail(key: str, msg: str) -> CatalogError:
            return CatalogError(f"{source}: {where}: field '{key}': {msg}")

        unknown = sorted(set(record) - set(_FIELDS))
        if unknown:
            raise fail(unknown[0], f"unknown field; allowed fields are {list(_FIELDS)}")
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail("name", f"expected a name of letters, digits, '.', '_' or '-', got {name!r}")
        for key in ("description", "license"):
            if not isinstance(record.get(key), str) or not record[key].strip():
                raise fail(key, f"is required (a non-empty string), got {record.get(key)!r}")
        for key in ("homepage", "citation"):
            if record.get(key) is not None and not isinstance(record[key], str):
                raise fail(key, f"expected a string, got {record[key]!r}")
        fmt = record.get("format", "zarr.zip")
        if fmt not in ARCHIVE_FORMATS:
            raise fail("format", f"expected one of {list(ARCHIVE_FORMATS)}, got {fmt!r}")
        recipe = record.get("recipe")
        if recipe is not None:
            if not isinstance(recipe, Mapping) or set(recipe) != {"spec"}:
                raise fail("recipe", f"expected {{\"spec\": <shipped spec name or spec object>}}, got {recipe!r}")
            if not isinstance(recipe["spec"], (str, Mapping)) or not recipe["spec"]:
                raise fail("recipe.spec", f"expected a shipped spec name or a spec object, got {recipe['spec']!r}")
            recipe = json.loads(json.dumps(recipe))  # a plain, independent copy
        mirrors = record.get("mirrors", [])
        if not isinstance(mirrors, list):
            raise fail("mirrors", f"expected a list of URLs, got {mirrors!r}")
        for i, url in enumerate(mirrors):
            if not isinstance(url, str) or not url.startswith(MIRROR_SCHEMES):
                raise fail(f"mirrors[{i}]", f"expected a URL starting with one of {list(MIRROR_SCHEMES)}, got {url!r}")
            if url.startswith("hf://"):
                from zoo.download import parse_hf_url

                try:
                    parse_hf_url(url)
                except ValueError as exc:
                    raise fail(f"mirrors[{i}]", str(exc)) from None
        sha256, size = record.get("sha256"), record.get("size")
        if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.match(sha256)):
            raise fail("sha256", f"expected 64 lower-case hex digits, got {sha256!r}")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            raise fail("size", f"expected the archive size in bytes (a positive integer), got {size!r}")
        if mirrors and (sha256 is None or size is None):
            missing = "sha256" if sha256 is None else "size"
            raise fail(missing, "is required when the entry has mirrors (every download is verified)")
        if not mirrors and recipe is None:
            raise fail("mirrors", "is empty and there is no 'recipe': nothing can download or rebuild this zoo")
        return cls(name=name, description=record["description"].strip(), license=record["license"].strip(),
                   recipe=recipe, format=fmt, mirrors=tuple(mirrors), sha256=sha256, size=size,
                   homepage=record.get("homepage"), citation=record.get("citation"), source=source)

    def to_record(self) -> dict:
        """The JSON object of this entry (as written in a catalog file); None fields are left out."""
        record = asdict(self)
        record.pop("source")
        record["mirrors"] = list(self.mirrors)
        return {k: v for k, v in record.items() if v is not None}

    @property
    def archive_suffix(self) -> str:
        return "." + self.format


class Catalog:
    """Named zoos from one or more catalog files; later files override earlier ones by name."""

    def __init__(self, entries: Iterable[CatalogEntry] = ()) -> None:
        self._entries: dict[str, CatalogEntry] = {}
        self.add(entries)

    def add(self, entries: Iterable[CatalogEntry]) -> None:
        for entry in entries:
            old = self._entries.get(entry.name)
            if old is not None:
                warnings.warn(f"zoo catalog: entry {entry.name!r} from {entry.source} overrides the one from "
                              f"{old.source}", CatalogOverrideWarning, stacklevel=3)
            self._entries[entry.name] = entry

    def add_file(self, path: str | os.PathLike) -> None:
        """Read and validate a catalog file, then add its entries (they override earlier ones)."""
        source = BUILTIN_SOURCE if Path(path) == BUILTIN_CATALOG else str(path)
        self.add(read_catalog_file(path, source=source))

    def __getitem__(self, name: str) -> CatalogEntry:
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {close}?" if close else ""
            raise CatalogError(f"no zoo named {name!r} in the catalog (known: {self.names}){hint}. Add it with a "
                               f"user catalog: --catalog FILE, zoo.load(..., catalog=FILE) or {CATALOG_ENV}=FILE")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        return list(self._entries)


def read_catalog_file(path: str | os.PathLike, *, source: str | None = None) -> list[CatalogEntry]:
    """The validated entries of one catalog file (errors name the file, the entry and the field)."""
    source = source or str(path)
    p = Path(path).expanduser()
    if not p.is_file():
        raise CatalogError(f"{source}: catalog file not found")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{source}: not valid JSON ({exc})") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("zoos"), list):
        raise CatalogError(f"{source}: a catalog is a JSON object with a list 'zoos' of entries")
    version = data.get("catalog_version", CATALOG_VERSION)
    if version != CATALOG_VERSION:
        raise CatalogError(f"{source}: field 'catalog_version': this weightzoo reads version {CATALOG_VERSION}, "
                           f"got {version!r}")
    entries = [CatalogEntry.from_record(r, source=source, where=f"zoos[{i}]") for i, r in enumerate(data["zoos"])]
    seen: set[str] = set()
    for i, e in enumerate(entries):
        if e.name in seen:
            raise CatalogError(f"{source}: zoos[{i}]: field 'name': {e.name!r} appears twice in this file")
        seen.add(e.name)
    return entries


def catalog_files(paths: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """The catalog files to read, in override order: built-in, ``$WEIGHTZOO_CATALOG``, then ``paths``."""
    files = [BUILTIN_CATALOG]
    env = os.environ.get(CATALOG_ENV, "")
    files += [Path(p) for p in env.split(os.pathsep) if p.strip()]
    if paths is not None:
        files += [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    return files


def load_catalog(paths: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> Catalog:
    """The built-in catalog, overridden by the files in ``$WEIGHTZOO_CATALOG``, then by ``paths``."""
    catalog = Catalog()
    for f in catalog_files(paths):
        catalog.add_file(f)
    return catalog


def write_catalog(entries: Iterable[CatalogEntry], path: str | os.PathLike) -> Path:
    """Write a catalog file holding ``entries`` (atomically: temporary file, then rename)."""
    from zoo.atomic import atomic_output

    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps({"catalog_version": CATALOG_VERSION, "zoos": [e.to_record() for e in entries]},
                                  indent=2) + "\n", encoding="utf-8")
    return path


def pack(store: str | os.PathLike, out: str | os.PathLike, *, license: str, name: str | None = None,
         description: str | None = None, recipe: dict | None = None, mirrors: Sequence[str] = (),
         homepage: str | None = None, citation: str | None = None, progress: bool = True) -> CatalogEntry:
    """Archive a complete directory store for publishing and return its catalog entry.

    ``out`` ends in ``.zarr.zip`` (zipped store, read in place) or ``.zarr.tar`` (unpacked on load).
    The entry carries the archive's ``sha256`` and ``size``; ``recipe`` defaults to the spec recorded in
    the store (``{"spec": <inline spec>}``), so the published zoo can also be rebuilt. ``mirrors`` are
    the URLs the archive will be uploaded to (they can be added to the entry later).
    """
    from zoo.archive import sha256_of, write_tar, write_zip
    from zoo.store import open_zoo

    out = Path(out)
    fmt = next((f for f in ARCHIVE_FORMATS if out.name.endswith("." + f)), None)
    if fmt is None:
        raise CatalogError(f"{out}: the archive name must end in one of {['.' + f for f in ARCHIVE_FORMATS]}")
    z = open_zoo(store)
    meta = z.meta
    pending = z.status_counts()["pending"]
    if pending:
        raise CatalogError(f"{store}: {pending} of {meta['n_models']} models are still pending; finish the zoo "
                           "(rerun 'weightzoo generate') before publishing it")
    if recipe is None and isinstance(meta.get("spec"), Mapping):
        recipe = {"spec": meta["spec"]}
    if recipe is None and not mirrors:
        raise CatalogError(f"{store}: the store records no spec to rebuild it from; give the URLs the archive will "
                           "be published at (mirrors / --mirror URL) or a recipe (--recipe SPEC)")
    name = name or str(meta.get("name") or out.name.removesuffix("." + fmt))
    if description is None:
        archs = ", ".join(sorted({a["name"] for a in meta["architectures"].values()}))
        description = (f"{meta.get('kind', 'zoo')} zoo {name!r}: {meta['n_models']} models ({archs}), "
                       f"checkpoints at epochs {meta['checkpoint_epochs']}")
    z.verify(progress=progress)  # never publish a damaged store: every chunk is read and checked first
    (write_zip if fmt == "zarr.zip" else write_tar)(store, out, progress=progress)
    record = {"name": name, "description": description, "license": license, "recipe": recipe, "format": fmt,
              "mirrors": list(mirrors), "sha256": sha256_of(out), "size": out.stat().st_size,
              "homepage": homepage, "citation": citation}
    return CatalogEntry.from_record({k: v for k, v in record.items() if v is not None}, source=str(out))
