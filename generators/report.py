"""Printed summaries of a zoo (rich tables)."""

from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from zoo.store import Zoo

from generators.grid_table import cell_table, grid_axes


def print_summary(z: Zoo, console: Console | None = None) -> None:
    """Status counts and, for a phase grid, final test accuracy per cell (mean over seeds)."""
    console = console or Console()
    counts = z.status_counts()
    console.print(f"[bold]{z.path}[/bold]: {z.n_models} models, status {counts}, "
                  f"checkpoints at epochs {z.checkpoint_epochs}")
    if "grid" not in z.meta:
        return
    load, temp = grid_axes(z)
    models = z.models
    acc = cell_table(z, "test_acc", models)
    n = cell_table(z, "model_id", models, agg="count")
    table = Table(title=f"final test accuracy (mean over seeds): {load['param']} (rows) x {temp['param']} (columns)")
    table.add_column(f"{load['param']} \\ {temp['param']}", justify="right")
    for v in temp["values"]:
        table.add_column(str(v), justify="right")
    for i, lv in enumerate(load["values"]):
        cells = []
        for j in range(len(temp["values"])):
            cells.append("-" if np.isnan(acc[i, j]) else f"{acc[i, j]:.3f} (n={int(n[i, j])})")
        table.add_row(str(lv), *cells)
    console.print(table)


def print_phase_table(z: Zoo, cells, console: Console | None = None) -> None:
    """The phase of every grid cell as a load x temperature table, with the resolved thresholds."""
    console = console or Console()
    load, temp = grid_axes(z)
    rule = z.meta["phases"]
    grid = {(int(r["grid_load_index"]), int(r["grid_temperature_index"])): r for _, r in cells.iterrows()}
    table = Table(title=f"phases (rule {rule['name']} v{rule['version']}): {load['param']} (rows) x "
                        f"{temp['param']} (columns); * = agreement < 1")
    table.add_column(f"{load['param']} \\ {temp['param']}", justify="right")
    for v in temp["values"]:
        table.add_column(str(v), justify="center")
    for i, lv in enumerate(load["values"]):
        row = []
        for j in range(len(temp["values"])):
            r = grid.get((i, j))
            if r is None or not isinstance(r["phase"], str):
                row.append("-")
            else:
                row.append(str(r["phase"]) + ("*" if np.isfinite(r["agreement"]) and r["agreement"] < 1 else ""))
        table.add_row(str(lv), *row)
    console.print(table)
    resolved = rule.get("resolved", {})
    console.print("thresholds: " + ", ".join(f"{k}={v:.4g}" for k, v in resolved.items()))
