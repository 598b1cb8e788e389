"""Printed summaries of a zoo (rich tables)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from generators.grid_table import cell_table, grid_axes, status_counts_table
from zoo.store import Zoo


def print_summary(z: Zoo, console: Console | None = None) -> None:
    """Status counts, then per kind: a phase grid's final test accuracy per cell (mean over seeds), a
    model tree's bases with their children per family and mean child test accuracy."""
    console = console or Console()
    counts = z.status_counts()
    console.print(f"[bold]{z.path}[/bold]: {z.n_models} models, status {counts}, "
                  f"checkpoints at epochs {z.checkpoint_epochs}")
    if "grid" in z.meta:
        console.print(_grid_table(z))
    if "phases" in z.meta and "grid" in z.meta:
        print_phase_table(z, console)
    if "tree" in z.meta:
        console.print(tree_table(z.models, list(z.meta["tree"]["families"])))


def load_temperature_table(z: Zoo, title: str, cell_text: Callable[[int, int], str], justify: str = "right"
                           ) -> Table:
    """A rich table with a row per load value and a column per temperature value of a phase grid;
    ``cell_text(load_index, temperature_index)`` fills each cell."""
    load, temp = grid_axes(z)
    table = Table(title=title)
    table.add_column(f"{load['param']} \\ {temp['param']}", justify="right")
    for v in temp["values"]:
        table.add_column(str(v), justify=justify)
    for i, lv in enumerate(load["values"]):
        table.add_row(str(lv), *(cell_text(i, j) for j in range(len(temp["values"]))))
    return table


def _grid_table(z: Zoo) -> Table:
    load, temp = grid_axes(z)
    models = z.models
    acc = cell_table(z, "test_acc", models)
    n = status_counts_table(z, "ok", models)
    diverged = status_counts_table(z, "diverged", models)

    def text(i: int, j: int) -> str:
        value = "-" if np.isnan(acc[i, j]) else f"{acc[i, j]:.3f}"
        div = f", {diverged[i, j]} diverged" if diverged[i, j] else ""
        return f"{value} (n={n[i, j]}{div})" if n[i, j] or div else value

    title = (f"final test accuracy (mean over the ok seeds; n = ok models, diverged models are not averaged): "
             f"{load['param']} (rows) x {temp['param']} (columns)")
    if diverged.any():
        title += f"; {int(diverged.sum())} diverged"
    return load_temperature_table(z, title, text)


def _mean_acc(children: pd.DataFrame) -> str:
    """``"<n done>/<n> <mean test accuracy>"`` of ``children``: done = complete (ok or diverged), the
    mean over the ok ones only, and how many diverged."""
    done = children[children["status"].isin(["ok", "diverged"])]
    ok = children[children["status"] == "ok"]
    acc = ok["test_acc"].to_numpy(dtype=float)
    mean = f"{np.nanmean(acc):.3f}" if np.isfinite(acc).any() else "-"
    n_div = int((children["status"] == "diverged").sum())
    return f"{len(done)}/{len(children)}  {mean}" + (f" ({n_div} diverged)" if n_div else "")


def tree_table(models: pd.DataFrame, families: list[str]) -> Table:
    """One row per base: architecture, seed, its own final test accuracy, then per family and over all
    children the number of complete children / planned children and their mean final test accuracy."""
    table = Table(title="model tree: final test accuracy of each base and of its children (done/planned  mean over "
                        "the ok ones; diverged models are counted, not averaged)")
    for col in ("base", "architecture", "seed", "status", "base acc", *families, "all children"):
        table.add_column(col, justify="right")
    children = models[models["tree_role"] == "child"]
    for _, base in models[models["tree_role"] == "base"].iterrows():
        mine = children[children["parent_id"] == base["model_id"]]
        acc = f"{base['test_acc']:.3f}" if base["status"] == "ok" and np.isfinite(base["test_acc"]) else "-"
        table.add_row(str(base["model_id"]), str(base["architecture"]), str(base["init_seed"]), str(base["status"]),
                      acc, *(_mean_acc(mine[mine["derivation"] == f]) for f in families), _mean_acc(mine))
    return table


def print_phase_table(z: Zoo, console: Console | None = None) -> None:
    """The stored phase of every grid cell as a load x temperature table, with the resolved thresholds
    (from ``attrs["phases"]``, written by :func:`generators.phases.label_phases`)."""
    console = console or Console()
    load, temp = grid_axes(z)
    rule = z.meta["phases"]
    planned = z.planned.drop_duplicates("grid_cell").set_index("grid_cell")
    grid = {}
    for cell in rule["cells"]:
        row = planned.loc[cell["grid_cell"]]
        grid[(int(row["grid_load_index"]), int(row["grid_temperature_index"]))] = cell

    def text(i: int, j: int) -> str:
        cell = grid.get((i, j))
        if cell is None or cell["phase"] is None:
            return "-"
        low = cell["agreement"] is not None and cell["agreement"] < 1
        return cell["phase"] + ("*" if low else "")

    table = load_temperature_table(z, f"phases (rule {rule['name']} v{rule['version']}): {load['param']} (rows) x "
                                      f"{temp['param']} (columns); * = agreement < 1", text, justify="center")
    console.print(table)
    resolved = rule.get("resolved", {})
    console.print("thresholds: " + ", ".join(f"{k}={v:.4g}" for k, v in resolved.items()))
    console.print(f"phase_counts (models): {z.meta['phase_counts']}")
