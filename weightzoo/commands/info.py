"""``weightzoo info STORE [--json]``."""

from __future__ import annotations

import argparse
import json
from typing import Any


def architecture_table(info: dict[str, Any], title: str = "architectures") -> Any:
    """A rich ``Table`` of the architectures in ``Zoo.info()``: key, name, config, parameters, models."""
    from rich.table import Table

    t = Table(title=title)
    for col in ("key", "name", "config", "n_params", "n_models"):
        t.add_column(col)
    for key, a in info["architectures"].items():
        t.add_row(key, a["name"], json.dumps(a["config"]), str(a["n_params"]), str(a["n_models"]))
    return t


def _cmd_info(args: argparse.Namespace) -> int:
    from zoo.store import open_zoo

    z = open_zoo(args.store)
    info = z.info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    from rich.console import Console

    console = Console()
    console.print(f"[bold]{info['path']}[/bold]  kind={info['kind']}  format_version={info['format_version']}")
    console.print(f"models: {info['n_models']}   status: {info['status_counts']}")
    console.print(f"checkpoints (epochs): {info['checkpoints']}   splits: {info['splits']}")
    console.print(architecture_table(info))
    if "tree" in info:
        tree = info["tree"]
        console.print(f"model tree: {tree['n_bases']} bases, {tree['n_children']} children "
                      f"(per base: {tree['children_per_base']}), {tree['n_classes']} classes, "
                      f"{'shared' if tree['shared_tasks'] else 'per-base'} derived tasks; checkpoint epochs "
                      f"bases {tree['checkpoint_epochs']['base']}, children {tree['checkpoint_epochs']['child']}")
    if info.get("landscape"):
        console.print(f"landscape metrics: {sorted(info['landscape'])}")
    if "phase_counts" in info:
        console.print(f"phases: {info['phase_counts']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="summarise a store")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_info)
