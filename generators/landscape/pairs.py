"""Which model pairs get pair metrics: the seeds of one grid cell."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd


def cell_pairs(models: pd.DataFrame, max_per_cell: int = 0, seed: int = 0) -> list[tuple[int, int]]:
    """Pairs ``(a, b)``, ``a < b``, of models that share a ``grid_cell`` (rows of ``models``; the caller
    passes the complete models it wants). All pairs of a cell, or, with ``max_per_cell > 0``, that many
    chosen at random (seeded by ``seed`` and the cell) among them. Sorted."""
    out: list[tuple[int, int]] = []
    for cell, group in models.groupby("grid_cell", sort=True):
        ids = sorted(int(i) for i in group["model_id"])
        pairs = list(itertools.combinations(ids, 2))
        if 0 < max_per_cell < len(pairs):
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(cell)])
            keep = np.sort(rng.choice(len(pairs), size=max_per_cell, replace=False))
            pairs = [pairs[k] for k in keep]
        out.extend(pairs)
    return sorted(out)
