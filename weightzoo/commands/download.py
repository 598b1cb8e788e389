"""``weightzoo download NAME`` (named zoos from the catalog) and ``weightzoo pack STORE`` (publish one)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _human_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _recipe_label(recipe: dict | None) -> str:
    if recipe is None:
        return "-"
    spec = recipe["spec"]
    return spec if isinstance(spec, str) else f"inline ({spec.get('name', 'unnamed')})"


def _print_catalog(catalog, root) -> None:
    from rich.console import Console
    from rich.table import Table

    from zoo.cache import BUILT_NAME, cache_dir, cached_store
    from zoo.catalog import BUILTIN_SOURCE

    entries = list(catalog)
    columns = ["name", "format", "size", "mirrors", "recipe", "license", "cached"]
    if any(e.source != BUILTIN_SOURCE for e in entries):
        columns.append("source")
    table = Table(title=f"zoo catalog (cache: {cache_dir(root)})")
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=col == "name")
    for e in entries:
        cached = cached_store(e, root)
        row = {"name": e.name, "format": e.format, "size": _human_size(e.size), "mirrors": str(len(e.mirrors)),
               "recipe": _recipe_label(e.recipe), "license": e.license,
               "cached": "-" if cached is None else "built" if cached.name == BUILT_NAME else "downloaded",
               "source": e.source}
        table.add_row(*(row[c] for c in columns))
    console = Console()
    console.print(table)
    for e in entries:  # free text below the table, so the table fits a narrow terminal
        console.print(f"[bold]{e.name}[/bold]: {e.description}")


def _cmd_download(args: argparse.Namespace) -> int:
    from zoo.catalog import load_catalog
    from zoo.errors import ZooError
    from zoo.loader import load

    catalog = load_catalog(args.catalog)
    if args.list:
        _print_catalog(catalog, args.root)
        return 0
    if not args.name:
        raise ZooError("give the NAME of a zoo to download, or --list to see the catalog")
    builder = None
    if args.build:
        from generators.driver import generate as builder  # trains the zoo from its recipe
    z = load(args.name, args.root, catalog=catalog, build=args.build, builder=builder, progress=not args.quiet)
    print(f"{args.name}: {z.path}")
    print(f"  {z.n_models} models, architectures {sorted({a['name'] for a in z.architectures.values()})}, "
          f"checkpoints at epochs {z.checkpoint_epochs}; open it with zoo.load({args.name!r}) or zoo.open({z.path!r})")
    return 0


def _recipe_arg(value: str | None) -> dict | None:
    """``--recipe``: a YAML spec file (embedded inline, so the catalog is self-contained) or a shipped spec name."""
    if value is None:
        return None
    from generators.spec import load_spec  # validates the recipe before it is published

    spec = load_spec(value)
    return {"spec": spec.raw} if Path(value).is_file() else {"spec": value}


def _cmd_pack(args: argparse.Namespace) -> int:
    from zoo.catalog import CatalogEntry, pack, read_catalog_file, write_catalog

    entry = pack(args.store, args.out, license=args.license, name=args.name, description=args.description,
                 recipe=_recipe_arg(args.recipe), mirrors=args.mirror or [], homepage=args.homepage,
                 citation=args.citation, progress=not args.quiet)
    print(json.dumps(entry.to_record(), indent=2))
    print(f"packed {args.store} -> {args.out} ({entry.size} bytes, sha256 {entry.sha256}); upload it, list the URLs "
          "under 'mirrors' and add the entry to a catalog file", file=sys.stderr)
    if args.add_to:
        target = Path(args.add_to)
        entries: list[CatalogEntry] = read_catalog_file(target) if target.exists() else []
        entries = [e for e in entries if e.name != entry.name] + [entry]
        write_catalog(entries, target)
        print(f"entry {entry.name!r} written to {target}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="fetch a named zoo from the catalog into the cache (or --list the catalog)")
    p.add_argument("name", nargs="?", help="zoo name (see --list)")
    p.add_argument("--root", help="cache directory (default: $WEIGHTZOO_CACHE, $XDG_CACHE_HOME/weightzoo, "
                                  "~/.cache/weightzoo)")
    p.add_argument("--catalog", action="append", metavar="FILE",
                   help="user catalog JSON file (repeatable; added after $WEIGHTZOO_CATALOG, overrides by name)")
    p.add_argument("--build", action="store_true",
                   help="regenerate the zoo from its recipe when no mirror delivers it (trains models)")
    p.add_argument("--list", action="store_true", help="print the catalog as a table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("pack", help="archive a zoo for publishing and print its catalog entry (sha256, size)")
    p.add_argument("store", help="directory store to publish")
    p.add_argument("--out", required=True, help="archive to write: NAME.zarr.zip (read in place) or NAME.zarr.tar")
    p.add_argument("--license", required=True, help="licence of the published zoo, e.g. CC-BY-4.0")
    p.add_argument("--name", help="catalog name (default: the store's spec name)")
    p.add_argument("--description", help="one line (default: made from the store)")
    p.add_argument("--recipe", help="spec that regenerates it: a YAML file (embedded) or a shipped spec name "
                                    "(default: the spec recorded in the store)")
    p.add_argument("--mirror", action="append", metavar="URL", help="URL the archive will be served at (repeatable)")
    p.add_argument("--homepage")
    p.add_argument("--citation")
    p.add_argument("--add-to", metavar="CATALOG", help="also write the entry into this catalog file (replacing one "
                                                       "of the same name)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_pack, interrupted="the archive was not written; rerun the same command to start again")
