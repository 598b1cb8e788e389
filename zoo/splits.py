"""Deterministic, model-level splits (never by checkpoint).

A model's part depends only on ``(seed, key)`` through a keyed hash, where the key is its id (or the
values of ``group_by`` columns, so that e.g. all seeds of a grid cell stay together). Row order does
not matter and adding models to a zoo never moves existing ones.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from zoo.errors import ZooError

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def _canonical(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


def hash_uniform(seed: int, key: str) -> float:
    """A uniform number in [0, 1) determined by ``(seed, key)`` (blake2b)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _keys(models: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    missing = [c for c in columns if c not in models.columns]
    if missing:
        raise ZooError(f"split: unknown column(s) {missing}; models table has {list(models.columns)}")
    return ["|".join(_canonical(v) for v in row) for row in models[list(columns)].itertuples(index=False)]


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1.0) > 1e-6:
        raise ZooError(f"split fractions must be three non-negative numbers (train, val, test) summing to 1, "
                       f"got {list(fractions)}")
    return f


def assign_split(models: pd.DataFrame, *, seed: int = 0, fractions: Sequence[float] = (0.7, 0.15, 0.15),
                 group_by: str | Sequence[str] | None = None, id_column: str = "model_id") -> np.ndarray:
    """Split codes ``[n_models]`` int8 (0 train, 1 val, 2 test) in the DataFrame's row order."""
    f = _check_fractions(fractions)
    columns = [id_column] if group_by is None else ([group_by] if isinstance(group_by, str) else list(group_by))
    u = np.array([hash_uniform(seed, k) for k in _keys(models, columns)])
    edges = np.cumsum(f)
    return np.where(u < edges[0], 0, np.where(u < edges[1], 1, 2)).astype(np.int8)


def ood_split(models: pd.DataFrame, *, holdout: Sequence[Mapping[str, Any]] | None = None,
              holdout_fraction: float | None = None, columns: Sequence[str] = ("grid_load", "grid_temperature"),
              seed: int = 0, val_fraction: float = 0.15, id_column: str = "model_id") -> np.ndarray:
    """Out-of-distribution split: models in held-out grid cells are test (2), the rest train/val.

    Give either ``holdout`` (cells as ``{column: value}``) or ``holdout_fraction`` (that share of the
    distinct cells, chosen by a seeded hash of the cell).
    """
    if (holdout is None) == (holdout_fraction is None):
        raise ZooError("ood_split: give exactly one of holdout= (a list of cells) or holdout_fraction=")
    cell_keys = np.array(_keys(models, columns))
    if holdout is not None:
        held = set()
        for cell in holdout:
            unknown = sorted(set(cell) - set(columns))
            if unknown:
                raise ZooError(f"ood_split: held-out cell {dict(cell)} uses column(s) {unknown} not in {list(columns)}")
            key = "|".join(_canonical(cell[c]) for c in columns)
            if key not in set(cell_keys):
                raise ZooError(f"ood_split: held-out cell {dict(cell)} matches no model")
            held.add(key)
    else:
        if not 0 < float(holdout_fraction) < 1:
            raise ZooError(f"ood_split: holdout_fraction must be in (0, 1), got {holdout_fraction}")
        distinct = sorted(set(cell_keys), key=lambda k: hash_uniform(seed, "cell:" + k))
        n_held = max(1, int(round(float(holdout_fraction) * len(distinct))))
        held = set(distinct[:n_held])
    is_test = np.isin(cell_keys, list(held))
    u = np.array([hash_uniform(seed, k) for k in _keys(models, [id_column])])
    codes = np.where(u < val_fraction, 1, 0).astype(np.int8)
    codes[is_test] = 2
    return codes


def split_ids(models: pd.DataFrame, codes: np.ndarray, split: str, id_column: str = "model_id") -> np.ndarray:
    """Sorted model ids of ``split`` ("train", "val" or "test")."""
    if split not in SPLIT_CODES:
        raise ZooError(f"split must be one of {list(SPLIT_CODES)}, got {split!r}")
    return np.sort(models[id_column].to_numpy()[np.asarray(codes) == SPLIT_CODES[split]])
