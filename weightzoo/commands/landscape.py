"""``weightzoo metrics STORE``: loss-landscape metrics of an existing store (imports :mod:`generators` when run)."""

from __future__ import annotations

import argparse
from typing import Any


def _cmd_metrics(args: argparse.Namespace) -> int:
    from generators.landscape import compute_landscape, load_settings
    from zoo.lock import store_lock
    from zoo.store import open_zoo

    settings = load_settings(args.settings)
    if args.only:
        settings = settings.only(args.only)
    if args.checkpoint is not None:
        settings = settings.replace(checkpoint=args.checkpoint)
    with store_lock(args.store, wait=args.wait):
        z = open_zoo(args.store, mode="r+")
        summary = compute_landscape(z, settings, progress=not args.quiet)
    _print_summary(z, summary)
    failed = sum(m["failed"] for m in summary["metrics"].values())
    return 1 if failed else 0


def _print_summary(z: Any, summary: dict) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from generators.landscape import get_metric_family

    console = Console()
    if not summary["enabled"]:
        console.print("landscape metrics are switched off in the settings; nothing computed")
        return
    console.print(f"[bold]{z.path}[/bold]: landscape metrics at checkpoint {summary['checkpoint']} "
                  f"(epoch {summary['checkpoint_epoch']}) of {summary['n_ok']} ok models "
                  f"in {summary['seconds']:.1f} s; not computed: {summary['not_computed'] or 'none'}")
    runs = Table(title="work done")
    for col in ("metric", "unit", "computed", "already stored", "failed", "seconds"):
        runs.add_column(col, justify="left" if col in ("metric", "unit") else "right")
    for family, m in summary["metrics"].items():
        runs.add_row(family, m["unit"], str(m["computed"]), str(m["skipped"]), str(m["failed"]), f"{m['seconds']:.2f}")
    console.print(runs)
    values = Table(title="stored values (per model; NaN = not computed)")
    for col in ("name", "models with a value", "mean", "min", "max"):
        values.add_column(col, justify="left" if col == "name" else "right")
    for family in summary["metrics"]:
        names = [n for n in get_metric_family(family).model_names if n in z.landscape_names and not z.landscape_settings(n)["shape"]]
        for name in names:
            v = z.landscape(name)
            finite = v[np.isfinite(v)]
            stats = [f"{f(finite):.4g}" if finite.size else "-" for f in (np.mean, np.min, np.max)]
            values.add_row(name, str(finite.size), *stats)
    console.print(values)
    pairs = [n for f in summary["metrics"] for n in get_metric_family(f).pair_names if n in z.pair_names and "curve" not in n]
    if pairs:
        console.print("pair tables: " + ", ".join(f"{n} ({len(z.pairs(n))} pairs)" for n in pairs))
    for family, m in summary["metrics"].items():
        for err in m["errors"]:
            console.print(f"[red]{family}: {err}[/red]")
    for note in summary["notes"]:
        console.print(f"note: {note}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="compute loss-landscape metrics of a store's models (resumable)")
    p.add_argument("store", help="zoo store (a .zarr directory)")
    p.add_argument("--settings", default=None,
                   help="YAML file with the settings (the settings themselves or a spec with a 'landscape' field)")
    p.add_argument("--only", default=None,
                   help="comma-separated metrics to compute: hessian, alpha, cka, mc, barrier (default: the settings')")
    p.add_argument("--checkpoint", type=int, default=None,
                   help="checkpoint index to compute at (negative counts from the end; default: the settings', -1)")
    p.add_argument("--wait", action="store_true",
                   help="if another command is writing the store, wait for it to finish instead of exiting (code 2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_metrics)
