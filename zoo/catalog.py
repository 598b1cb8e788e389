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
from typing import Any, Iterable, Iterator, Literal, Mapping, Optional, Sequence, Union

from pydantic import BeforeValidator, Field, model_validator
from typing_extensions import Annotated

from zoo.errors import CatalogError, SpecError
from zoo.validation import FieldError, Int, SpecModel, Str, register_schema, validate

CATALOG_VERSION = 1
CATALOG_ENV = "WEIGHTZOO_CATALOG"
BUILTIN_CATALOG = Path(__file__).parent / "data" / "catalog.json"
BUILTIN_SOURCE = "<built-in catalog>"

# zarr.zip: the zipped store, read in place; zarr.tar: a tar (optionally gzip) of one *.zarr directory.
ARCHIVE_FORMATS = ("zarr.zip", "zarr.tar")
MIRROR_SCHEMES = ("http://", "https://", "hf://")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _mirror(url: Any) -> str:
    if not isinstance(url, str) or not url.startswith(MIRROR_SCHEMES):
        raise FieldError(f"expected a URL starting with one of {list(MIRROR_SCHEMES)}, got {url!r}")
    if url.startswith("hf://"):
        from zoo.download import parse_hf_url

        try:
            parse_hf_url(url)
        except ValueError as exc:
            raise FieldError(str(exc)) from None
    return url


def _zoo_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise FieldError(f"expected a name of letters, digits, '.', '_' or '-', got {value!r}")
    return value


def _sha256(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise FieldError(f"expected 64 lower-case hex digits, got {value!r}")
    return value


def _required_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError(f"is required (a non-empty string), got {value!r}")
    return value


class Recipe(SpecModel):
    """How to regenerate a zoo: ``spec``, a shipped spec name or an inline spec mapping."""

    spec: Union[Str, Annotated[dict[str, Any], Field(min_length=1)]]


class CatalogRecord(SpecModel):
    """One entry of a catalog file (``docs/ZOOS.md``)."""

    name: Annotated[str, BeforeValidator(_zoo_name)]
    description: Annotated[str, BeforeValidator(_required_text)]
    license: Annotated[str, BeforeValidator(_required_text)]
    recipe: Optional[Recipe] = None
    format: Literal["zarr.zip", "zarr.tar"] = "zarr.zip"
    mirrors: list[Annotated[str, BeforeValidator(_mirror)]] = []
    sha256: Optional[Annotated[str, BeforeValidator(_sha256)]] = None
    size: Optional[Annotated[Int, Field(gt=0, description="archive size in bytes")]] = None
    homepage: Optional[Str] = None
    citation: Optional[Str] = None

    @model_validator(mode="after")
    def _downloadable(self) -> "CatalogRecord":
        if self.mirrors and (self.sha256 is None or self.size is None):
            missing = "sha256" if self.sha256 is None else "size"
            raise FieldError("is required when the entry has mirrors (every download is verified)", (missing,))
        if not self.mirrors and self.recipe is None:
            raise FieldError("is empty and there is no 'recipe': nothing can download or rebuild this zoo", ("mirrors",))
        return self


register_schema("catalog_entry")(CatalogRecord)


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
        """Validate one catalog record (:class:`CatalogRecord`); errors (:class:`CatalogError`) name
        ``source`` (the file), the entry and the field: ``cat.json: field 'zoos[0].sha256': ...``."""
        try:
            r = validate(CatalogRecord, record, source=source, prefix=where.split("."))
        except SpecError as exc:
            name = record.get("name") if isinstance(record, Mapping) else None
            raise CatalogError(f"{exc} (entry {name!r})" if isinstance(name, str) else str(exc)) from None
        recipe = None if r.recipe is None else json.loads(json.dumps({"spec": r.recipe.spec}))  # an independent copy
        return cls(name=r.name, description=r.description.strip(), license=r.license.strip(), recipe=recipe,
                   format=r.format, mirrors=tuple(r.mirrors), sha256=r.sha256, size=r.size, homepage=r.homepage,
                   citation=r.citation, source=source)

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
