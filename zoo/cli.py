"""The ``weightzoo`` command line: a thin layer over the Python APIs.

Commands that train (``demo``, ``generate``) import :mod:`generators` only when they run, so
``weightzoo info`` and ``import zoo`` stay light.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from zoo.errors import ZooError


def _cmd_info(args: argparse.Namespace) -> int:
    from zoo.store import open_zoo

    z = open_zoo(args.store)
    info = z.info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{info['path']}[/bold]  kind={info['kind']}  format_version={info['format_version']}")
    console.print(f"models: {info['n_models']}   status: {info['status_counts']}")
    console.print(f"checkpoints (epochs): {info['checkpoints']}   splits: {info['splits']}")
    t = Table(title="architectures")
    for col in ("key", "name", "config", "n_params", "n_models"):
        t.add_column(col)
    for key, a in info["architectures"].items():
        t.add_row(key, a["name"], json.dumps(a["config"]), str(a["n_params"]), str(a["n_models"]))
    console.print(t)
    if "phase_counts" in info:
        console.print(f"phases: {info['phase_counts']}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from generators.phase_grid import generate
    from generators.report import print_summary

    z = generate(args.spec, args.out, backend=args.backend, progress=not args.quiet)
    print_summary(z)
    return 0 if z.status_counts()["pending"] == 0 else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from generators.demo import run_demo

    run_demo(args.out, quick=args.quick, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weightzoo", description="Model zoos for weight-space learning.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="generate a small MNIST-1D phase zoo, print a summary, plot a heatmap")
    p.add_argument("--out", default="runs/demo", help="output directory (rerun with the same --out to resume)")
    p.add_argument("--quick", action="store_true", help="a smaller grid for a smoke test (seconds)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("generate", help="train the zoo described by a spec into a store (resumable)")
    p.add_argument("spec", help="YAML spec file, or the name of a shipped spec (e.g. 'demo')")
    p.add_argument("--out", required=True, help="store path (a directory ending in .zarr)")
    p.add_argument("--backend", default="local", choices=["local"], help="where populations are trained")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("info", help="summarise a store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ZooError as exc:
        print(f"weightzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"weightzoo {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
