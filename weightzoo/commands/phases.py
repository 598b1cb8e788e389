"""``weightzoo phases STORE [--rule FILE]`` and ``weightzoo plot STORE [--out DIR]``: phase labels and
phase diagrams of a phase-grid store (import :mod:`generators` when they run)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_phases(args: argparse.Namespace) -> int:
    from rich.console import Console

    from generators.phases import label_phases
    from generators.report import print_phase_table
    from zoo.lock import store_lock
    from zoo.store import open_zoo

    with store_lock(args.store, wait=args.wait):  # one writer per store (zoo.lock)
        z = open_zoo(args.store, mode="r+")
        label_phases(z, args.rule)
    print_phase_table(z, Console())
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from rich.console import Console

    from generators.plots import plot_phase_diagrams
    from zoo.store import open_zoo

    z = open_zoo(args.store)
    out = Path(args.out) if args.out else Path(str(z.path)).resolve().parent / "plots"
    written, skipped = plot_phase_diagrams(z, out)
    console = Console()
    for path in written:
        console.print(f"wrote {path}")
    for name, why in skipped.items():
        console.print(f"[yellow]skipped {name}: {why}[/yellow]")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phases", help="label every model of a phase-grid store with its loss-landscape phase")
    p.add_argument("store", help="a phase-grid store with landscape metrics ('weightzoo metrics')")
    p.add_argument("--rule", default=None, help="YAML/JSON file with phase-rule fields to change "
                   "(thresholds, weights); see docs/PHASES.md")
    p.add_argument("--wait", action="store_true",
                   help="if another command is writing the store, wait for it to finish instead of exiting (code 2)")
    p.set_defaults(func=_cmd_phases)

    p = sub.add_parser("plot", help="write phase-diagram heatmaps (PNG) of a phase-grid store")
    p.add_argument("store")
    p.add_argument("--out", default=None, help="output folder (default: 'plots' beside the store)")
    p.set_defaults(func=_cmd_plot)
