"""Per-cell aggregates of a phase-grid zoo: ``[n_load, n_temperature]`` tables over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from zoo.errors import ZooError
from zoo.store import Zoo


def grid_axes(z: Zoo) -> tuple[dict, dict]:
    """The load and temperature axes (``param``, ``values``) recorded in a phase-grid store."""
    grid = z.meta.get("grid")
    if not grid:
        raise ZooError(f"{z.path} has no phase grid (attribute 'grid' missing); it is a {z.meta.get('kind')!r} zoo")
    return grid["load"], grid["temperature"]


def cell_table(z: Zoo, column: str, models: pd.DataFrame | None = None, agg: str = "mean") -> np.ndarray:
    """``[n_load, n_temperature]`` aggregate (``mean`` or ``count``) of ``column`` over the complete
    models of each cell; NaN where a cell has no complete model."""
    load, temp = grid_axes(z)
    df = z.models if models is None else models
    df = df[df["status"].isin(["ok", "diverged"])]
    out = np.full((len(load["values"]), len(temp["values"])), np.nan)
    for (li, ti), g in df.groupby(["grid_load_index", "grid_temperature_index"]):
        vals = g[column].to_numpy(dtype=float)
        out[int(li), int(ti)] = len(vals) if agg == "count" else np.nanmean(vals) if np.isfinite(vals).any() else np.nan
    return out
