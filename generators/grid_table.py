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


def cell_table(z: Zoo, column: str, models: pd.DataFrame | None = None, agg: str = "mean",
               status: str | tuple[str, ...] = "ok") -> np.ndarray:
    """``[n_load, n_temperature]`` aggregate (``mean`` or ``count``) of ``column`` over the models of each
    cell whose status is ``status`` (default ``ok``: a diverged model's metrics are not measurements,
    so cell means never include them); NaN where a cell has no such model (or, for a mean, no finite
    value)."""
    load, temp = grid_axes(z)
    df = z.models if models is None else models
    df = df[df["status"].isin([status] if isinstance(status, str) else list(status))]
    out = np.full((len(load["values"]), len(temp["values"])), np.nan)
    for (li, ti), g in df.groupby(["grid_load_index", "grid_temperature_index"]):
        vals = g[column].to_numpy(dtype=float)
        out[int(li), int(ti)] = len(vals) if agg == "count" else np.nanmean(vals) if np.isfinite(vals).any() else np.nan
    return out


def status_counts_table(z: Zoo, status: str, models: pd.DataFrame | None = None) -> np.ndarray:
    """``[n_load, n_temperature]`` number of models of each cell with ``status`` (0 where none)."""
    return np.nan_to_num(cell_table(z, "model_id", models, agg="count", status=status)).astype(int)
