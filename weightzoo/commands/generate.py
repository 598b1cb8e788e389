"""``weightzoo demo`` and ``weightzoo generate``: train zoos (imports :mod:`generators` when run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_generate(args: argparse.Namespace) -> int:
    from generators.driver import describe_plan, generate
    from generators.report import print_summary

    if args.plan:
        from rich.console import Console

        console = Console()
        console.width = max(console.width, 120)  # the plan table is wide; a pipe would wrap it at 80
        console.print(describe_plan(args.spec, args.out))
        return 0
    z = generate(args.spec, args.out, backend=args.backend, address=args.address, progress=not args.quiet,
                 wait=args.wait)
    print_summary(z)
    return 0 if z.status_counts()["pending"] == 0 else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from generators.demo import run_demo
    from zoo.lock import store_lock

    with store_lock(Path(args.out) / "zoo.zarr", wait=args.wait):  # run_demo's store (and its plots beside it)
        run_demo(args.out, quick=args.quick, progress=not args.quiet)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="generate a small MNIST-1D phase zoo, print a summary, plot a heatmap")
    p.add_argument("--out", default="runs/demo", help="output directory (rerun with the same --out to resume)")
    p.add_argument("--quick", action="store_true", help="a smaller grid for a smoke test (seconds)")
    p.add_argument("--wait", action="store_true",
                   help="if another command is writing the store, wait for it to finish instead of exiting (code 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("generate", help="train the zoo a spec describes (phase grid or model tree) into a store "
                                        "(resumable)")
    p.add_argument("spec", help="YAML spec file, or the name of a shipped spec (e.g. 'demo', 'tree_demo')")
    p.add_argument("--out", required=True, help="store path (a directory ending in .zarr)")
    p.add_argument("--backend", default="local", choices=["local", "ray"],
                   help="where populations are trained: this process (local) or Ray tasks (ray; see docs/BACKENDS.md)")
    p.add_argument("--address", default=None,
                   help="with --backend ray: the cluster to use, 'auto' or HOST:PORT (default: start a local instance)")
    p.add_argument("--wait", action="store_true",
                   help="if another command is writing the store, wait for it to finish instead of exiting (code 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--plan", action="store_true",
                   help="print the populations, their sizes and estimated cost without training (for an existing "
                        "--out: the stored plan's pending populations)")
    p.set_defaults(func=_cmd_generate)
