"""``weightzoo schema NAME [--out F.json]``: the JSON Schema of a spec kind, so editors complete and check
YAML specs (``docs/SPECS.md``, "Editor support")."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SCHEMAS = ("phase_grid", "model_tree", "landscape", "phase_rule", "task", "catalog_entry")


def _cmd_schema(args: argparse.Namespace) -> int:
    import generators  # noqa: F401  (registers the zoo kinds', landscape and phase-rule schemas)
    from zoo.validation import json_schema

    text = json.dumps(json_schema(args.name), indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote the JSON Schema of {args.name!r} to {out}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="write the JSON Schema of a spec kind (for editor completion and checks)")
    p.add_argument("name", choices=SCHEMAS, help="which spec: a zoo kind, landscape settings, the phase rule, a task "
                                                 "spec or a catalog entry")
    p.add_argument("--out", default=None, help="file to write (default: standard output)")
    p.set_defaults(func=_cmd_schema, interrupted="rerun the same command")
